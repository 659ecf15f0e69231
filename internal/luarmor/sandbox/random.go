package sandbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RandomFault injects a fault into a share of the API requests it matches,
// chosen at random: the way a flaky API fails over a long run, as opposed
// to Fault's "the next N requests".
type RandomFault struct {
	// Method and PathContains restrict the fault as in Fault; "" matches
	// any.
	Method       string
	PathContains string
	Kind         FaultKind
	// Rate is the share of matching requests that get the fault, 0 to 1.
	Rate float64
	// Latency is the extra wait of FaultLatency.
	Latency time.Duration
}

// validateRandomFaults checks kinds and rates. Rates are summed over all
// faults, matching or not, so that no request can be owed more than one.
func validateRandomFaults(faults []RandomFault) error {
	total := 0.0
	for _, f := range faults {
		if !f.Kind.Valid() {
			return fmt.Errorf("unknown fault kind %q", f.Kind)
		}
		if !(f.Rate >= 0 && f.Rate <= 1) {
			return fmt.Errorf("rate %v of fault %q is not between 0 and 1", f.Rate, f.Kind)
		}
		total += f.Rate
	}
	if total > 1+1e-9 {
		return errors.New("the rates of the random faults add up to more than 1")
	}
	return nil
}

// SetRandomFaults replaces the random faults; no argument removes them.
//
// An API request that no queued fault (InjectFault) claims draws one number
// from the sandbox's generator, seeded by Options.Seed, and gets the first
// matching random fault whose running total of rates exceeds it. The rates
// of the faults matching a request therefore add up: 10% http500 and 20%
// apply_then_drop fault 30% of requests, never one request twice. Faulted
// requests are logged with their kind (Call.Fault), so a test can count
// what was injected. It panics on an unknown Kind, a Rate outside [0, 1] or
// rates adding up to more than 1, a programming error in the test that
// calls it.
func (s *Sandbox) SetRandomFaults(faults ...RandomFault) {
	if err := validateRandomFaults(faults); err != nil {
		panic("luarmor sandbox: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.randomFaults = append([]RandomFault(nil), faults...)
}

// drawRandomFaultLocked picks the random fault of a request, if any. No
// number is drawn when there are no random faults, so that latency draws
// replay alike whether or not faults were ever set.
func (s *Sandbox) drawRandomFaultLocked(method, path string) Fault {
	if len(s.randomFaults) == 0 {
		return Fault{}
	}
	u := s.rng.Float64()
	total := 0.0
	for _, f := range s.randomFaults {
		if !faultMatches(f.Method, f.PathContains, method, path) {
			continue
		}
		total += f.Rate
		if u < total {
			return Fault{Method: f.Method, PathContains: f.PathContains, Kind: f.Kind, Latency: f.Latency}
		}
	}
	return Fault{}
}

// SetLatencyRange makes every API answer wait a duration drawn uniformly
// from [lo, hi] with the seeded generator, like an API whose answer time
// varies (a test that kills a client mid-call needs calls of varied
// length). SetLatency(d) is SetLatencyRange(d, d); negative values are
// zero and hi below lo is lo. The wait of each request is logged
// (Call.Latency).
func (s *Sandbox) SetLatencyRange(lo, hi time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(lo, 0)
	s.latencyMax = max(hi, s.latency)
}

// drawLatencyLocked returns the base wait of one answer.
func (s *Sandbox) drawLatencyLocked() time.Duration {
	if s.latencyMax <= s.latency {
		return s.latency
	}
	return s.latency + time.Duration(s.rng.Int64N(int64(s.latencyMax-s.latency)+1))
}

// newRand returns the sandbox's generator. PCG is deterministic for a seed,
// which is all a replayable test needs; nothing secret is drawn from it.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed))
}
