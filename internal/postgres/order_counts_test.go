package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// TestOrderCountsStayExactUnderConcurrentChangesAndFolds inserts orders and
// moves them between statuses and failure codes from several connections at
// once, in random order, while other connections fold the changes; at
// random moments, and at the end, the running counts (by status, and the
// failed orders by code) equal a full count of the orders table taken in
// the same snapshot.
func TestOrderCountsStayExactUnderConcurrentChangesAndFolds(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	statuses := []string{"pending", "fulfilled", "revoked", "failed"}
	// A code may stay on an order that leaves 'failed' (a retry): it is
	// counted only while the order is failed.
	codes := []any{nil, "session_unknown", "price_unknown", "key_failed"}

	const writers, ordersPerWriter = 4, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 52))
			for i := range ordersPerWriter {
				id := fmt.Sprintf("cs_test_count_%d_%d", w, i)
				_, err := postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
					PaymentStatus: "paid", SessionStatus: "complete"})
				if !assert.NoError(t, err) {
					return
				}
				// A few status changes per order, some in one transaction
				// with another order's, some repeating the same status.
				for range rng.IntN(4) {
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, `UPDATE orders SET status = $2, failure_code = $3 WHERE checkout_session_id = $1`,
							id, statuses[rng.IntN(len(statuses))], codes[rng.IntN(len(codes))]); err != nil {
							return err
						}
						if rng.IntN(3) == 0 { // the code alone changes
							if _, err := tx.Exec(ctx, `UPDATE orders SET failure_code = $2 WHERE checkout_session_id = $1`,
								id, codes[rng.IntN(len(codes))]); err != nil {
								return err
							}
						}
						_, err := tx.Exec(ctx, `UPDATE orders SET status = $1 WHERE id = (SELECT min(id) FROM orders)`,
							statuses[rng.IntN(len(statuses))])
						return err
					})
					if !assert.NoError(t, err) {
						return
					}
				}
				if rng.IntN(10) == 0 {
					_, err := pool.Exec(ctx, `DELETE FROM orders WHERE checkout_session_id = $1`, id)
					if !assert.NoError(t, err) {
						return
					}
				}
			}
		})
	}
	stop := make(chan struct{})
	var folders sync.WaitGroup
	for range 2 {
		folders.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := postgres.FoldOrderCounts(ctx, pool, 7)
				if !assert.NoError(t, err) {
					return
				}
				if !assert.NoError(t, countsMatch(pool)) {
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	folders.Wait()
	require.NoError(t, countsMatch(pool))

	// Folding everything leaves no change rows and the same counts.
	for {
		moved, err := postgres.FoldOrderCounts(ctx, pool, 50)
		require.NoError(t, err)
		if moved == 0 {
			break
		}
	}
	var left int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM order_status_changes`).Scan(&left))
	require.Zero(t, left)
	require.NoError(t, countsMatch(pool))
}

// TestConcurrentFoldsNeverDeadlockAndCountEachChangeOnce runs six folds at
// once over changes spread across statuses and failure codes, so
// folds that skip each other's changes work side by side and add to many
// of the same count rows: they must never deadlock (they did while each
// added to the count rows in hash order), and the counts must end up what
// the changes add up to, label by label.
func TestConcurrentFoldsNeverDeadlockAndCountEachChangeOnce(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	// 12 labels, interleaved so that neighbouring batches hold different
	// mixes of them (which, summed in hash order, met in opposite orders
	// before the fix); two changes in three add and one removes, so a
	// batch lost or counted twice shows in its labels' totals.
	_, err := pool.Exec(ctx, `
		INSERT INTO order_status_changes (status, failure_code, delta)
		SELECT (ARRAY['pending','fulfilled','revoked','failed'])[1 + (g * 7) % 4],
		       (ARRAY['','session_unknown','price_unknown','key_failed'])[1 + (g * 5 / 3) % 4],
		       CASE WHEN g % 3 = 0 THEN -1 ELSE 1 END
		  FROM generate_series(1, 4000) g`)
	require.NoError(t, err)
	want := labelTotals(t, pool, `SELECT status, failure_code, sum(delta)::bigint FROM order_status_changes GROUP BY 1, 2`)
	require.Len(t, want, 12)
	before := labelTotals(t, pool, `SELECT status, failure_code, n FROM order_status_counts`)
	for label, n := range before {
		want[label] += n
	}

	const folders = 6
	var wg sync.WaitGroup
	errs := make(chan error, folders)
	for range folders {
		wg.Go(func() {
			for {
				moved, err := postgres.FoldOrderCounts(ctx, pool, 16)
				if err != nil {
					errs <- err
					return
				}
				if moved == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "a fold failed while others ran")
	}
	var left int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM order_status_changes`).Scan(&left))
	require.Zero(t, left)
	require.Equal(t, want, labelTotals(t, pool, `SELECT status, failure_code, n FROM order_status_counts`),
		"every change counted once, under its own label")
}

