package retention_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/retention"
)

const day = 24 * time.Hour

// event is a Stripe event as the tests store it.
type event struct {
	id       string
	age      time.Duration // since it was received
	handled  bool          // a type the service acts on
	awaiting bool          // its handle_events job has not completed
}

func record(t *testing.T, pool *pgxpool.Pool, events ...event) {
	t.Helper()
	for _, e := range events {
		_, err := pool.Exec(t.Context(), `INSERT INTO stripe_events
			(id, type, api_version, livemode, object_id, created_at, received_at, handled, payload, awaiting_handler)
			VALUES ($1, 'invoice.paid', '2023-10-16', false, 'in_1', now() - $2::interval, now() - $2::interval, $3, $4, $5)`,
			e.id, e.age, e.handled, body(e.id), e.awaiting)
		require.NoError(t, err)
	}
}

func body(id string) []byte { return []byte(`{"id":"` + id + `","object":"event"}`) }

// payloads maps every stored event's ID to its body (nil once dropped).
func payloads(t *testing.T, pool *pgxpool.Pool) map[string][]byte {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT id, payload FROM stripe_events`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var p []byte
		require.NoError(t, rows.Scan(&id, &p))
		out[id] = p
	}
	require.NoError(t, rows.Err())
	return out
}

// Old bodies of handled events go, and those of types the service never
// acts on; recent ones and those of events still waiting for their job
// stay, however old. Every event's row stays, so the same event delivered
// again is recognised as already recorded.
func TestPruneDropsOnlyOldBodiesOfHandledEvents(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	record(t, pool,
		event{id: "evt_old_handled", age: 40 * day, handled: true},
		event{id: "evt_old_ignored_type", age: 40 * day, awaiting: true},
		event{id: "evt_old_waiting", age: 400 * day, handled: true, awaiting: true},
		event{id: "evt_recent", age: 30 * day, handled: true},
	)
	p := &retention.Pruner{Pool: pool}
	sum, err := p.Run(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Equal(t, int64(2), sum.Pruned["stripe_event_payloads"])

	got := payloads(t, pool)
	require.Len(t, got, 4, "every event's row stays")
	require.Nil(t, got["evt_old_handled"])
	require.Nil(t, got["evt_old_ignored_type"])
	require.Equal(t, body("evt_old_waiting"), got["evt_old_waiting"], "an event not handled yet keeps its body")
	require.Equal(t, body("evt_recent"), got["evt_recent"])

	// A late duplicate of a pruned event is still a duplicate.
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(t.Context()) }()
	isNew, err := postgres.RecordEvents(t.Context(), tx, []postgres.Event{{ID: "evt_old_handled", Type: "invoice.paid",
		APIVersion: "2023-10-16", ObjectID: "in_1", CreatedAt: time.Now().Add(-40 * day), Handled: true, Payload: body("evt_old_handled")}})
	require.NoError(t, err)
	require.Equal(t, []bool{false}, isNew)

	// A second run finds nothing more.
	sum, err = p.Run(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Zero(t, sum.Pruned["stripe_event_payloads"])
}

// An event's row goes RETENTION_EVENT_ID_DAYS after it was received, long
// after Stripe can send it again; until then a duplicate is refused. An
// event still waiting for its job keeps its row, however old.
func TestPruneDropsEventRowsAfterTheirIDAge(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	record(t, pool,
		event{id: "evt_past_id_age", age: 91 * day, handled: true},
		event{id: "evt_past_id_age_ignored_type", age: 200 * day},
		event{id: "evt_past_id_age_waiting", age: 400 * day, handled: true, awaiting: true},
		event{id: "evt_within_id_age", age: 89 * day, handled: true},
	)
	sum, err := (&retention.Pruner{Pool: pool}).Run(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Equal(t, int64(2), sum.Pruned["stripe_event_rows"])
	got := payloads(t, pool)
	require.Len(t, got, 2, "%v", got)
	require.Equal(t, body("evt_past_id_age_waiting"), got["evt_past_id_age_waiting"], "an event not handled yet keeps its row and body")
	require.Contains(t, got, "evt_within_id_age")
	require.Nil(t, got["evt_within_id_age"], "its body went at 35 days, its row stays")

	// Within the age a duplicate is still one.
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(t.Context()) }()
	isNew, err := postgres.RecordEvents(t.Context(), tx, []postgres.Event{{ID: "evt_within_id_age", Type: "invoice.paid",
		APIVersion: "2023-10-16", ObjectID: "in_1", CreatedAt: time.Now().Add(-89 * day), Handled: true, Payload: body("evt_within_id_age")}})
	require.NoError(t, err)
	require.Equal(t, []bool{false}, isNew)
	require.NoError(t, tx.Rollback(t.Context()))

	// A longer setting keeps the rows longer.
	record(t, pool, event{id: "evt_kept_longer", age: 150 * day, handled: true})
	sum, err = (&retention.Pruner{Pool: pool, Settings: retention.Settings{EventIDAge: 200 * day}}).Run(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Zero(t, sum.Pruned["stripe_event_rows"])
	require.Contains(t, payloads(t, pool), "evt_kept_longer")
}

// The delivery log of an outbound delivery that is done goes after its
// age; a pending delivery's attempts, which its job counts, stay.
func TestPruneDropsOldAttemptsOfFinishedDeliveries(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	var eventID int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO outbound_events (event_id, type, subject, data)
		VALUES ('evt_out_1', 'order.fulfilled', 'order:1', '{}') RETURNING id`).Scan(&eventID))
	delivery := func(status, endpoint string) int64 {
		var id int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO outbound_deliveries (event_id, destination, endpoint, status)
			VALUES ($1, 'webhook', $2, $3) RETURNING id`, eventID, endpoint, status).Scan(&id))
		return id
	}
	attempt := func(delivery int64, age time.Duration) {
		_, err := pool.Exec(ctx, `INSERT INTO outbound_delivery_attempts (delivery_id, at, status_code, duration_ms)
			VALUES ($1, now() - $2::interval, 500, 12)`, delivery, age)
		require.NoError(t, err)
	}
	delivered, failed, pending := delivery("delivered", "https://a.example"), delivery("failed", "https://b.example"), delivery("pending", "https://c.example")
	attempt(delivered, 100*day)
	attempt(delivered, 80*day)
	attempt(failed, 100*day)
	attempt(pending, 100*day)

	sum, err := (&retention.Pruner{Pool: pool}).Run(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(2), sum.Pruned["outbound_delivery_attempts"])
	for id, want := range map[int64]int{delivered: 1, failed: 0, pending: 1} {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM outbound_delivery_attempts WHERE delivery_id = $1`, id).Scan(&n))
		require.Equal(t, want, n, "delivery %d", id)
	}
	var deliveries int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM outbound_deliveries`).Scan(&deliveries))
	require.Equal(t, 3, deliveries, "the deliveries, changed within the age, stay")
}

// The Luarmor call log goes after its age, whatever order or key it names.
func TestPruneDropsOldLuarmorCalls(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	for _, age := range []time.Duration{120 * day, 91 * day, 89 * day, time.Hour} {
		_, err := pool.Exec(ctx, `INSERT INTO luarmor_call_log (sent_at, took_ms, endpoint, status, error_class, order_id)
			VALUES (now() - $1::interval, 50, 'POST /v3/projects/{project_id}/users', 200, '', 7)`, age)
		require.NoError(t, err)
	}
	sum, err := (&retention.Pruner{Pool: pool}).Run(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(2), sum.Pruned["luarmor_call_log"])
	var left []time.Duration
	rows, err := pool.Query(ctx, `SELECT now() - sent_at FROM luarmor_call_log ORDER BY sent_at`)
	require.NoError(t, err)
	left, err = pgx.CollectRows(rows, pgx.RowTo[time.Duration])
	require.NoError(t, err)
	require.Len(t, left, 2)
	require.Less(t, left[0], 90*day, "the calls younger than 90 days stay")
}

// Each batch is one statement in a transaction of its own, at most
// BatchSize rows: 35 old bodies in batches of 10 take four statements
// (10, 10, 10 and the short 5 that ends the kind), four commits. A run
// whose time is up stops between batches and says it is not complete.
func TestPruneWorksInBoundedBatches(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	for i := range 35 {
		record(t, pool, event{id: fmt.Sprintf("evt_%02d", i), age: 40 * day, handled: true})
	}

	stopped, err := (&retention.Pruner{Pool: pool, BatchSize: 10}).Run(t.Context(), time.Now().Add(-time.Second))
	require.NoError(t, err)
	require.False(t, stopped.Complete)
	require.Zero(t, stopped.Pruned["stripe_event_payloads"])

	var batches []int64
	p := &retention.Pruner{Pool: pool, BatchSize: 10, OnBatch: func(kind string, n int64) {
		if kind == "stripe_event_payloads" {
			batches = append(batches, n)
		}
	}}
	sum, err := p.Run(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Equal(t, []int64{10, 10, 10, 5}, batches)
	var commits int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(DISTINCT xmin::text) FROM stripe_events WHERE payload IS NULL`).Scan(&commits))
	require.Equal(t, 4, commits, "each batch its own transaction")
}

