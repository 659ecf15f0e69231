package postgres

import "context"

// orderCountsSQL is read by every metrics scrape.
var orderCountsSQL = lookup("OrderCounts", `
		SELECT status, sum(n)::bigint FROM (
			SELECT status, n FROM order_status_counts
			UNION ALL
			SELECT status, delta FROM order_status_changes
		) c GROUP BY status`)

// OrderCounts returns how many orders are in each status. It reads the
// folded counts and the changes not yet folded in one statement (one
// snapshot), so a concurrent FoldOrderCounts is seen wholly or not at all
// and the total is exact. Its cost follows the changes since the last fold,
// never the number of orders (migration 0052).
func OrderCounts(ctx context.Context, db DB) (map[string]int64, error) {
	return readCounts(ctx, db, orderCountsSQL)
}

// failedOrderCountsSQL is read by every metrics scrape.
var failedOrderCountsSQL = lookup("FailedOrderCounts", `
		SELECT failure_code, sum(n)::bigint FROM (
			SELECT failure_code, n FROM order_status_counts WHERE status = 'failed'
			UNION ALL
			SELECT failure_code, delta FROM order_status_changes WHERE status = 'failed'
		) c GROUP BY failure_code`)

// FailedOrderCounts returns how many failed orders there are by failure
// code (empty for a failure without one), exactly as OrderCounts counts them,
// from the same running counts kept by code (migration 0058). A code no
// failed order has any longer may be listed with 0.
func FailedOrderCounts(ctx context.Context, db DB) (map[string]int64, error) {
	return readCounts(ctx, db, failedOrderCountsSQL)
}

func readCounts(ctx context.Context, db DB, query string) (map[string]int64, error) {
	rows, err := db.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var label string
		var n int64
		if err := rows.Scan(&label, &n); err != nil {
			return nil, err
		}
		counts[label] = n
	}
	return counts, rows.Err()
}

// foldOrderCountsSQL runs every minute on the leader (fold_order_counts).
var foldOrderCountsSQL = lookup("FoldOrderCounts", `
		WITH moved AS (
			DELETE FROM order_status_changes
			 WHERE id = ANY(ARRAY(SELECT id FROM order_status_changes ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
			RETURNING status, failure_code, delta
		), sums AS (
			SELECT status, failure_code, sum(delta)::bigint AS delta, count(*) AS rows FROM moved GROUP BY status, failure_code
		), folded AS (
			INSERT INTO order_status_counts AS c (status, failure_code, n)
			SELECT status, failure_code, delta FROM sums ORDER BY status, failure_code
			ON CONFLICT (status, failure_code) DO UPDATE SET n = c.n + EXCLUDED.n
		)
		SELECT COALESCE(sum(rows), 0)::bigint FROM sums`)

// FoldOrderCounts moves up to limit status changes into the counts per
// status and failure code, oldest first, in one statement, and reports how
// many it moved. Folds may run at the same time (a job rescued while its
// first run still works, a benchmark's): each takes changes the others have
// not locked (SKIP LOCKED), so none is counted twice and none waits for
// another's; and each adds to the count rows in one order (by status, then
// code), so two folds meeting on several count rows queue on the first
// instead of deadlocking. The changes are picked once, into an array: as a
// semi-join the locking pick could be planned as the inner side of a nested
// loop (a plan cached while the table was empty), and each rescan would
// skip the rows the statement had just deleted and take the next, moving
// the whole table in one statement.
func FoldOrderCounts(ctx context.Context, db DB, limit int) (int64, error) {
	var moved int64
	err := db.QueryRow(ctx, foldOrderCountsSQL, limit).Scan(&moved)
	return moved, err
}
