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

// An expiry check is one of the two reasons keys are read as they come
// near their expiry: the buyer's email and the shop's key.expiring event.
// Each has its rows in the queue of keys still to check
// (expiry_checks_due, migration 0063), under its own kind. Triggers on
// order_keys and orders queue a key, for both checks, whenever it is
// delivered or anything its notice depends on changes, and only while it
// is active with an expiry ahead: the queue is bounded by the shop's
// current keys, not by its history.
type expiryCheck string

const (
	mailExpiryCheck  expiryCheck = "mail"
	eventExpiryCheck expiryCheck = "event"
)

// expiringKeysQuery takes, for check, the queue's rows of at most $3
// keys' expiries after $1 and at most at $2 (unix seconds), soonest first,
// and drops at most $3 rows whose expiry is $1 or before (no notice is
// owed for an expiry gone). Of the Luarmor keys of the rows it took, it
// lists, soonest first, the units that stop working in that window, will
// not renew and still owe what owed says of each unit k of order o, the
// newest unit of each Luarmor key; each row also carries how many queue
// rows it dropped and took (a single row, with no unit, when none owes).
//
// Taking and listing are one statement, so one snapshot: the units are
// read as they were when the rows were taken. Writers only append rows
// (migration 0063): a change committed after the statement began has a row
// of its own, which this statement cannot see and so leaves for a later
// run, and that run reads the unit as the change left it. Another run's
// rows are skipped (SKIP LOCKED). A row is deleted by where the locking
// scan found it (ctid): it is locked by then and rows are never updated,
// so it cannot have moved, and the delete reads no index. order_keys is
// only read.
func expiringKeysQuery(check expiryCheck, owed string) string {
	return `
		WITH passed AS (
			DELETE FROM expiry_checks_due WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM expiry_checks_due
				WHERE check_kind = '` + string(check) + `' AND auth_expire <= $1
				ORDER BY auth_expire, id LIMIT $3
				FOR UPDATE SKIP LOCKED))
			RETURNING order_key_id
		), due AS (
			DELETE FROM expiry_checks_due WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM expiry_checks_due
				WHERE check_kind = '` + string(check) + `' AND auth_expire > $1 AND auth_expire <= $2
				ORDER BY auth_expire, id LIMIT $3
				FOR UPDATE SKIP LOCKED))
			RETURNING order_key_id
		), soon AS (
			SELECT DISTINCT ON (k.project_id, k.user_key) k.id, k.checkout_session_id, k.auth_expire
			FROM order_keys k
			JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE (k.project_id, k.user_key) IN (
			        SELECT t.project_id, t.user_key FROM due JOIN order_keys t ON t.id = due.order_key_id)
			  AND k.status = 'active' AND k.auth_expire > 0
			  AND k.auth_expire > $1 AND k.auth_expire <= $2
			  AND o.status = 'fulfilled'
			  AND (NOT k.recurring OR k.ending OR o.subscription_status = 'canceled' OR o.subscription_cancel_at_period_end)
			  AND ` + owed + `
			ORDER BY k.project_id, k.user_key, k.id DESC
		)
		SELECT checked.n, soon.id, soon.checkout_session_id, soon.auth_expire
		FROM (SELECT (SELECT count(*) FROM passed) + (SELECT count(*) FROM due) AS n) checked
		LEFT JOIN soon ON true
		ORDER BY soon.auth_expire, soon.id`
}