// A batch stays within BatchSize whatever plan the server picks: with
// hash joins, merge joins, sorts and materialization off, a locking pick
// of the batch joined to the table it prunes becomes the inner side of a
// nested loop, rescanned once a row; picked as an array it is read once.
func TestPruneBatchesStayBoundedWhateverThePlan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(postgrestest.NewURL(t))
	require.NoError(t, err)
	for _, setting := range []string{"enable_hashjoin", "enable_mergejoin", "enable_hashagg", "enable_material", "enable_sort"} {
		cfg.ConnConfig.RuntimeParams[setting] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `INSERT INTO luarmor_call_log (sent_at, took_ms, endpoint, status, error_class, order_id)
		SELECT now() - interval '100 days', 50, 'POST /v3/projects/{project_id}/users', 200, '', 7 FROM generate_series(1, 35)`)
	require.NoError(t, err)

	var batches []int64
	p := &retention.Pruner{Pool: pool, BatchSize: 10, OnBatch: func(kind string, n int64) {
		if kind == "luarmor_call_log" {
			batches = append(batches, n)
		}
	}}
	sum, err := p.Run(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Equal(t, []int64{10, 10, 10, 5}, batches)
}

// A pruning connection killed in the middle of a batch (the process dying
// with it) loses the batch in flight whole and nothing else: the batches
// before it are committed, every body that must stay is intact, and the
// next run finishes the work.
func TestPruneKilledMidBatchLosesNothingItShouldKeep(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	for i := range 50 {
		record(t, pool, event{id: fmt.Sprintf("evt_old_%02d", i), age: 40 * day, handled: true})
	}
	for i := range 5 {
		record(t, pool, event{id: fmt.Sprintf("evt_keep_recent_%d", i), age: day, handled: true},
			event{id: fmt.Sprintf("evt_keep_waiting_%d", i), age: 100 * day, handled: true, awaiting: true})
	}
	before := payloads(t, pool)

	// After the second batch, a table lock makes the third wait, and its
	// backend is terminated while it waits.
	var lockTx pgx.Tx
	var killed sync.WaitGroup
	batches := 0
	p := &retention.Pruner{Pool: pool, BatchSize: 10, OnBatch: func(kind string, _ int64) {
		if batches++; batches != 2 {
			return
		}
		var err error
		lockTx, err = pool.Begin(ctx)
		require.NoError(t, err)
		_, err = lockTx.Exec(ctx, `LOCK TABLE stripe_events IN EXCLUSIVE MODE`)
		require.NoError(t, err)
		killed.Go(func() { terminateWaitingPrune(ctx, t, pool) })
	}}
	sum, err := p.Run(ctx, time.Now().Add(time.Minute))
	require.Error(t, err, "the batch's connection was terminated")
	killed.Wait()
	require.NoError(t, lockTx.Rollback(ctx))
	require.Equal(t, int64(20), sum.Pruned["stripe_event_payloads"])

	after := payloads(t, pool)
	require.Len(t, after, len(before))
	dropped := 0
	for id, b := range after {
		if b == nil {
			dropped++
			require.Regexp(t, `^evt_old_`, id)
			continue
		}
		require.Equal(t, before[id], b, id)
	}
	require.Equal(t, 20, dropped, "the two committed batches, not the one killed")

	sum, err = (&retention.Pruner{Pool: pool, BatchSize: 10}).Run(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(30), sum.Pruned["stripe_event_payloads"])
	for id, b := range payloads(t, pool) {
		if strings.HasPrefix(id, "evt_keep") {
			require.Equal(t, before[id], b, id)
		} else {
			require.Nil(t, b, id)
		}
	}
}

// terminateWaitingPrune terminates the backend of the prune statement
// waiting for a lock, once it waits.
func terminateWaitingPrune(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var done bool
		err := pool.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE stripe_events SET payload = NULL%'`).Scan(&done)
		if err != nil {
			t.Errorf("terminating the prune: %v", err)
			return
		}
		if done {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("no prune statement waited for the lock")
}
