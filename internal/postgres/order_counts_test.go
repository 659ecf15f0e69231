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

// TestConcurrentFoldsNeverDeadlockAndCountEachChangeOnce runs many folds at
// once over changes spread across every status and failure code, so each
// fold updates many count rows: folds on several replicas must never
// deadlock on the counts they add to, and every change is counted once.
func TestConcurrentFoldsNeverDeadlockAndCountEachChangeOnce(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	// Changes in an order that gives neighbouring folds the same labels in
	// different orders: 16 labels, a thousand changes each way.
	_, err := pool.Exec(ctx, `
		INSERT INTO order_status_changes (status, failure_code, delta)
		SELECT (ARRAY['pending','fulfilled','revoked','failed'])[1 + (g * 7) % 4],
		       (ARRAY['','session_unknown','price_unknown','key_failed'])[1 + (g * 5 / 3) % 4],
		       CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END
		  FROM generate_series(1, 4000) g`)
	require.NoError(t, err)

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
	var left, total int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM order_status_changes`).Scan(&left))
	require.Zero(t, left)
	require.NoError(t, pool.QueryRow(ctx, `SELECT COALESCE(sum(n), 0)::bigint FROM order_status_counts`).Scan(&total))
	require.Zero(t, total, "every change counted once")
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
