package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// LockPayment serialises, for the rest of the transaction, every step that
// ties orders to a payment: recording an order and tracing a revocation to
// its orders. Without it a dispute traced while its order is being recorded
// could miss it. Keys are payment intent or subscription IDs.
func LockPayment(ctx context.Context, tx pgx.Tx, keys ...string) error {
	var ks []string
	for _, k := range keys {
		if k != "" {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks) // a fixed order, so two transactions never deadlock
	for _, k := range ks {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('payment:' || $1, 0))`, k); err != nil {
			return fmt.Errorf("locking payment %s: %w", k, err)
		}
	}
	return nil
}

const revocationColumns = `id, source, source_id, COALESCE(charge_id, ''), COALESCE(payment_intent_id, ''),
	COALESCE(subscription_id, ''), COALESCE(invoice_id, ''), action, reason, status, resolved_at IS NOT NULL, inquiry`

func scanRevocation(row pgx.Row) (*order.Revocation, error) {
	var r order.Revocation
	err := row.Scan(&r.ID, &r.Source, &r.SourceID, &r.ChargeID, &r.PaymentIntentID, &r.SubscriptionID, &r.InvoiceID,
		&r.Action, &r.Reason, &r.Status, &r.Resolved, &r.Inquiry)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// RecordRevocation stores a revocation once per source ID and returns the
// stored row, which may be an earlier one (a repeated event, or a dispute
// already closed).
func RecordRevocation(ctx context.Context, tx pgx.Tx, r order.Revocation) (*order.Revocation, error) {
	if r.Status == "" {
		r.Status = order.RevocationActive
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO revocations (source, source_id, charge_id, payment_intent_id, subscription_id, action, reason, status,
		                         lifted_at)
		VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''), $6, $7, $8, CASE WHEN $8 = 'lifted' THEN now() END)
		ON CONFLICT (source_id) DO UPDATE SET
			charge_id = COALESCE(revocations.charge_id, EXCLUDED.charge_id),
			payment_intent_id = COALESCE(revocations.payment_intent_id, EXCLUDED.payment_intent_id)`,
		r.Source, r.SourceID, r.ChargeID, r.PaymentIntentID, r.SubscriptionID, r.Action, r.Reason, r.Status)
	if err != nil {
		return nil, fmt.Errorf("recording %s %s: %w", r.Source, r.SourceID, err)
	}
	stored, err := scanRevocation(tx.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE source_id = $1`, r.SourceID))
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", r.Source, r.SourceID, err)
	}
	return stored, nil
}

// LiftRevocation records a revocation lifted (a dispute won), whether or
// not its opening was recorded yet, and reports whether it had been active:
// only then can it have revoked anything that must now be restored. One
// statement, so a concurrent opening and closing of the same dispute always
// ends lifted.
func LiftRevocation(ctx context.Context, tx pgx.Tx, r order.Revocation) (lifted *order.Revocation, wasActive bool, err error) {
	var existed bool
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO revocations AS v (source, source_id, charge_id, payment_intent_id, action, reason, status, lifted_at)
		VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), $5, $6, 'lifted', now())
		ON CONFLICT (source_id) DO UPDATE SET status = 'lifted', lifted_at = now()
		WHERE v.status = 'active'
		RETURNING v.id, v.xmax <> 0`,
		r.Source, r.SourceID, r.ChargeID, r.PaymentIntentID, r.Action, r.Reason).Scan(&id, &existed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil // lifted already
	}
	if err != nil {
		return nil, false, fmt.Errorf("lifting revocation %s: %w", r.SourceID, err)
	}
	lifted, err = GetRevocation(ctx, tx, id)
	return lifted, existed, err
}

// GetRevocation reads one revocation.
func GetRevocation(ctx context.Context, db DB, id int64) (*order.Revocation, error) {
	r, err := scanRevocation(db.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no revocation %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading revocation %d: %w", id, err)
	}
	return r, nil
}

