package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"
)

// loadOptions shapes one intake phase.
type loadOptions struct {
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	// cpuProfile, when set, is the file that receives a CPU profile of the
	// timed window (the whole process: senders, handler and fakes).
	cpuProfile string
}

// loadResult is what one intake phase measured.
type loadResult struct {
	window     time.Duration
	latencies  []time.Duration // of the 200s started inside the window, sorted
	errors     int             // failed requests started inside the window
	warmErrors int             // failed requests during warm-up
	firstError string
	okTotal    int // 200s over the whole phase, warm-up included
	cpu        cpuUsage
	// perSecond counts the 200s started in each whole second of the
	// window, to show whether the rate held steady.
	perSecond []int
}

// cpuSample is one reading of the CPU counters.
type cpuSample struct {
	at                 time.Time
	process            time.Duration // this process's user+system time
	machine            bool          // whether busy/steal/total were read
	busy, steal, total uint64        // all cores, in clock ticks
}

// cpuUsage is the CPU spent over a window.
type cpuUsage struct {
	measured bool
	// busy is the fraction of all cores' time that was not idle, steal
	// the fraction the hypervisor ran other machines instead.
	busy, steal float64
	// machine is the CPU time spent by every process, process by this one
	// (load generator, service or baseline, and fakes).
	machine, process time.Duration
}

func cpuBetween(a, b cpuSample) cpuUsage {
	if !a.machine || !b.machine || b.total <= a.total {
		return cpuUsage{}
	}
	busy := float64(b.busy-a.busy) / float64(b.total-a.total)
	wall := b.at.Sub(a.at)
	return cpuUsage{
		measured: true,
		busy:     busy,
		steal:    float64(b.steal-a.steal) / float64(b.total-a.total),
		machine:  time.Duration(busy * float64(runtime.NumCPU()) * float64(wall)),
		process:  b.process - a.process,
	}
}

// sender is one concurrent sender's tally.
type sender struct {
	latencies  []time.Duration
	errors     int
	warmErrors int
	firstError string
	okTotal    int
	perSecond  []int
}

// runLoad keeps o.concurrency senders busy posting distinct signed events to
// url, each sending its next event as soon as the previous one is answered
// (a closed loop, so the rate is what the handler sustains), for o.warmup
// and then o.duration. Only requests started inside the timed window count.
// before, when set, runs for every event ahead of the timed request (for
// paid sessions it registers the session with the Stripe fake, which
// Stripe itself would have done long before the webhook).
func runLoad(ctx context.Context, client *http.Client, url string, maker *eventMaker, before func(purchase), o loadOptions) (*loadResult, error) {
	begin := time.Now()
	t0 := begin.Add(o.warmup)
	t1 := t0.Add(o.duration)

	// An interrupt stops the senders between requests but lets the ones in
	// flight finish: cancelling them would only make the handler log
	// failures it did not cause.
	reqCtx := context.WithoutCancel(ctx)
	senders := make([]sender, o.concurrency)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &senders[i]
			s.latencies = make([]time.Duration, 0, 4096)
			s.perSecond = make([]int, int(o.duration/time.Second))
			for ctx.Err() == nil {
				p := maker.next(time.Now())
				if before != nil {
					before(p)
				}
				start := time.Now()
				if !start.Before(t1) {
					return
				}
				_, err := post(reqCtx, client, url, p.Body, sign(p.Body, benchSecret, start))
				elapsed := time.Since(start)
				timed := !start.Before(t0)
				switch {
				case err != nil:
					if s.firstError == "" {
						s.firstError = err.Error()
					}
					if timed {
						s.errors++
					} else {
						s.warmErrors++
					}
				default:
					s.okTotal++
					if timed {
						s.latencies = append(s.latencies, elapsed)
						if sec := int(start.Sub(t0) / time.Second); sec < len(s.perSecond) {
							s.perSecond[sec]++
						}
					}
				}
			}
		}()
	}

	// The CPU counters and the profile cover the timed window only.
	var cpu cpuUsage
	var profErr error
	measureDone := make(chan struct{})
	go func() {
		defer close(measureDone)
		if !sleepUntil(ctx, t0) {
			return
		}
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			profErr = err
			return
		}
		a := sampleCPU()
		if sleepUntil(ctx, t1) {
			cpu = cpuBetween(a, sampleCPU())
		}
		profErr = stopProfile()
	}()
	wg.Wait()
	<-measureDone
	client.CloseIdleConnections()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if profErr != nil {
		return nil, profErr
	}

	r := &loadResult{window: o.duration, cpu: cpu, perSecond: make([]int, int(o.duration/time.Second))}
	for _, s := range senders {
		for i, n := range s.perSecond {
			r.perSecond[i] += n
		}
		r.latencies = append(r.latencies, s.latencies...)
		r.errors += s.errors
		r.warmErrors += s.warmErrors
		r.okTotal += s.okTotal
		if r.firstError == "" {
			r.firstError = s.firstError
		}
	}
	slices.Sort(r.latencies)
	return r, nil
}

// sleepUntil waits until t and reports whether ctx is still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// percentile is the nearest-rank percentile p (0..100) of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(d))*p/100)) - 1
	return d[min(max(rank, 0), len(d)-1)]
}

// startCPUProfile starts a CPU profile of the process into file, and
// returns what stops it and closes the file; with file "", it does nothing.
func startCPUProfile(file string) (stop func() error, err error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close() // the error returned says why the profile is missing
		return nil, fmt.Errorf("starting the CPU profile %s: %w", file, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing the CPU profile %s: %w", file, err)
		}
		return nil
	}, nil
}