var (
	expiringKeysSQL = lookup("ExpiringKeys", expiringKeysQuery(mailExpiryCheck, `o.customer_email <> ''
		AND NOT EXISTS (SELECT 1 FROM lifecycle_emails e JOIN order_keys s ON s.id = e.order_key_id
		                WHERE s.project_id = k.project_id AND s.user_key = k.user_key AND e.kind = 'expiring'
		                  AND e.event = 'key:' || s.id || ':expiry:' || k.auth_expire)`))
	// The subjects are built first, so outbound_events_type_subject_key is
	// read for exactly those, never every key.expiring event ever sent.
	keysExpiringUnannouncedSQL = lookup("KeysExpiringUnannounced", expiringKeysQuery(eventExpiryCheck, `NOT EXISTS (
		SELECT 1 FROM outbound_events e
		WHERE e.type = 'key.expiring' AND e.subject = ANY(ARRAY(
			SELECT 'key:' || s.id || ':expiry:' || k.auth_expire FROM order_keys s
			WHERE s.project_id = k.project_id AND s.user_key = k.user_key)))`))
)

// ExpiringKeys checks, in tx, at most limit queue rows of the buyer's
// expiry notice whose keys stop working after now and at most within after
// it (a key changed several times has a row per change), taking them off
// the queue, and returns how many rows it took and, soonest
// first, those of them that owe the notice: they will not renew and have
// no expiry notice for that expiry yet. They are delivered, active keys of
// fulfilled orders with an address whose expiry is absolute (a key_days
// key once started; a subscription's key once its subscription ended, or
// is set to end, or once it left it). A Luarmor key shared by several
// units (a purchase that extended a key) is listed once, by its newest
// unit. The caller records the notices in tx. A key is queued again when
// its expiry, the key or its order changes (migration 0063), so a run
// reads the keys that entered the window or changed since the last run,
// never every key in the window. The check also drops up to limit queued
// rows whose expiry is now or before, counted as checked; with within 0 it
// only does that. checked < limit: no row is left to take.
func ExpiringKeys(ctx context.Context, tx pgx.Tx, now time.Time, within time.Duration, limit int) (checked int, owed []ExpiringKey, err error) {
	return expiringKeys(ctx, tx, expiringKeysSQL, now, within, limit)
}

// KeysExpiringUnannounced checks the keys as ExpiringKeys does, from the
// queue of the shop's key.expiring event and whatever their order's
// address, and returns those of them that have no key.expiring event for
// that expiry yet: the shop's backend hears of a key once per expiry,
// whether or not its buyer is emailed. The event's subject is
// ExpiryNoticeEvent of the unit it was recorded for, found through
// outbound_events' (type, subject).
func KeysExpiringUnannounced(ctx context.Context, tx pgx.Tx, now time.Time, within time.Duration, limit int) (checked int, owed []ExpiringKey, err error) {
	return expiringKeys(ctx, tx, keysExpiringUnannouncedSQL, now, within, limit)
}

// expiringKeys takes up to limit keys off the queue and lists those of
// their Luarmor keys that owe a notice, with query (expiringKeysQuery): a
// single round trip.
func expiringKeys(ctx context.Context, tx pgx.Tx, query string, now time.Time, within time.Duration, limit int) (int, []ExpiringKey, error) {
	rows, err := tx.Query(ctx, query, now.Unix(), now.Add(within).Unix(), limit)
	if err != nil {
		return 0, nil, fmt.Errorf("checking keys that expire soon: %w", err)
	}
	defer rows.Close()
	checked := 0
	var keys []ExpiringKey
	for rows.Next() {
		var id, expire *int64
		var session *string
		if err := rows.Scan(&checked, &id, &session, &expire); err != nil {
			return 0, nil, fmt.Errorf("checking keys that expire soon: %w", err)
		}
		if id != nil {
			keys = append(keys, ExpiringKey{OrderKeyID: *id, SessionID: *session, Expire: *expire})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("checking keys that expire soon: %w", err)
	}
	return checked, keys, nil
}

// ExpiryNoticeEvent is the event of the expiry notice of unit keyID for
// the expiry expire: a key is announced once per expiry, and again once a
// renewal or a purchase moved it. ExpiringKeys matches it.
func ExpiryNoticeEvent(keyID, expire int64) string {
	return fmt.Sprintf("key:%d:expiry:%d", keyID, expire)
}