// ResolveRevocation records what the payment was traced to.
func ResolveRevocation(ctx context.Context, tx pgx.Tx, id int64, paymentIntentID, subscriptionID, invoiceID string) error {
	_, err := tx.Exec(ctx, `UPDATE revocations SET resolved_at = COALESCE(resolved_at, now()),
		payment_intent_id = COALESCE(payment_intent_id, NULLIF($2, '')),
		subscription_id = COALESCE(subscription_id, NULLIF($3, '')),
		invoice_id = COALESCE(invoice_id, NULLIF($4, ''))
		WHERE id = $1`, id, paymentIntentID, subscriptionID, invoiceID)
	if err != nil {
		return fmt.Errorf("resolving revocation %d: %w", id, err)
	}
	return nil
}

// ActiveRevocationFor finds an active revocation, with an action, of a
// payment intent or subscription, that holds order sessionID, whose
// checkout paid firstInvoiceID. A refund of one invoice of the
// subscription takes back that period only: a later invoice's refund holds
// no order, and the first invoice's holds it only while no other payment
// holds its keys (OrderPaidOtherwise).
func ActiveRevocationFor(ctx context.Context, tx pgx.Tx, sessionID, paymentIntentID, subscriptionID, firstInvoiceID string) (*order.Revocation, error) {
	r, err := scanRevocation(tx.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations
		WHERE status = 'active' AND action <> 'none'
		  AND ((payment_intent_id = $1 AND $1 <> '') OR (subscription_id = $2 AND $2 <> ''))
		  AND NOT (source = 'refund' AND invoice_id IS NOT NULL AND (invoice_id <> $3 OR `+paidOtherwise("$4", "invoice_id")+`))
		ORDER BY id LIMIT 1`, paymentIntentID, subscriptionID, firstInvoiceID, sessionID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up revocations: %w", err)
	}
	return r, nil
}

// paidOtherwise is the SQL condition that order session's units hold a
// period that counts (active, or suspended for an inquiry) paid by another
// invoice of the subscription than the one refunded, refunded: a renewal
// paid since.
func paidOtherwise(session, refunded string) string {
	return `EXISTS (SELECT 1 FROM key_grants g JOIN order_keys k ON k.id = g.order_key_id
		WHERE k.checkout_session_id = ` + session + ` AND g.state IN ('active', 'suspended')
		  AND g.source LIKE 'invoice:%' AND g.source <> 'invoice:' || ` + refunded + `)`
}

// OrderPaidOtherwise reports whether a renewal still holds the keys of an
// order whose subscription's invoice invoiceID was refunded: one of its
// units holds a period another invoice paid that counts. A refund of the
// first invoice revokes an order only when none does.
func OrderPaidOtherwise(ctx context.Context, db DB, sessionID, invoiceID string) (bool, error) {
	var held bool
	err := db.QueryRow(ctx, `SELECT `+paidOtherwise("$1", "$2::text"), sessionID, invoiceID).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("reading whether a renewal holds order %s: %w", sessionID, err)
	}
	return held, nil
}

// RestoreRefundedOrders restores the revoked orders of a subscription that
// a refund of its first invoice no longer holds: a renewal paid (and
// granted) since holds their keys, whatever order the refund and the
// renewal were handled in.
func RestoreRefundedOrders(ctx context.Context, tx pgx.Tx, subscriptionID string) error {
	rows, err := tx.Query(ctx, `SELECT o.checkout_session_id FROM orders o JOIN revocations v ON v.id = o.revocation_id
		WHERE o.subscription_id = $1 AND o.status = 'revoked' AND v.source = 'refund' AND v.invoice_id IS NOT NULL
		ORDER BY o.checkout_session_id`, subscriptionID)
	if err != nil {
		return fmt.Errorf("finding the refunded orders of subscription %s: %w", subscriptionID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("finding the refunded orders of subscription %s: %w", subscriptionID, err)
	}
	for _, id := range ids {
		if err := RestoreOrder(ctx, tx, id); err != nil {
			return err
		}
	}
	return nil
}

// OrdersOfPayment lists the orders paid by a payment intent or belonging to
// a subscription.
func OrdersOfPayment(ctx context.Context, tx pgx.Tx, paymentIntentID, subscriptionID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT checkout_session_id FROM orders
		WHERE (payment_intent_id = $1 AND $1 <> '') OR (subscription_id = $2 AND $2 <> '')
		ORDER BY checkout_session_id`, paymentIntentID, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("finding orders of a payment: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RevokeOrder marks an order revoked by a revocation.
func RevokeOrder(ctx context.Context, tx pgx.Tx, sessionID string, revocationID int64) error {
	_, err := tx.Exec(ctx, `UPDATE orders SET status = 'revoked', revocation_id = $2, updated_at = now()
		WHERE checkout_session_id = $1`, sessionID, revocationID)
	if err != nil {
		return fmt.Errorf("revoking order %s: %w", sessionID, err)
	}
	return nil
}

// RestoreOrder undoes a lifted revocation on an order (or a refund of its
// first invoice that a renewal paid since outweighs), unless another
// revocation still holds it: the order is fulfilled again if every key is
// delivered, pending otherwise.
func RestoreOrder(ctx context.Context, tx pgx.Tx, sessionID string) error {
	o, err := LockOrder(ctx, tx, sessionID)
	if err != nil {
		return err
	}
	other, err := ActiveRevocationFor(ctx, tx, sessionID, o.PaymentIntentID, o.SubscriptionID, o.InvoiceID)
	if err != nil {
		return err
	}
	if other != nil {
		_, err = tx.Exec(ctx, `UPDATE orders SET revocation_id = $2 WHERE checkout_session_id = $1`, sessionID, other.ID)
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE orders SET status = 'pending', revocation_id = NULL, updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'revoked'`, sessionID)
	if err != nil {
		return fmt.Errorf("restoring order %s: %w", sessionID, err)
	}
	return settleOrder(ctx, tx, sessionID)
}

// UnitsOfOrder lists the IDs of an order's units.
func UnitsOfOrder(ctx context.Context, db DB, sessionID string) ([]int64, error) {
	rows, err := db.Query(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1 ORDER BY id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("listing the units of order %s: %w", sessionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// KeysWithStatus lists an order's delivered keys in the given status.
func KeysWithStatus(ctx context.Context, db DB, sessionID string, status order.KeyStatus) ([]order.Key, error) {
	rows, err := db.Query(ctx, `SELECT `+keyColumns+` FROM order_keys
		WHERE checkout_session_id = $1 AND status = $2 AND user_key IS NOT NULL ORDER BY id`, sessionID, status)
	if err != nil {
		return nil, fmt.Errorf("listing keys of order %s: %w", sessionID, err)
	}
	return collectKeys(rows)
}

// SetKeyStatus records a key's new state after a revocation or its lifting.
func SetKeyStatus(ctx context.Context, tx pgx.Tx, id int64, status order.KeyStatus) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET status = $2, updated_at = now() WHERE id = $1`, id, status)
	if err != nil {
		return fmt.Errorf("setting status of order key %d: %w", id, err)
	}
	return nil
}

// SupportBan is support's ban or revocation of a unit's key, a fact of
// the key's ledger (entitlement.Facts): while it holds, the key's writer
// keeps the key banned with Reason, or deleted when Delete.
type SupportBan struct {
	Held   bool
	Reason string
	// Delete: support revoked the key under REFUND_ACTION=delete.
	Delete bool
}

// SetSupportBan records support's ban, revocation or its lifting (Held
// false) on a unit (see order.Key.SupportBan). It reports whether that
// changed the fact: a repeat changes nothing, so it does not make the
// key's writer run again.
func SetSupportBan(ctx context.Context, tx pgx.Tx, id int64, b SupportBan) (bool, error) {
	if !b.Held {
		b = SupportBan{}
	}
	tag, err := tx.Exec(ctx, `UPDATE order_keys SET support_ban = $2, support_ban_reason = $3, support_delete = $4, updated_at = now()
		WHERE id = $1 AND (support_ban, support_ban_reason, support_delete) IS DISTINCT FROM ($2, $3, $4)`,
		id, b.Held, b.Reason, b.Delete)
	if err != nil {
		return false, fmt.Errorf("recording support's ban of order key %d: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// RecordRenewal stores a renewal once per invoice and returns the stored
// one: the expiry is computed once, whatever a repeated event says.
func RecordRenewal(ctx context.Context, tx pgx.Tx, r order.Renewal) (*order.Renewal, error) {
	_, err := tx.Exec(ctx, `INSERT INTO renewals (invoice_id, subscription_id, billing_reason, period_end, expires_at, extends)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (invoice_id) DO NOTHING`,
		r.InvoiceID, r.SubscriptionID, r.BillingReason, r.PeriodEnd, r.ExpiresAt, r.Extends)
	if err != nil {
		return nil, fmt.Errorf("recording renewal %s: %w", r.InvoiceID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET paid_through = GREATEST(COALESCE(paid_through, 0), $2), updated_at = now()
		WHERE subscription_id = $1`, r.SubscriptionID, r.PeriodEnd); err != nil {
		return nil, fmt.Errorf("recording paid-through time of %s: %w", r.SubscriptionID, err)
	}
	return GetRenewal(ctx, tx, r.InvoiceID)
}

// GetRenewal reads one renewal.
func GetRenewal(ctx context.Context, db DB, invoiceID string) (*order.Renewal, error) {
	var r order.Renewal
	err := db.QueryRow(ctx, `SELECT invoice_id, subscription_id, billing_reason, period_end, expires_at, extends
		FROM renewals WHERE invoice_id = $1`, invoiceID).
		Scan(&r.InvoiceID, &r.SubscriptionID, &r.BillingReason, &r.PeriodEnd, &r.ExpiresAt, &r.Extends)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no renewal for invoice %s", invoiceID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading renewal %s: %w", invoiceID, err)
	}
	return &r, nil
}

// LatestRenewal returns the extending renewal of a subscription with the
// latest expiry, or nil.
func LatestRenewal(ctx context.Context, db DB, subscriptionID string) (*order.Renewal, error) {
	var invoiceID string
	err := db.QueryRow(ctx, `SELECT invoice_id FROM renewals WHERE subscription_id = $1 AND extends
		ORDER BY expires_at DESC LIMIT 1`, subscriptionID).Scan(&invoiceID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading renewals of %s: %w", subscriptionID, err)
	}
	return GetRenewal(ctx, db, invoiceID)
}

// ActiveKeysOfSubscription lists the delivered, active keys of a
// subscription's recurring prices that are still part of it: one-time
// items bought alongside and units that left it are not renewed.
func ActiveKeysOfSubscription(ctx context.Context, db DB, subscriptionID string) ([]int64, error) {
	rows, err := db.Query(ctx, `SELECT k.id FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE o.subscription_id = $1 AND k.status = 'active' AND k.user_key IS NOT NULL AND k.recurring AND NOT k.ending
		ORDER BY k.id`, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("listing keys of %s: %w", subscriptionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// RecordKeyRenewal records a renewal applied to a key and its expiry.
func RecordKeyRenewal(ctx context.Context, tx pgx.Tx, keyID int64, invoiceID string, expire int64, changed bool) error {
	_, err := tx.Exec(ctx, `INSERT INTO key_renewals (order_key_id, invoice_id, applied_expire, changed)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, keyID, invoiceID, expire, changed)
	if err != nil {
		return fmt.Errorf("recording renewal %s of key %d: %w", invoiceID, keyID, err)
	}
	// The renewed expiry is the key's target from now on, so a later seat
	// or status change starts from it.
	_, err = tx.Exec(ctx, `UPDATE order_keys SET auth_expire = $2::bigint, updated_at = now(),
			expire_target = CASE WHEN recurring AND NOT ending AND $2 <> -1 THEN GREATEST(COALESCE(expire_target, $2), $2) ELSE expire_target END,
			expire_applied = CASE WHEN recurring AND NOT ending AND $2 <> -1 THEN GREATEST(COALESCE(expire_applied, $2), $2) ELSE expire_applied END
		WHERE id = $1`, keyID, expire)
	if err != nil {
		return fmt.Errorf("recording expiry of key %d: %w", keyID, err)
	}
	return nil
}

// KeyRenewalApplied reports whether a renewal was applied to a key.
func KeyRenewalApplied(ctx context.Context, db DB, keyID int64, invoiceID string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM key_renewals WHERE order_key_id = $1 AND invoice_id = $2)`,
		keyID, invoiceID).Scan(&ok)
	return ok, err
}

// EndSubscription records that a subscription ended.
func EndSubscription(ctx context.Context, db DB, subscriptionID string) error {
	_, err := db.Exec(ctx, `UPDATE orders SET subscription_status = 'canceled', updated_at = now()
		WHERE subscription_id = $1`, subscriptionID)
	if err != nil {
		return fmt.Errorf("recording end of subscription %s: %w", subscriptionID, err)
	}
	return nil
}

var unstartedKeysSQL = lookup("UnstartedKeys", `SELECT `+keyColumns+` FROM order_keys
		WHERE status = 'active' AND user_key IS NOT NULL AND auth_expire IS NULL
		  AND delivered_at < now() - $2::interval AND (checked_at IS NULL OR checked_at < now() - $2::interval)
		ORDER BY checked_at NULLS FIRST, id LIMIT $1`)

// UnstartedKeys lists delivered keys whose key_days timer had not started
// when last seen, least recently checked first, skipping keys delivered or
// checked within minAge.
func UnstartedKeys(ctx context.Context, db DB, limit int, minAge time.Duration) ([]order.Key, error) {
	rows, err := db.Query(ctx, unstartedKeysSQL, limit, minAge)
	if err != nil {
		return nil, fmt.Errorf("listing keys to refresh: %w", err)
	}
	return collectKeys(rows)
}

// RecordKeyCheck stores what Luarmor said of a key's expiry: nil while its
// timer has still not started.
func RecordKeyCheck(ctx context.Context, db DB, id int64, authExpire *int64) error {
	_, err := db.Exec(ctx, `UPDATE order_keys SET checked_at = now(), auth_expire = COALESCE($2, auth_expire), updated_at = now()
		WHERE id = $1`, id, authExpire)
	if err != nil {
		return fmt.Errorf("recording check of key %d: %w", id, err)
	}
	if authExpire == nil {
		return nil
	}
	var projectID, userKey string
	if err := db.QueryRow(ctx, `SELECT project_id, user_key FROM order_keys WHERE id = $1`, id).Scan(&projectID, &userKey); err != nil {
		return fmt.Errorf("reading key %d: %w", id, err)
	}
	return LearnStart(ctx, db, projectID, userKey, *authExpire)
}

// LearnStart records, once, when a key that waited with key_days was first
// used, from the expiry Luarmor then gave it (first use + key_days).
func LearnStart(ctx context.Context, db DB, projectID, userKey string, authExpire int64) error {
	_, err := db.Exec(ctx, `UPDATE ledger_keys SET started_at = $3::bigint - 86400 * waiting_days, updated_at = now()
		WHERE project_id = $1 AND user_key = $2 AND started_at IS NULL AND waiting_days > 0 AND $3::bigint <> -1`,
		projectID, userKey, authExpire)
	if err != nil {
		return fmt.Errorf("recording the start of a key: %w", err)
	}
	return nil
}
