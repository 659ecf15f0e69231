package doctor

import (
	"context"
	"sync"
	"time"
)

// Checks runs the doctor for the running service's console, on demand
// only, and keeps the last report in the process: the checks call Stripe
// and Luarmor, so showing them costs nothing, and running them again is
// the operator's choice. One run at a time: asking while one runs joins
// it.
type Checks struct {
	// New makes the doctor of one run, with the running service's
	// clients (its Luarmor calls take the fleet's budget).
	New func(ctx context.Context) *Doctor
	// Timeout bounds a run; 0 means RunTimeout.
	Timeout time.Duration
	Now     func() time.Time

	mu      sync.Mutex
	last    *Report
	running *Run
}

// RunTimeout bounds a run of the checks: each is one call, but Luarmor's
// wait for a slot of the budget when it is busy.
const RunTimeout = 2 * time.Minute

// Report is one run's verdicts.
type Report struct {
	// At is when the run started, Took how long it ran.
	At      time.Time
	Took    time.Duration
	By      string // who asked for it
	Results []Result
}

// Counts are how many checks passed, warned and failed.
func (r *Report) Counts() (ok, warned, failed int) {
	for _, x := range r.Results {
		switch x.Status {
		case Pass:
			ok++
		case Warn:
			warned++
		case Fail:
			failed++
		}
	}
	return ok, warned, failed
}

// Run is a run under way.
type Run struct {
	Since time.Time
	By    string
	done  chan struct{}
}

// Done is closed once the run's report is the last one.
func (r *Run) Done() <-chan struct{} { return r.done }

// Last is the last finished run's report (nil before the first) and the
// run under way (nil when none).
func (c *Checks) Last() (*Report, *Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.running
}

// Start starts a run asked for by by, unless one runs: then it returns
// that one. The run outlives the request that asked for it.
func (c *Checks) Start(by string) *Run {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running != nil {
		return c.running
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	run := &Run{Since: now(), By: by, done: make(chan struct{})}
	c.running = run
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = RunTimeout
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		results := c.New(ctx).Run(ctx)
		report := &Report{At: run.Since, Took: now().Sub(run.Since), By: by, Results: results}
		c.mu.Lock()
		c.last, c.running = report, nil
		c.mu.Unlock()
		close(run.done)
	}()
	return run
}
