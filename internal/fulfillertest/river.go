package fulfillertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

// WaitTimeout bounds every wait of the harness. It is generous on purpose:
// a wait ends as soon as what it waits for happens, and a busy CI machine
// must not turn a slow success into a failure.
const WaitTimeout = 30 * time.Second

// StartRiver starts client and stops it when the test ends.
func StartRiver(t testing.TB, client *river.Client[pgx.Tx]) {
	t.Helper()
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(ctx)
	})
}

// JobWatch receives a River client's job events from the moment it was
// made: subscribe before inserting the jobs to wait for, so none is missed.
type JobWatch struct {
	events <-chan *river.Event
}

// WatchJobs subscribes to the client's completed, cancelled, failed and
// snoozed jobs until the test ends. A test that runs several replicas
// passes their clients as more: a job is worked by whichever replica
// fetched it, and the watch sees the jobs of all of them.
func WatchJobs(t testing.TB, client *river.Client[pgx.Tx], more ...*river.Client[pgx.Tx]) *JobWatch {
	t.Helper()
	subscribe := func(c *river.Client[pgx.Tx]) <-chan *river.Event {
		events, cancel := c.Subscribe(river.EventKindJobCompleted, river.EventKindJobCancelled,
			river.EventKindJobFailed, river.EventKindJobSnoozed)
		t.Cleanup(cancel)
		return events
	}
	if len(more) == 0 {
		return &JobWatch{events: subscribe(client)}
	}
	// One channel for all: each client's events are forwarded until its
	// subscription is cancelled (which closes its channel) or the test ends.
	merged := make(chan *river.Event, 1000*(1+len(more)))
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for _, c := range append([]*river.Client[pgx.Tx]{client}, more...) {
		events := subscribe(c)
		go func() {
			for ev := range events {
				select {
				case merged <- ev:
				case <-done:
					return
				}
			}
		}()
	}
	return &JobWatch{events: merged}
}

// WaitFor returns the first event for which match is true, failing the
// test after WaitTimeout.
func (w *JobWatch) WaitFor(t testing.TB, what string, match func(*river.Event) bool) *river.Event {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		select {
		case ev := <-w.events:
			if match(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("waited %s for %s", WaitTimeout, what)
			return nil
		}
	}
}

// WaitCompleted waits until n jobs of the given kind have completed and
// returns them.
func (w *JobWatch) WaitCompleted(t testing.TB, kind string, n int) []*rivertype.JobRow {
	t.Helper()
	var done []*rivertype.JobRow
	for len(done) < n {
		ev := w.WaitFor(t, fmt.Sprintf("%d completed %s jobs (%d so far)", n, kind, len(done)), func(ev *river.Event) bool {
			return ev.Kind == river.EventKindJobCompleted && ev.Job.Kind == kind
		})
		done = append(done, ev.Job)
	}
	return done
}

// WaitEnded waits for the next job of the given kind to end (completed,
// cancelled or discarded after its last attempt) and returns the event.
func (w *JobWatch) WaitEnded(t testing.TB, kind string) *river.Event {
	t.Helper()
	return w.WaitFor(t, "a "+kind+" job to end", func(ev *river.Event) bool {
		if ev.Job.Kind != kind {
			return false
		}
		return ev.Kind == river.EventKindJobCompleted || ev.Kind == river.EventKindJobCancelled ||
			ev.Job.State == rivertype.JobStateDiscarded
	})
}

// jobEnds are the events of a job's attempt ending, whatever its outcome.
var jobEnds = []river.EventKind{river.EventKindJobCompleted, river.EventKindJobCancelled,
	river.EventKindJobFailed, river.EventKindJobSnoozed}

// JobsUntil waits up to within for done to be true and reports whether it
// became true. It checks done now and again each time an attempt of one
// of client's jobs ends (completed, cancelled, failed or snoozed): what a
// test waits for in the database, the stand-ins or the metrics is written
// by a job before its attempt ends. As WaitOrderFor does, it also checks
// at most recheckEvery apart, for what changes without a job ending (a
// job cancelled before it ran, the test's own write).
//
// It subscribes before its first check, so unlike WatchJobs it may be
// called after whatever queued the jobs.
func JobsUntil(client *river.Client[pgx.Tx], within time.Duration, done func() bool) bool {
	events, cancel := client.Subscribe(jobEnds...)
	defer cancel()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for !done() {
		select {
		case <-events:
			drain(events) // one check for a burst of jobs
		case <-time.After(recheckEvery):
		case <-deadline.C:
			return done()
		}
	}
	return true
}

func drain(events <-chan *river.Event) {
	for {
		select {
		case <-events:
		default:
			return
		}
	}
}

// WaitJobsUntil waits until done is true, checked as JobsUntil does,
// failing the test after WaitTimeout with what it waited for.
func (s *Service) WaitJobsUntil(t testing.TB, what string, done func() bool) {
	t.Helper()
	if !JobsUntil(s.Main.River, WaitTimeout, done) {
		t.Fatalf("waited %s for %s", WaitTimeout, what)
	}
}
