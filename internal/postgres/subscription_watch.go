package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// subscriptionsLapsingSoonSQL compares expire_target as the bigint it is
// (the bounds rounded outwards, so no whole second in the window is lost):
// compared as numeric, order_keys_subscription_expiry_idx could not serve.
var subscriptionsLapsingSoonSQL = lookup("SubscriptionsLapsingSoon", `
		SELECT DISTINCT o.subscription_id FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE k.recurring AND NOT k.ending AND k.status = 'active' AND k.expire_target IS NOT NULL
		  AND k.expire_target < ceil(extract(epoch FROM now() + $1::interval))::bigint
		  AND k.expire_target > floor(extract(epoch FROM now() - interval '7 days'))::bigint
		  AND o.subscription_id IS NOT NULL AND COALESCE(o.subscription_status, '') <> 'canceled'
		LIMIT $2`)

// SubscriptionsLapsingSoon lists subscriptions with a live key (recurring,
// delivered, not ending) whose absolute expiry falls before now + within,
// or fell in the last week: a renewal still being paid (SEPA, ACH) with no
// Stripe event since, or a past_due subscription whose last extension runs
// out. A subscription Stripe ended has its keys marked ending by the sync
// and drops out.
func SubscriptionsLapsingSoon(ctx context.Context, db DB, within time.Duration, limit int) ([]string, error) {
	rows, err := db.Query(ctx, subscriptionsLapsingSoonSQL, within, limit)
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions about to lapse: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions about to lapse: %w", err)
	}
	return ids, nil
}
