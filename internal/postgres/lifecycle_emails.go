package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// LifecycleEmail is one lifecycle email of an order: a row of
// lifecycle_emails.
type LifecycleEmail struct {
	ID         int64
	OrderID    int64
	OrderKeyID int64 // 0: about the order
	Kind       string
	Event      string
	EndsAt     *time.Time
	Reason     string
	Status     string
	MessageID  string
}

// RecordLifecycleEmail records the email of kind that event owes the order
// sessionID, once: it returns 0 when the email was recorded before (a
// repeated event) or the order has no address to send it to.
func RecordLifecycleEmail(ctx context.Context, tx pgx.Tx, sessionID string, e LifecycleEmail) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `
		INSERT INTO lifecycle_emails (order_id, order_key_id, kind, event, ends_at, reason, message_id)
		SELECT id, NULLIF($2::bigint, 0), $3, $4, $5, $6, $7 FROM orders
		WHERE checkout_session_id = $1 AND customer_email <> ''
		ON CONFLICT (order_id, kind, event) DO NOTHING
		RETURNING id`, sessionID, e.OrderKeyID, e.Kind, e.Event, e.EndsAt, e.Reason, e.MessageID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recording the %s email: %w", e.Kind, err)
	}
	return id, nil
}

// LockLifecycleEmail reads a lifecycle email and locks its row until tx
// ends. An unknown one is order.ENOTFOUND.
func LockLifecycleEmail(ctx context.Context, tx pgx.Tx, id int64) (*LifecycleEmail, error) {
	var e LifecycleEmail
	var keyID *int64
	err := tx.QueryRow(ctx, `SELECT id, order_id, order_key_id, kind, event, ends_at, reason, status, message_id
		FROM lifecycle_emails WHERE id = $1 FOR UPDATE`, id).
		Scan(&e.ID, &e.OrderID, &keyID, &e.Kind, &e.Event, &e.EndsAt, &e.Reason, &e.Status, &e.MessageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no lifecycle email %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lifecycle email %d: %w", id, err)
	}
	if keyID != nil {
		e.OrderKeyID = *keyID
	}
	return &e, nil
}

// SetLifecycleEmailStatus moves a lifecycle email to status, counting an
// attempt when it is 'sending', recording errText as its last error when
// not empty, and the time it was sent when 'sent'. With from set, only a
// row in that status moves.
func SetLifecycleEmailStatus(ctx context.Context, db DB, id int64, from, status, errText string) error {
	_, err := db.Exec(ctx, `UPDATE lifecycle_emails SET status = $2,
			attempts = attempts + CASE WHEN $2 = 'sending' THEN 1 ELSE 0 END,
			last_error = CASE WHEN $2 = 'sent' THEN NULL ELSE COALESCE(NULLIF($4, ''), last_error) END,
			sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
		WHERE id = $1 AND ($3 = '' OR status = $3)`, id, status, from, errText)
	if err != nil {
		return fmt.Errorf("recording lifecycle email %d as %s: %w", id, status, err)
	}
	return nil
}

// SubscriptionKeysEnd is when the last usable key of an order's
// subscription stops working (unix seconds), 0 when none has an absolute
// expiry.
func SubscriptionKeysEnd(ctx context.Context, db DB, sessionID string) (int64, error) {
	var end *int64
	err := db.QueryRow(ctx, `SELECT max(COALESCE(expire_target, auth_expire)) FROM order_keys
		WHERE checkout_session_id = $1 AND recurring AND status IN ('pending', 'active')`, sessionID).Scan(&end)
	if err != nil {
		return 0, fmt.Errorf("reading when the subscription's keys end: %w", err)
	}
	if end == nil {
		return 0, nil
	}
	return *end, nil
}

// ExpiringKey is a key whose absolute expiry comes soon and does not renew.
type ExpiringKey struct {
	OrderKeyID int64
	SessionID  string
	Expire     int64 // unix seconds
}

