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
type Args struct {
	// Lookback is how far back an operator's run (`fulfiller reconcile
	// --since`) looks; 0 for the periodic run, which looks back the
	// worker's Lookback.
	Lookback time.Duration `json:"lookback,omitempty"`
	// Actor names an operator's run; empty for the periodic one.
	Actor string `json:"actor,omitempty"`
}

func (Args) Kind() string { return jobs.KindReconcileEvents }

func (a Args) InsertOpts() river.InsertOpts {
	attempts := 3
	if a.Actor != "" {
		// The operator waits at the terminal: a failure is told at once,
		// and the operator runs it again once it is fixed.
		attempts = 1
	}
	return river.InsertOpts{
		// It makes no Luarmor call, so it takes no budget class's queue.
		Queue: jobs.QueueDefault,
		// The next periodic run does the same work; a failing run need not
		// retry for long.
		MaxAttempts: attempts,
		// One run waits or runs at a time, so runs never pile up behind a
		// slow or failing one.
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: jobs.InFlightStates()},
	}
}

// Worker works Args with the River client that runs it.
type Worker struct {
	river.WorkerDefaults[Args]
	Reconciler *Reconciler
	// Lookback is how far back each periodic run looks; 0 means
	// DefaultLookback.
	Lookback time.Duration
	// ProgressEvery is how often at most a run records its progress; 0
	// means jobs.DefaultProgressEvery.
	ProgressEvery time.Duration
}

func (w *Worker) Timeout(*river.Job[Args]) time.Duration { return runTimeout }

func (w *Worker) Work(ctx context.Context, job *river.Job[Args]) error {
	rc, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	lookback := job.Args.Lookback
	if lookback == 0 {
		lookback = w.Lookback
	}
	if lookback == 0 {
		lookback = DefaultLookback
	}
	progress := jobs.NewProgressRecorder(ctx, job.ID, w.ProgressEvery, w.Reconciler.logger())
	sum, err := w.Reconciler.run(ctx, rc, lookback, progress)
	if err != nil {
		w.Reconciler.logger().ErrorContext(ctx, "reconciliation with Stripe's events failed; it is retried and runs again at the next interval (does STRIPE_API_KEY allow reading events?)",
			"attempt", job.Attempt, "actor", job.Args.Actor, "summary", sum.String(), "error", err)
		return err
	}
	out, err := progress.WithLastCount(sum)
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, out)
}

// PeriodicJob runs a reconciliation every interval on the leader, and once
// when a replica becomes the leader: after a deploy or an outage, the
// sooner missing events are found the better.
func PeriodicJob(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) { return Args{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
