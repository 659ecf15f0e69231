package postgres

import (
	"context"
	"fmt"
	"time"
)

// refillProgressSQL reads the keys made since through their time, and the
// rest among the unsold keys only: never every key the price ever sold.
var refillProgressSQL = lookup("RefillProgress", `SELECT
			(SELECT count(*) FROM stock_keys WHERE price_id = $1 AND made_at >= $4),
			count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE project_id = $2 AND key_days = $3 AND status IN ('pending', 'ready'))
		FROM stock_keys WHERE price_id = $1 AND status <> 'sold'`)

// RefillProgress counts, from the stock's rows, how far a refill of plan
// queued at since has got: made is the price's keys made since then
// (sold ones included), total adds the keys still to make (those planned
// and the places the target leaves). Counting rows rather than a run's
// steps keeps the count right when a refill is cut off and retried.
func RefillProgress(ctx context.Context, db DB, plan StockPlan, since time.Time) (made, total int, err error) {
	var pending, forSale int
	err = db.QueryRow(ctx, refillProgressSQL, plan.PriceID, plan.ProjectID, plan.KeyDays, since).Scan(&made, &pending, &forSale)
	if err != nil {
		return 0, 0, fmt.Errorf("counting the refill of the stock of price %s: %w", plan.PriceID, err)
	}
	return made, made + pending + max(plan.Target-forSale, 0), nil
}

// DeleteProgress counts, from the stock's rows, how far a deletion of a
// price's stock queued at since has got: deleted is its keys deleted since
// then, total adds those still being deleted (retiring).
func DeleteProgress(ctx context.Context, db DB, priceID string, since time.Time) (deleted, total int, err error) {
	var retiring int
	err = db.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM stock_keys_deleted WHERE price_id = $1 AND deleted_at >= $2),
			(SELECT count(*) FROM stock_keys WHERE price_id = $1 AND status = 'retiring')`,
		priceID, since).Scan(&deleted, &retiring)
	if err != nil {
		return 0, 0, fmt.Errorf("counting the deletion of the stock of price %s: %w", priceID, err)
	}
	return deleted, deleted + retiring, nil
}

// UnsoldStockKeys counts the unsold stock keys of projects, the keys a
// reconciliation expects to list there.
func UnsoldStockKeys(ctx context.Context, db DB, projects []string) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM stock_keys WHERE project_id = ANY($1) AND status <> 'sold'`, projects).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the unsold stock keys: %w", err)
	}
	return n, nil
}