// expiringKeysQuery lists, soonest first, at most $3 keys that stop
// working after $1 and at most at $2 (unix seconds), will not renew and
// still owe what owed says of each key k of order o.
func expiringKeysQuery(owed string) string {
	return `
		SELECT id, checkout_session_id, auth_expire FROM (
			SELECT DISTINCT ON (k.project_id, k.user_key) k.id, k.checkout_session_id, k.auth_expire
			FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE k.status = 'active' AND k.auth_expire > 0 AND k.user_key IS NOT NULL
			  AND k.auth_expire > $1 AND k.auth_expire <= $2
			  AND o.status = 'fulfilled'
			  AND (NOT k.recurring OR k.ending OR o.subscription_status = 'canceled' OR o.subscription_cancel_at_period_end)
			  AND ` + owed + `
			ORDER BY k.project_id, k.user_key, k.id DESC
		) soon ORDER BY auth_expire, id LIMIT $3`
}

var (
	expiringKeysSQL = lookup("ExpiringKeys", expiringKeysQuery(`o.customer_email <> ''
		AND NOT EXISTS (SELECT 1 FROM lifecycle_emails e JOIN order_keys s ON s.id = e.order_key_id
		                WHERE s.project_id = k.project_id AND s.user_key = k.user_key AND e.kind = 'expiring'
		                  AND e.event = 'key:' || s.id || ':expiry:' || k.auth_expire)`))
	// The subjects are built first, so outbound_events_type_subject_key is
	// read for exactly those, never every key.expiring event ever sent.
	keysExpiringUnannouncedSQL = lookup("KeysExpiringUnannounced", expiringKeysQuery(`NOT EXISTS (
		SELECT 1 FROM outbound_events e
		WHERE e.type = 'key.expiring' AND e.subject = ANY(ARRAY(
			SELECT 'key:' || s.id || ':expiry:' || k.auth_expire FROM order_keys s
			WHERE s.project_id = k.project_id AND s.user_key = k.user_key)))`))
)

// ExpiringKeys lists, soonest first, at most limit keys that stop working
// after now and at most within before now, will not renew and have no
// expiry notice for that expiry yet: delivered, active keys of fulfilled
// orders with an address whose expiry is absolute (a key_days key once
// started; a subscription's key once its subscription ended, or is set to
// end, or once it left it). A Luarmor key shared by several units (a
// purchase that extended a key) is listed once, by its newest unit. The
// window is read through order_keys_expiring_idx: the keys expiring
// within it, never every key.
func ExpiringKeys(ctx context.Context, db DB, now time.Time, within time.Duration, limit int) ([]ExpiringKey, error) {
	return expiringKeys(ctx, db, expiringKeysSQL, now, within, limit)
}

// KeysExpiringUnannounced lists the keys ExpiringKeys would, whatever
// their order's address, that have no key.expiring event for that expiry
// yet: the shop's backend hears of a key once per expiry, whether or not
// its buyer is emailed. The event's subject is ExpiryNoticeEvent of the
// unit it was recorded for, found through outbound_events' (type, subject).
func KeysExpiringUnannounced(ctx context.Context, db DB, now time.Time, within time.Duration, limit int) ([]ExpiringKey, error) {
	return expiringKeys(ctx, db, keysExpiringUnannouncedSQL, now, within, limit)
}

func expiringKeys(ctx context.Context, db DB, query string, now time.Time, within time.Duration, limit int) ([]ExpiringKey, error) {
	rows, err := db.Query(ctx, query, now.Unix(), now.Add(within).Unix(), limit)
	if err != nil {
		return nil, fmt.Errorf("listing keys that expire soon: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ExpiringKey, error) {
		var k ExpiringKey
		return k, r.Scan(&k.OrderKeyID, &k.SessionID, &k.Expire)
	})
	if err != nil {
		return nil, fmt.Errorf("listing keys that expire soon: %w", err)
	}
	return keys, nil
}

// ExpiryNoticeEvent is the event of the expiry notice of unit keyID for
// the expiry expire: a key is announced once per expiry, and again once a
// renewal or a purchase moved it. ExpiringKeys matches it.
func ExpiryNoticeEvent(keyID, expire int64) string {
	return fmt.Sprintf("key:%d:expiry:%d", keyID, expire)
}
