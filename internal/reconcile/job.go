package reconcile

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/jobs"
)

// runTimeout bounds one run: a few seconds list a shop's three days of
// events, and a run cut off loses nothing.
const runTimeout = 10 * time.Minute

// Args runs one reconciliation with Stripe's events.
type Args struct{}

func (Args) Kind() string { return "reconcile_events" }

func (Args) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		// It makes no Luarmor call, so it takes no budget class's queue.
		Queue: jobs.QueueDefault,
		// The next periodic run does the same work; a failing run need not
		// retry for long.
		MaxAttempts: 3,
		// One run waits or runs at a time, so runs never pile up behind a
		// slow or failing one.
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: jobs.InFlightStates()},
	}
}

// Worker works Args with the River client that runs it.
type Worker struct {
	river.WorkerDefaults[Args]
	Reconciler *Reconciler
	// Lookback is how far back each run looks; 0 means DefaultLookback.
	Lookback time.Duration
}

func (w *Worker) Timeout(*river.Job[Args]) time.Duration { return runTimeout }

func (w *Worker) Work(ctx context.Context, job *river.Job[Args]) error {
	rc, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	lookback := w.Lookback
	if lookback == 0 {
		lookback = DefaultLookback
	}
	sum, err := w.Reconciler.Run(ctx, rc, lookback)
	if err != nil {
		w.Reconciler.logger().ErrorContext(ctx, "reconciliation with Stripe's events failed; it is retried and runs again at the next interval (does STRIPE_API_KEY allow reading events?)",
			"attempt", job.Attempt, "summary", sum.String(), "error", err)
	}
	return err
}

// PeriodicJob runs a reconciliation every interval on the leader, and once
// when a replica becomes the leader: after a deploy or an outage, the
// sooner missing events are found the better.
func PeriodicJob(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) { return Args{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
