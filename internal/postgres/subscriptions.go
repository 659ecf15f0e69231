package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// SubscriptionOrder locks and returns the order of a subscription's
// checkout (its first order with loaded items), or nil before there is one.
// Units added later (a seat bought in the Customer Portal) belong to it.
func SubscriptionOrder(ctx context.Context, tx pgx.Tx, subscriptionID string) (*order.Order, error) {
	var id string
	err := tx.QueryRow(ctx, `SELECT checkout_session_id FROM orders
		WHERE subscription_id = $1 AND items_loaded_at IS NOT NULL ORDER BY created_at, checkout_session_id LIMIT 1`,
		subscriptionID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding the order of subscription %s: %w", subscriptionID, err)
	}
	return LockOrder(ctx, tx, id)
}

// SubscriptionPaidThrough returns the end of the latest period paid for of
// a subscription (unix seconds; 0 if none is recorded).
func SubscriptionPaidThrough(ctx context.Context, db DB, subscriptionID string) (int64, error) {
	var end int64
	err := db.QueryRow(ctx, `SELECT COALESCE(max(paid_through), 0) FROM orders WHERE subscription_id = $1`,
		subscriptionID).Scan(&end)
	if err != nil {
		return 0, fmt.Errorf("reading the paid-through time of %s: %w", subscriptionID, err)
	}
	return end, nil
}

// RecordSubscriptionState stores what Stripe says of a subscription now:
// its status and, once paid, the end of the period paid for.
func RecordSubscriptionState(ctx context.Context, tx pgx.Tx, subscriptionID, status string, paidThrough int64) error {
	_, err := tx.Exec(ctx, `UPDATE orders SET subscription_status = NULLIF($2, ''),
			paid_through = CASE WHEN $3 > 0 THEN GREATEST(COALESCE(paid_through, 0), $3) ELSE paid_through END,
			updated_at = now()
		WHERE subscription_id = $1`, subscriptionID, status, paidThrough)
	if err != nil {
		return fmt.Errorf("recording the state of subscription %s: %w", subscriptionID, err)
	}
	return nil
}

// RecurringUnits lists the units of a subscription that are part of it
// now (recurring, not ending, not revoked or refused), oldest first.
func RecurringUnits(ctx context.Context, tx pgx.Tx, subscriptionID string) ([]order.Key, error) {
	rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM order_keys
		WHERE checkout_session_id IN (SELECT checkout_session_id FROM orders WHERE subscription_id = $1)
		  AND recurring AND NOT ending AND status IN ('pending', 'active')
		ORDER BY id FOR UPDATE`, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("listing units of subscription %s: %w", subscriptionID, err)
	}
	return collectKeys(rows)
}

// AddSubscriptionUnits adds n units of a subscription item to its order,
// numbered after the item's existing units, each expiring at target. The
// caller holds the order's lock and decided n from Stripe's current
// quantity, so a repeated decision adds nothing.
func AddSubscriptionUnits(ctx context.Context, tx pgx.Tx, sessionID string, l order.Line, n int) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference,
		                        recurring, expire_target)
		SELECT $1, $2, base.n + g, $4, $5, $6, 'fk_' || left(replace(gen_random_uuid()::text, '-', ''), 20), true, $7
		FROM (SELECT COALESCE(max(unit), 0) AS n FROM order_keys WHERE checkout_session_id = $1 AND line_item_id = $2) base,
		     generate_series(1, $3::int) AS g`,
		sessionID, l.LineItemID, n, l.PriceID, l.ProjectID, l.KeyDays, l.ExpireTarget)
	if err != nil {
		return fmt.Errorf("adding units to order %s: %w", sessionID, err)
	}
	// The order is pending again until the new units are delivered.
	_, err = tx.Exec(ctx, `UPDATE orders SET status = 'pending', updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'fulfilled'`, sessionID)
	if err != nil {
		return fmt.Errorf("reopening order %s: %w", sessionID, err)
	}
	return nil
}

