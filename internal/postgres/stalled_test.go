package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// insertJob records a River job of kind in state with args, as a replica
// would have queued it.
func insertJob(t *testing.T, pool *pgxpool.Pool, kind, state, args string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO river_job (state, attempt, max_attempts, args, kind, queue, finalized_at)
		VALUES ($1::river_job_state, 1, 25, $2::jsonb, $3, 'default',
		        CASE WHEN $1 IN ('completed', 'cancelled', 'discarded') THEN now() END)`, state, args, kind)
	require.NoError(t, err)
}

// TestStalledOrdersListsPaidOrdersNoJobCarries checks the sweep of
// resume_orders against every way an order can be carried or dropped: an
// order is listed only when it is quiet, paid and left with work no live
// job will do, whatever else is queued or finished for other orders.
func TestStalledOrdersListsPaidOrdersNoJobCarries(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	paid := func(id, payment string) *order.Order {
		o, err := postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
			PaymentStatus: payment, SessionStatus: "complete", PaymentIntentID: "pi_" + id})
		require.NoError(t, err)
		return o
	}
	expanded := func(id string) []int64 {
		paid(id, "paid")
		tx(t, pool, func(tx pgx.Tx) error {
			return postgres.AddUnits(ctx, tx, id, []order.Line{{LineItemID: "li_1", Quantity: 2, PriceID: "price_a", ProjectID: "proj", KeyDays: 30}})
		})
		rows, err := pool.Query(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1 ORDER BY id`, id)
		require.NoError(t, err)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		require.NoError(t, err)
		return ids
	}

	// Units to create.
	orphaned := expanded("cs_test_stalled_units")
	carried := expanded("cs_test_carried_units")
	insertJob(t, pool, "create_key", "retryable", `{"order_key_id": `+itoa(carried[1])+`}`) // one live job carries the order
	finished := expanded("cs_test_finished_job")
	insertJob(t, pool, "create_key", "discarded", `{"order_key_id": `+itoa(finished[0])+`}`) // gave up: the order is stalled
	expanded("cs_test_recent_units")

	// Paid and never expanded.
	paid("cs_test_stalled_load", "paid")
	carriedLoad := paid("cs_test_carried_load", "paid")
	insertJob(t, pool, "fulfil_order", "available", `{"order_id": `+itoa(carriedLoad.ID)+`}`)
	paid("cs_test_legacy_load", "paid")
	insertJob(t, pool, "fulfil_order", "scheduled", `{"checkout_session_id": "cs_test_legacy_load"}`) // a previous version's job
	paid("cs_test_unpaid_load", "unpaid")
	paid("cs_test_recent_load", "paid")

	// All but the recent ones went quiet two minutes ago.
	_, err := pool.Exec(ctx, `UPDATE orders SET updated_at = now() - interval '2 minutes' WHERE checkout_session_id NOT LIKE '%recent%'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE order_keys SET updated_at = now() - interval '2 minutes' WHERE checkout_session_id NOT LIKE '%recent%'`)
	require.NoError(t, err)
	// Jobs of other kinds and other orders never carry these.
	insertJob(t, pool, "sync_key", "available", `{"ledger_key_id": `+itoa(orphaned[0])+`}`)
	insertJob(t, pool, "create_key", "completed", `{"order_key_id": `+itoa(orphaned[1])+`}`)

	units, notLoaded, err := postgres.StalledOrders(ctx, pool, "create_key", "fulfil_order", time.Minute, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"cs_test_stalled_units", "cs_test_finished_job"}, units)
	require.ElementsMatch(t, []string{"cs_test_stalled_load"}, notLoaded)
	units, notLoaded, err = postgres.StalledOrders(ctx, pool, "create_key", "fulfil_order", time.Minute, 1)
	require.NoError(t, err)
	require.Len(t, units, 1, "at most limit orders a run")
	require.Len(t, notLoaded, 1)
}

// TestStalledLedgerKeysSkipsKeysAWriterCarries lists the keys whose ledger
// changed and was never applied, except those with a writer job waiting or
// running, or one that gave up within the retry delay.
func TestStalledLedgerKeysSkipsKeysAWriterCarries(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	key := func(name string, applied bool) int64 {
		var id int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO ledger_keys (project_id, user_key, version, applied_version, updated_at)
			VALUES ('proj', $1, 2, CASE WHEN $2 THEN 2 ELSE 1 END, now() - interval '2 minutes') RETURNING id`, name, applied).Scan(&id))
		return id
	}
	stalled := key("stalled", false)
	key("applied", true)
	carried := key("carried", false)
	insertJob(t, pool, "sync_key", "running", `{"ledger_key_id": `+itoa(carried)+`}`)
	gaveUp := key("gave-up", false)
	insertJob(t, pool, "sync_key", "discarded", `{"ledger_key_id": `+itoa(gaveUp)+`}`)
	gaveUpLongAgo := key("gave-up-long-ago", false)
	insertJob(t, pool, "sync_key", "discarded", `{"ledger_key_id": `+itoa(gaveUpLongAgo)+`}`)
	_, err := pool.Exec(ctx, `UPDATE river_job SET finalized_at = now() - interval '2 hours' WHERE args->>'ledger_key_id' = $1`, itoa(gaveUpLongAgo))
	require.NoError(t, err)
	// Jobs without the key's ID, or of another kind, carry nothing.
	insertJob(t, pool, "sync_key", "available", `{"order_key_id": 1}`)
	insertJob(t, pool, "create_key", "available", `{"ledger_key_id": `+itoa(stalled)+`}`)
	var recent int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO ledger_keys (project_id, user_key, version, applied_version)
		VALUES ('proj', 'recent', 2, 1) RETURNING id`).Scan(&recent))

	ids, err := postgres.StalledLedgerKeys(ctx, pool, "sync_key", time.Minute, time.Hour, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{stalled, gaveUpLongAgo}, ids)
}
