package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// attachStanding reads what the buyer's state of o and its keys needs
// beyond their rows (order.KeyStanding, order.OrderStanding): each unit's
// grants and what took them, reissues, keys shared with another order, the
// key's binding, the subscription's cancellation and what revoked the
// order. Another order sharing a key is named only when it is the same
// buyer's (same Stripe customer or email): never another buyer's.
func attachStanding(ctx context.Context, db DB, o *order.Order) error {
	if err := readOrderStanding(db.QueryRow(ctx, orderStandingSQL, o.CheckoutSessionID), o); err != nil {
		return err
	}
	if len(o.Keys) == 0 {
		return nil
	}
	rows, err := db.Query(ctx, grantStandingSQL, o.CheckoutSessionID)
	if err != nil {
		return fmt.Errorf("reading the grants of order %s: %w", o.CheckoutSessionID, err)
	}
	if err := readGrantStanding(rows, o); err != nil {
		return err
	}
	rows, err = db.Query(ctx, keyStandingSQL, o.CheckoutSessionID)
	if err != nil {
		return fmt.Errorf("reading the reissues and shared keys of order %s: %w", o.CheckoutSessionID, err)
	}
	return readKeyStanding(rows, o)
}

// The three reads of attachStanding, each by the order's Checkout Session
// ID ($1): the order's own standing, its units' grants, its delivered
// keys' reissues, binding and sharing.
const (
	orderStandingSQL = `SELECT o.subscription_cancel_at_period_end OR COALESCE(o.subscription_status = 'canceled', false),
			COALESCE((SELECT CASE WHEN v.inquiry THEN 'inquiry' ELSE v.source END FROM revocations v
			          WHERE v.id = o.revocation_id AND o.status = 'revoked'), '')
		FROM orders o WHERE o.checkout_session_id = $1`
	grantStandingSQL = `SELECT g.order_key_id, g.state, g.source,
			COALESCE(CASE WHEN v.inquiry THEN 'inquiry' ELSE v.source END, '')
		FROM key_grants g JOIN order_keys k ON k.id = g.order_key_id
		LEFT JOIN revocations v ON v.id = g.revocation_id
		WHERE k.checkout_session_id = $1 ORDER BY g.id`
	keyStandingSQL = `SELECT k.id,
			EXISTS (SELECT 1 FROM key_reissues r WHERE r.old_key_id = k.id AND r.status = 'done'),
			EXISTS (SELECT 1 FROM key_reissues r WHERE r.new_key_id = k.id),
			l.hwid_bound,
			other.checkout_session_id IS NOT NULL,
			CASE WHEN other.same_buyer THEN other.checkout_session_id ELSE '' END
		FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		LEFT JOIN ledger_keys l ON l.project_id = k.project_id AND l.user_key = k.user_key
		LEFT JOIN LATERAL (
			SELECT s.checkout_session_id,
			       (so.customer_id <> '' AND so.customer_id = o.customer_id)
			       OR (so.customer_email <> '' AND lower(so.customer_email) = lower(o.customer_email)) AS same_buyer
			FROM order_keys s JOIN orders so ON so.checkout_session_id = s.checkout_session_id
			WHERE s.project_id = k.project_id AND s.user_key = k.user_key AND s.checkout_session_id <> k.checkout_session_id
			ORDER BY 2 DESC, s.id LIMIT 1
		) other ON true
		WHERE k.checkout_session_id = $1 AND k.user_key IS NOT NULL`
)

// readOrderStanding reads the order's own standing (orderStandingSQL).
func readOrderStanding(row pgx.Row, o *order.Order) error {
	if err := row.Scan(&o.Standing.Cancelled, &o.Standing.RevokedBy); err != nil {
		return fmt.Errorf("reading the standing of order %s: %w", o.CheckoutSessionID, err)
	}
	return nil
}

// keyStandings indexes the standing of o's keys by unit.
func keyStandings(o *order.Order) map[int64]*order.KeyStanding {
	byID := make(map[int64]*order.KeyStanding, len(o.Keys))
	for i := range o.Keys {
		byID[o.Keys[i].ID] = &o.Keys[i].Standing
	}
	return byID
}

