package reconcile_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi"

	"fulfiller/internal/logging/logtest"
)

// startWorkers runs a River client with the reconcile worker and, when
// interval is not zero, its periodic job.
func (b *bundle) startWorkers(t *testing.T, rec *reconcile.Reconciler, interval time.Duration) *river.Client[pgx.Tx] {
	t.Helper()
	cfg := jobs.Config{Register: func(w *river.Workers) {
		river.AddWorker(w, &reconcile.Worker{Reconciler: rec, Lookback: time.Hour})
	}}
	if interval > 0 {
		cfg.Periodic = []*river.PeriodicJob{reconcile.PeriodicJob(interval)}
	}
	rc, err := jobs.NewClient(jobs.Deps{Pool: b.pool, Logger: slog.New(slog.DiscardHandler)}, cfg)
	require.NoError(t, err)
	require.NoError(t, rc.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(ctx)
	})
	return rc
}

func (b *bundle) jobStates(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT state::text FROM river_job WHERE kind = 'reconcile_events' ORDER BY id`)
	require.NoError(t, err)
	states, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return states
}

func TestTheLeaderReconcilesOnStartAndPeriodically(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lost := b.event(t, "invoice.paid", "invoice", "in_lost")
	b.startWorkers(t, b.rec, time.Hour)

	require.Eventually(t, func() bool {
		var completed bool
		err := b.pool.QueryRow(context.Background(),
			`SELECT bool_and(state = 'completed') FROM river_job WHERE kind = 'reconcile_events'`).Scan(&completed)
		return err == nil && completed
	}, 20*time.Second, 20*time.Millisecond, "a run once the replica leads, without waiting an interval")
	require.Equal(t, []string{"completed"}, b.jobStates(t), "one run")
	require.Equal(t, []string{lost}, b.recorded(t))
	var queue string
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT queue FROM river_job WHERE kind = 'reconcile_events'`).Scan(&queue))
	require.Equal(t, jobs.QueueDefault, queue, "it spends no Luarmor budget class")
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
	require.Equal(t, []string{"available"}, b.jobStates(t))
}

func TestAFailingRunIsLoggedWithWhatToCheckAndNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var logs logtest.Buffer
	const wrongKey = "sk_test_notthekey0123456789"
	rec := &reconcile.Reconciler{Pool: b.pool, Stripe: stripeapi.New(wrongKey, b.url, nil),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	b.startWorkers(t, rec, time.Hour)

	// River records the failure on the job and retries it.
	require.Eventually(t, func() bool {
		var errs int
		err := b.pool.QueryRow(context.Background(),
			`SELECT coalesce(max(array_length(errors, 1)), 0) FROM river_job WHERE kind = 'reconcile_events'`).Scan(&errs)
		return err == nil && errs >= 1
	}, 20*time.Second, 20*time.Millisecond)
	out := logs.String()
	require.Contains(t, out, "reconciliation with Stripe's events failed")
	require.Contains(t, out, "STRIPE_API_KEY")
	require.Contains(t, out, "listing events (page 1): 401")
	require.NotContains(t, out, wrongKey)
}
