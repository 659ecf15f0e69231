package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// startWorkers runs the service's workers on pool until the test ends and
// returns the client and a wait for its next handle_events job to end
// (completed, cancelled, or discarded after its last attempt), subscribed
// before the client started. This is fulfillertest's StartRiver and
// WatchJobs, which this internal test cannot import (see helpers_test.go).
// The events it records make the workers call neither Stripe nor Luarmor.
func startWorkers(t *testing.T, pool *pgxpool.Pool) (*river.Client[pgx.Tx], func(*testing.T) *river.Event) {
	t.Helper()
	rc, err := jobs.NewClient(jobs.Deps{Pool: pool, Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{}},
		Logger: slog.New(slog.DiscardHandler)}, jobs.Config{})
	require.NoError(t, err)
	events, cancel := rc.Subscribe(river.EventKindJobCompleted, river.EventKindJobCancelled, river.EventKindJobFailed)
	t.Cleanup(cancel)
	require.NoError(t, rc.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(ctx)
	})
	kind := jobs.HandleEventsArgs{}.Kind()
	ended := func(t *testing.T) *river.Event {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Job.Kind == kind && (ev.Kind != river.EventKindJobFailed || ev.Job.State == rivertype.JobStateDiscarded) {
					return ev
				}
			case <-deadline:
				t.Fatal("no handle_events job ended in 30s")
			}
		}
	}
	return rc, ended
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// A batch is forced by queueing every event before the writer starts: it
// takes them all into one transaction. Events that skipped ParseEvent
// stand for anything a check might miss.
func TestAFailedSharedTransactionIsRecordedEventByEvent(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	rc, ended := startWorkers(t, pool)
	refuseAtDatabase(t, pool)

	var events []postgres.Event
	var bad []bool
	for i := 0; i < 40; i++ {
		ev, err := ParseEvent(failedCheckout(t, fmt.Sprintf("cs_test_batch%03d", i)))
		require.NoError(t, err)
		events, bad = append(events, ev), append(bad, false)
	}
	now := time.Now()
	unchecked := []postgres.Event{
		{ID: "evt_nul\x00", Type: "customer.created", CreatedAt: now, Payload: []byte(`{}`)},
		{ID: "evt_far_future", Type: "customer.created", CreatedAt: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC), Payload: []byte(`{}`)},
		// Random, so that PostgreSQL cannot compress it into an index entry.
		{ID: "evt_" + randomAlnum(3000), Type: "customer.created", CreatedAt: now, Payload: []byte(`{}`)},
		{ID: "evt_bad_type", Type: "customer.\xff", CreatedAt: now, Payload: []byte(`{}`)},
	}
	refused, err := ParseEvent(eventBody(t, "evt_refused_batch", "checkout.session.async_payment_failed",
		map[string]any{"id": "cs_test_refused", "object": "checkout.session"}))
	require.NoError(t, err, "the refused event passes every check")
	unchecked = append(unchecked, refused)
	for i, e := range unchecked {
		at := 7 * (i + 1) // among the valid ones
		events = append(events[:at], append([]postgres.Event{e}, events[at:]...)...)
		bad = append(bad[:at], append([]bool{true}, bad[at:]...)...)
	}
	require.LessOrEqual(t, len(events), maxBatch)

	var logs logtest.Buffer
	in := newIntake(pool, rc, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})), 0)
	pendings := make([]*pending, len(events))
	for i, e := range events {
		pendings[i] = &pending{ctx: context.Background(), event: e, done: make(chan result, 1)}
		in.queue <- pendings[i]
	}
	in.wg.Add(1)
	go in.write()
	t.Cleanup(in.close)

	for i, p := range pendings {
		r := <-p.done
		if bad[i] {
			require.Error(t, r.err, "event %d", i)
			continue
		}
		require.NoError(t, r.err, "event %d", i)
		require.True(t, r.isNew, "event %d", i)
	}
	require.Contains(t, logs.String(), fmt.Sprintf("shared webhook transaction failed; recording its events one by one\" events=%d", len(events)),
		"all were in one transaction, and it failed")
	require.Equal(t, 40, count(t, pool, `SELECT count(*) FROM stripe_events`))
	queued, err := rc.JobList(context.Background(), river.NewJobListParams().Kinds(jobs.HandleEventsArgs{}.Kind()).First(1000))
	require.NoError(t, err)
	for range queued.Jobs {
		ev := ended(t)
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "every handle_events job completed: job %d %s", ev.Job.ID, ev.Job.State)
	}
	require.Equal(t, 40, count(t, pool, `SELECT count(*) FROM orders WHERE status = 'failed'`), "every valid event was acted on")
}