// readGrantStanding adds the grants of rows (grantStandingSQL) to the
// standing of o's keys, and closes the rows.
func readGrantStanding(rows pgx.Rows, o *order.Order) error {
	byID := keyStandings(o)
	var unit int64
	var g order.GrantStanding
	_, err := pgx.ForEachRow(rows, []any{&unit, &g.State, &g.Source, &g.TakenBy}, func() error {
		if st := byID[unit]; st != nil {
			st.Grants = append(st.Grants, g)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the grants of order %s: %w", o.CheckoutSessionID, err)
	}
	return nil
}

// readKeyStanding records the reissues, binding and sharing of rows
// (keyStandingSQL) in the standing of o's keys, and closes the rows.
func readKeyStanding(rows pgx.Rows, o *order.Order) error {
	byID := keyStandings(o)
	var unit int64
	var replaced, replacement, shared bool
	var bound *bool
	var sharedWith string
	_, err := pgx.ForEachRow(rows, []any{&unit, &replaced, &replacement, &bound, &shared, &sharedWith}, func() error {
		st := byID[unit]
		if st == nil {
			return nil
		}
		st.Replaced, st.Replacement, st.HWIDBound, st.Shared = replaced, replacement, bound, shared
		if sharedWith != "" {
			st.SharedWith = logging.OrderRef(sharedWith)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the reissues and shared keys of order %s: %w", o.CheckoutSessionID, err)
	}
	return nil
}

// RecordHWIDBinding records whether a key was bound to a machine (its
// identifier in Luarmor set) as the service just read it.
func RecordHWIDBinding(ctx context.Context, db DB, projectID, userKey string, bound bool) error {
	_, err := db.Exec(ctx, `UPDATE ledger_keys SET hwid_bound = $3, hwid_checked_at = now()
		WHERE project_id = $1 AND user_key = $2`, projectID, userKey, bound)
	if err != nil {
		return fmt.Errorf("recording whether a key is bound to a machine: %w", err)
	}
	return nil
}

// ForgetHWIDBinding records the key's binding unknown: its HWID was just
// reset, and the next computer that runs the script binds it unseen.
func ForgetHWIDBinding(ctx context.Context, db DB, projectID, userKey string) error {
	_, err := db.Exec(ctx, `UPDATE ledger_keys SET hwid_bound = NULL, hwid_checked_at = now()
		WHERE project_id = $1 AND user_key = $2`, projectID, userKey)
	if err != nil {
		return fmt.Errorf("forgetting whether a key is bound to a machine: %w", err)
	}
	return nil
}

var unboundKeysSQL = lookup("UnboundKeys", `SELECT `+keyColumns+` FROM order_keys WHERE id = ANY(ARRAY(
			SELECT (SELECT k.id FROM order_keys k WHERE k.project_id = l.project_id AND k.user_key = l.user_key
			        AND k.status = 'active' AND k.auth_expire IS NOT NULL ORDER BY k.id LIMIT 1)
			FROM ledger_keys l WHERE l.hwid_bound = false AND l.hwid_checked_at < now() - $2::interval
			ORDER BY l.hwid_checked_at LIMIT $1))
		ORDER BY id`)

// UnboundKeys lists up to limit delivered, active keys last seen unbound
// more than minAge ago whose timer has started (keys still waiting for
// first use are UnstartedKeys'), least recently read first: read again, a
// key bound since offers its HWID reset.
func UnboundKeys(ctx context.Context, db DB, limit int, minAge time.Duration) ([]order.Key, error) {
	rows, err := db.Query(ctx, unboundKeysSQL, limit, minAge)
	if err != nil {
		return nil, fmt.Errorf("listing keys last seen unbound: %w", err)
	}
	return collectKeys(rows)
}

// RecordSubscriptionCancellation records whether a subscription is set to
// end at its period's end (Stripe's cancel_at_period_end, or a cancel_at).
func RecordSubscriptionCancellation(ctx context.Context, tx pgx.Tx, subscriptionID string, cancelling bool) error {
	_, err := tx.Exec(ctx, `UPDATE orders SET subscription_cancel_at_period_end = $2, updated_at = now()
		WHERE subscription_id = $1 AND subscription_cancel_at_period_end <> $2`, subscriptionID, cancelling)
	if err != nil {
		return fmt.Errorf("recording the cancellation of subscription %s: %w", subscriptionID, err)
	}
	return nil
}