// TestFoldMovesAtMostItsBatchWhateverThePlan folds under a plan that puts
// the pick of the changes on the inner side of a nested loop, rescanned
// for each change (the planner's choice for a statement prepared while
// the table was empty): one statement still moves at most its batch.
func TestFoldMovesAtMostItsBatchWhateverThePlan(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO order_status_changes (status, failure_code, delta)
		SELECT 'pending', '', 1 FROM generate_series(1, 200)`)
	require.NoError(t, err)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	for _, setting := range []string{"enable_hashjoin", "enable_mergejoin", "enable_hashagg", "enable_material", "enable_sort"} {
		_, err := conn.Exec(ctx, "SET "+setting+" = off")
		require.NoError(t, err)
	}
	defer func() { _, _ = conn.Exec(ctx, "RESET ALL") }()

	moved, err := postgres.FoldOrderCounts(ctx, conn, 16)
	require.NoError(t, err)
	require.EqualValues(t, 16, moved)
	var left int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM order_status_changes`).Scan(&left))
	require.EqualValues(t, 184, left)
}

// labelTotals reads (status, failure code, count) rows into totals by label.
func labelTotals(t *testing.T, pool *pgxpool.Pool, query string) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), query)
	require.NoError(t, err)
	totals := map[string]int64{}
	var status, code string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&status, &code, &n}, func() error { totals[status+"/"+code] += n; return nil })
	require.NoError(t, err)
	return totals
}

// countsMatch compares the running counts, by status and the failed
// orders by code, with a full count of the orders, all read in one
// repeatable-read snapshot.
func countsMatch(pool *pgxpool.Pool) error {
	ctx := context.Background()
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		byStatus, err := postgres.OrderCounts(ctx, tx)
		if err != nil {
			return err
		}
		failed, err := postgres.FailedOrderCounts(ctx, tx)
		if err != nil {
			return err
		}
		if err := sameCounts(ctx, tx, "orders by status", byStatus,
			`SELECT status, count(*) FROM orders GROUP BY status`); err != nil {
			return err
		}
		return sameCounts(ctx, tx, "failed orders by code", failed,
			`SELECT COALESCE(failure_code, ''), count(*) FROM orders WHERE status = 'failed' GROUP BY 1`)
	})
}

// sameCounts compares running counts (a label with 0 being no label) with
// a full count made by query.
func sameCounts(ctx context.Context, tx pgx.Tx, what string, running map[string]int64, query string) error {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return err
	}
	want := map[string]int64{}
	var label string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&label, &n}, func() error { want[label] = n; return nil }); err != nil {
		return err
	}
	got := map[string]int64{}
	for l, n := range running {
		if n != 0 {
			got[l] = n
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		return fmt.Errorf("running counts of %s %v differ from a full count %v in the same snapshot", what, got, want)
	}
	return nil
}
