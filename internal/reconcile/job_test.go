package reconcile_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi"

	"fulfiller/internal/logging/logtest"
)

// startWorkers runs a River client with the reconcile worker and, when
// interval is not zero, its periodic job, and returns the watch of its
// jobs, subscribed before it started.
func (b *bundle) startWorkers(t *testing.T, rec *reconcile.Reconciler, interval time.Duration) *fulfillertest.JobWatch {
	t.Helper()
	cfg := jobs.Config{Register: func(w *river.Workers) {
		river.AddWorker(w, &reconcile.Worker{Reconciler: rec, Lookback: time.Hour})
	}}
	if interval > 0 {
		cfg.Periodic = []*river.PeriodicJob{reconcile.PeriodicJob(interval)}
	}
	rc, err := jobs.NewClient(jobs.Deps{Pool: b.pool, Logger: fulfillertest.Logger(t, slog.LevelWarn)}, cfg)
	require.NoError(t, err)
	w := fulfillertest.WatchJobs(t, rc)
	fulfillertest.StartRiver(t, rc)
	return w
}

func TestTheLeaderReconcilesOnStartAndPeriodically(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lost := b.event(t, "invoice.paid", "invoice", "in_lost")
	w := b.startWorkers(t, b.rec, time.Hour)

	// A run once the replica leads, without waiting an interval: one run,
	// in the default queue, since it spends no Luarmor budget class.
	w.WaitCompleted(t, reconcile.Args{}.Kind(), 1)
	rivertest.RequireInserted(context.Background(), t, riverpgxv5.New(b.pool), reconcile.Args{},
		&rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted, Queue: jobs.QueueDefault})
	require.Equal(t, []string{lost}, b.recorded(t))
}

func TestRunsNeverPileUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rc, err := jobs.NewClient(jobs.Deps{Pool: b.pool}, jobs.Config{InsertOnly: true, Register: func(w *river.Workers) {
		river.AddWorker(w, &reconcile.Worker{Reconciler: b.rec})
	}})
	require.NoError(t, err)
	first, err := rc.Insert(ctx, reconcile.Args{}, nil)
	require.NoError(t, err)
	require.False(t, first.UniqueSkippedAsDuplicate)
	second, err := rc.Insert(ctx, reconcile.Args{}, nil)
	require.NoError(t, err)
	require.True(t, second.UniqueSkippedAsDuplicate, "a run waiting already: the next one is not queued behind it")
	require.Equal(t, first.Job.ID, second.Job.ID)
	rivertest.RequireInserted(ctx, t, riverpgxv5.New(b.pool), reconcile.Args{},
		&rivertest.RequireInsertedOpts{State: rivertype.JobStateAvailable})
}

func TestAFailingRunIsLoggedWithWhatToCheckAndNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var logs logtest.Buffer
	const wrongKey = "sk_test_notthekey0123456789"
	rec := &reconcile.Reconciler{Pool: b.pool, Stripe: stripeapi.New(wrongKey, b.fake.URL, nil),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	w := b.startWorkers(t, rec, time.Hour)

	// River records the failure on the job and retries it.
	failed := w.WaitFor(t, "a failed reconcile_events run", func(ev *river.Event) bool {
		return ev.Kind == river.EventKindJobFailed && ev.Job.Kind == reconcile.Args{}.Kind()
	})
	require.NotEmpty(t, failed.Job.Errors)
	out := logs.String()
	require.Contains(t, out, "reconciliation with Stripe's events failed")
	require.Contains(t, out, "STRIPE_API_KEY")
	require.Contains(t, out, "listing events (page 1): 401")
	require.NotContains(t, out, wrongKey)
}