// MoveUnitToPrice moves a unit of a subscription to another price of the
// same Luarmor project (a plan change): it keeps its key, and the new
// price's paid periods are granted to it from now on.
func MoveUnitToPrice(ctx context.Context, tx pgx.Tx, id int64, priceID string, keyDays int) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET price_id = $2, key_days = $3, updated_at = now() WHERE id = $1`, id, priceID, keyDays)
	if err != nil {
		return fmt.Errorf("moving unit %d to price %s: %w", id, priceID, err)
	}
	return nil
}

// EndUnits marks units as leaving their subscription: each runs out at
// end (or earlier, if it already would) and is no longer renewed. It
// returns the delivered keys whose expiry must be set in Luarmor.
func EndUnits(ctx context.Context, tx pgx.Tx, ids []int64, end int64) ([]int64, error) {
	rows, err := tx.Query(ctx, `UPDATE order_keys SET ending = true,
			expire_target = LEAST(COALESCE(expire_target, $2), $2), updated_at = now()
		WHERE id = ANY($1) RETURNING id`, ids, end)
	if err != nil {
		return nil, fmt.Errorf("ending units: %w", err)
	}
	return deliveredOf(ctx, tx, rows)
}

// EndSubscriptionKeys ends every unit of a subscription that Stripe ended:
// each runs out at paidEnd (the end of the period paid for plus the
// grace), or, if it was kept alive past that while a payment was pending,
// at most at accessEnd (now plus the grace). It returns the delivered keys
// whose expiry changed.
func EndSubscriptionKeys(ctx context.Context, tx pgx.Tx, subscriptionID string, paidEnd, accessEnd int64) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		WITH t AS (
			SELECT k.id, GREATEST($2::bigint, LEAST(COALESCE(k.expire_target, $2::bigint), $3::bigint)) AS target
			FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE o.subscription_id = $1 AND k.recurring AND k.status IN ('pending', 'active')
			  AND (NOT k.ending OR k.expire_target IS NULL OR k.expire_target > $2::bigint)
		)
		UPDATE order_keys k SET ending = true,
			expire_target = CASE WHEN k.ending THEN LEAST(k.expire_target, t.target) ELSE t.target END,
			updated_at = now()
		FROM t WHERE k.id = t.id RETURNING k.id`, subscriptionID, paidEnd, accessEnd)
	if err != nil {
		return nil, fmt.Errorf("ending the keys of subscription %s: %w", subscriptionID, err)
	}
	return deliveredOf(ctx, tx, rows)
}

// KeepSubscriptionAlive raises the expiry of a subscription's current
// units to at least until: a renewal is still being paid. It returns the
// delivered keys whose expiry changed.
func KeepSubscriptionAlive(ctx context.Context, tx pgx.Tx, subscriptionID string, until int64) ([]int64, error) {
	rows, err := tx.Query(ctx, `UPDATE order_keys k SET expire_target = $2, updated_at = now()
		FROM orders o WHERE o.checkout_session_id = k.checkout_session_id AND o.subscription_id = $1
		  AND k.recurring AND NOT k.ending AND k.status IN ('pending', 'active')
		  AND k.expire_target IS NOT NULL AND k.expire_target < $2
		RETURNING k.id`, subscriptionID, until)
	if err != nil {
		return nil, fmt.Errorf("keeping subscription %s alive: %w", subscriptionID, err)
	}
	return deliveredOf(ctx, tx, rows)
}

// SuspendSubscription sets whether the keys of a subscription should be
// blacklisted (past_due under PAST_DUE_ACTION=suspend). It returns the
// delivered keys whose state changed.
func SuspendSubscription(ctx context.Context, tx pgx.Tx, subscriptionID string, suspended bool) ([]int64, error) {
	rows, err := tx.Query(ctx, `UPDATE order_keys k SET suspended = $2, updated_at = now()
		FROM orders o WHERE o.checkout_session_id = k.checkout_session_id AND o.subscription_id = $1
		  AND k.recurring AND k.status IN ('pending', 'active') AND k.suspended <> $2
		RETURNING k.id`, subscriptionID, suspended)
	if err != nil {
		return nil, fmt.Errorf("suspending subscription %s: %w", subscriptionID, err)
	}
	return deliveredOf(ctx, tx, rows)
}

// deliveredOf reads the IDs rows return and keeps those of delivered keys.
func deliveredOf(ctx context.Context, tx pgx.Tx, rows pgx.Rows) ([]int64, error) {
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT id FROM order_keys WHERE id = ANY($1) AND user_key IS NOT NULL ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading delivered keys: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// RecordKeyState records what Luarmor now has for a key: the absolute
// expiry set (nil: unchanged) and whether it is suspended.
func RecordKeyState(ctx context.Context, tx pgx.Tx, id int64, expire *int64, suspended bool) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET
			auth_expire = COALESCE($2, auth_expire), expire_applied = COALESCE($2, expire_applied),
			suspended_applied = $3, updated_at = now()
		WHERE id = $1`, id, expire, suspended)
	if err != nil {
		return fmt.Errorf("recording the state of key %d: %w", id, err)
	}
	return nil
}

// SuspendedApplied reports whether a key is blacklisted in Luarmor for a
// past_due subscription.
func SuspendedApplied(ctx context.Context, db DB, id int64) (bool, error) {
	var applied bool
	err := db.QueryRow(ctx, `SELECT suspended_applied FROM order_keys WHERE id = $1`, id).Scan(&applied)
	if err != nil {
		return false, fmt.Errorf("reading key %d: %w", id, err)
	}
	return applied, nil
}
