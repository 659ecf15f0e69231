package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"fulfiller/internal/order"
)

// DB is what the queries need: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SessionDetails is what a Checkout Session tells about its order.
type SessionDetails struct {
	CheckoutSessionID string
	Mode              string
	PaymentStatus     string
	CustomerEmail     string
	CustomerID        string
	PaymentIntentID   string
	SubscriptionID    string
	InvoiceID         string
	DiscordID         string
}

// UpsertOrder creates the order of a session or refreshes its details. Empty
// details never erase known ones (events and API reads may be partial), and
// the status is left alone. It returns the order as stored, without keys.
func UpsertOrder(ctx context.Context, db DB, d SessionDetails) (*order.Order, error) {
	row := db.QueryRow(ctx, `
		INSERT INTO orders AS o (checkout_session_id, mode, payment_status, customer_email, customer_id,
		                         payment_intent_id, subscription_id, invoice_id, discord_id)
		VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), NULLIF($8, ''), $9)
		ON CONFLICT (checkout_session_id) DO UPDATE SET
			mode              = COALESCE(NULLIF(EXCLUDED.mode, ''), o.mode),
			-- "paid" is final: a stale "unpaid" read never takes it back.
			payment_status    = CASE WHEN o.payment_status IN ('paid', 'no_payment_required') THEN o.payment_status
			                         ELSE COALESCE(NULLIF(EXCLUDED.payment_status, ''), o.payment_status) END,
			customer_email    = COALESCE(NULLIF(EXCLUDED.customer_email, ''), o.customer_email),
			customer_id       = COALESCE(NULLIF(EXCLUDED.customer_id, ''), o.customer_id),
			payment_intent_id = COALESCE(EXCLUDED.payment_intent_id, o.payment_intent_id),
			subscription_id   = COALESCE(EXCLUDED.subscription_id, o.subscription_id),
			invoice_id        = COALESCE(EXCLUDED.invoice_id, o.invoice_id),
			discord_id        = COALESCE(NULLIF(EXCLUDED.discord_id, ''), o.discord_id),
			updated_at        = now()
		RETURNING `+orderColumns,
		d.CheckoutSessionID, d.Mode, d.PaymentStatus, d.CustomerEmail, d.CustomerID,
		d.PaymentIntentID, d.SubscriptionID, d.InvoiceID, d.DiscordID)
	o, err := scanOrder(row)
	if err != nil {
		return nil, fmt.Errorf("saving order %s: %w", d.CheckoutSessionID, err)
	}
	return o, nil
}

const orderColumns = `checkout_session_id, status, mode, payment_status, customer_email, customer_id,
	COALESCE(payment_intent_id, ''), COALESCE(subscription_id, ''), COALESCE(invoice_id, ''), discord_id,
	items_loaded_at IS NOT NULL, paid_through, COALESCE(subscription_status, ''), COALESCE(revocation_id, 0),
	COALESCE(failure_code, ''), COALESCE(failure_reason, ''), created_at, updated_at`

func scanOrder(row pgx.Row) (*order.Order, error) {
	var o order.Order
	err := row.Scan(&o.CheckoutSessionID, &o.Status, &o.Mode, &o.PaymentStatus, &o.CustomerEmail, &o.CustomerID,
		&o.PaymentIntentID, &o.SubscriptionID, &o.InvoiceID, &o.DiscordID,
		&o.ItemsLoaded, &o.PaidThrough, &o.SubscriptionStatus, &o.RevocationID,
		&o.FailureCode, &o.FailureReason, &o.CreatedAt, &o.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

const keyColumns = `id, checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference, status,
	COALESCE(user_key, ''), auth_expire, create_attempts, COALESCE(last_error, ''), delivered_at,
	extended_existing, extend_target`

func scanKey(row pgx.Row) (*order.Key, error) {
	var k order.Key
	err := row.Scan(&k.ID, &k.CheckoutSessionID, &k.LineItemID, &k.Unit, &k.PriceID, &k.ProjectID, &k.KeyDays,
		&k.Reference, &k.Status, &k.UserKey, &k.AuthExpire, &k.CreateAttempts, &k.LastError, &k.DeliveredAt,
		&k.ExtendedExisting, &k.ExtendTarget)
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// GetOrder returns an order with its keys, or an order.ENOTFOUND error.
func GetOrder(ctx context.Context, db DB, sessionID string) (*order.Order, error) {
	o, err := scanOrder(db.QueryRow(ctx, "SELECT "+orderColumns+" FROM orders WHERE checkout_session_id = $1", sessionID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading order %s: %w", sessionID, err)
	}
	rows, err := db.Query(ctx, "SELECT "+keyColumns+" FROM order_keys WHERE checkout_session_id = $1 ORDER BY id", sessionID)
	if err != nil {
		return nil, fmt.Errorf("reading keys of order %s: %w", sessionID, err)
	}
	if o.Keys, err = collectKeys(rows); err != nil {
		return nil, fmt.Errorf("reading keys of order %s: %w", sessionID, err)
	}
	return o, nil
}

// collectKeys reads every key of rows and closes them.
func collectKeys(rows pgx.Rows) ([]order.Key, error) {
	defer rows.Close()
	var keys []order.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, *k)
	}
	return keys, rows.Err()
}

// LockOrder takes the order's row lock for the rest of the transaction, so
// concurrent steps for one order (a fulfilment and a late event) serialise.
func LockOrder(ctx context.Context, tx pgx.Tx, sessionID string) (*order.Order, error) {
	o, err := scanOrder(tx.QueryRow(ctx, "SELECT "+orderColumns+" FROM orders WHERE checkout_session_id = $1 FOR UPDATE", sessionID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("locking order %s: %w", sessionID, err)
	}
	return o, nil
}

// Unit is one purchased unit to be turned into a key.
type Unit struct {
	LineItemID string
	Unit       int
	PriceID    string
	ProjectID  string
	KeyDays    int
}

// AddKeys records the units of an order (once: a repeated call adds
// nothing), marks its items loaded and clears a catalog failure that the
// units now resolve.
func AddKeys(ctx context.Context, tx pgx.Tx, sessionID string, units []Unit) error {
	for _, u := range units {
		_, err := tx.Exec(ctx, `
			INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (checkout_session_id, line_item_id, unit) DO NOTHING`,
			sessionID, u.LineItemID, u.Unit, u.PriceID, u.ProjectID, u.KeyDays, newReference())
		if err != nil {
			return fmt.Errorf("recording keys of order %s: %w", sessionID, err)
		}
	}
	_, err := tx.Exec(ctx, `
		UPDATE orders SET items_loaded_at = COALESCE(items_loaded_at, now()),
			status = CASE WHEN failure_code = $2 THEN 'pending' ELSE status END,
			failure_reason = CASE WHEN failure_code = $2 THEN NULL ELSE failure_reason END,
			failure_code = NULLIF(failure_code, $2),
			updated_at = now()
		WHERE checkout_session_id = $1`, sessionID, order.FailureUnknownPrice)
	if err != nil {
		return fmt.Errorf("marking items of order %s loaded: %w", sessionID, err)
	}
	return settleOrder(ctx, tx, sessionID)
}

// PendingKeyIDs lists the keys of an order that still need creating.
func PendingKeyIDs(ctx context.Context, db DB, sessionID string) ([]int64, error) {
	rows, err := db.Query(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1 AND status = 'pending' ORDER BY id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("listing keys of order %s: %w", sessionID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("listing keys of order %s: %w", sessionID, err)
	}
	return ids, nil
}

// newReference returns the unique tag written into a key's Luarmor note.
// It is long and delimited enough that a substring search finds only it.
func newReference() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "fk_" + hex.EncodeToString(b)
}

// FailOrder marks an order failed with a stable code and a reason for the
// operator. A fulfilled or revoked order keeps its status.
func FailOrder(ctx context.Context, db DB, sessionID, code, reason string) error {
	_, err := db.Exec(ctx, `
		UPDATE orders SET status = 'failed', failure_code = $2, failure_reason = $3, updated_at = now()
		WHERE checkout_session_id = $1 AND status IN ('pending', 'failed')`, sessionID, code, reason)
	if err != nil {
		return fmt.Errorf("marking order %s failed: %w", sessionID, err)
	}
	return nil
}

// FailedOrders lists orders failed with the given code, oldest first.
func FailedOrders(ctx context.Context, db DB, code string, limit int) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT checkout_session_id FROM orders
		WHERE status = 'failed' AND failure_code = $1 ORDER BY updated_at LIMIT $2`, code, limit)
	if err != nil {
		return nil, fmt.Errorf("listing failed orders: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// GetKey returns one key row.
func GetKey(ctx context.Context, db DB, id int64) (*order.Key, error) {
	k, err := scanKey(db.QueryRow(ctx, "SELECT "+keyColumns+" FROM order_keys WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no order key %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading order key %d: %w", id, err)
	}
	return k, nil
}

// BeginCreate records, and commits before Luarmor is called, that a create
// is about to be sent for the key. A later attempt that finds
// CreateAttempts above zero knows the key may already exist.
func BeginCreate(ctx context.Context, db DB, id int64) (*order.Key, error) {
	k, err := scanKey(db.QueryRow(ctx, `UPDATE order_keys SET create_attempts = create_attempts + 1, updated_at = now()
		WHERE id = $1 RETURNING `+keyColumns, id))
	if err != nil {
		return nil, fmt.Errorf("recording create attempt for order key %d: %w", id, err)
	}
	return k, nil
}

// lockOrderOfKey takes the row lock of a key's order. Steps that change a
// key and then settle its order serialise on it, so two keys of one order
// delivered at once still see each other when deciding that the order is
// complete. Locks are always taken order first, then key.
func lockOrderOfKey(ctx context.Context, tx pgx.Tx, id int64) (string, error) {
	var sessionID string
	err := tx.QueryRow(ctx, `SELECT o.checkout_session_id FROM orders o
		JOIN order_keys k ON k.checkout_session_id = o.checkout_session_id
		WHERE k.id = $1 FOR UPDATE OF o`, id).Scan(&sessionID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", order.Errorf(order.ENOTFOUND, "no order key %d", id)
	}
	if err != nil {
		return "", fmt.Errorf("locking the order of key %d: %w", id, err)
	}
	return sessionID, nil
}

// DeliverKey records the Luarmor key of a unit and settles its order.
func DeliverKey(ctx context.Context, tx pgx.Tx, id int64, userKey string, authExpire *int64, extendedExisting bool) error {
	sessionID, err := lockOrderOfKey(ctx, tx, id)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE order_keys SET user_key = $2, auth_expire = $3, status = 'active', last_error = NULL,
			extended_existing = $4, delivered_at = now(), updated_at = now()
		WHERE id = $1`, id, userKey, authExpire, extendedExisting)
	if err != nil {
		return fmt.Errorf("recording key of order key %d: %w", id, err)
	}
	return settleOrder(ctx, tx, sessionID)
}

// FailKey records that Luarmor refused a unit for good, and fails its order.
func FailKey(ctx context.Context, tx pgx.Tx, id int64, reason string) error {
	sessionID, err := lockOrderOfKey(ctx, tx, id)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2, updated_at = now() WHERE id = $1`, id, reason)
	if err != nil {
		return fmt.Errorf("recording failure of order key %d: %w", id, err)
	}
	return FailOrder(ctx, tx, sessionID, order.FailureLuarmorRefused, reason)
}

// NoteKeyError records the latest transient error of a unit for operators.
func NoteKeyError(ctx context.Context, db DB, id int64, reason string) error {
	_, err := db.Exec(ctx, `UPDATE order_keys SET last_error = $2, updated_at = now() WHERE id = $1`, id, reason)
	return err
}

// settleOrder marks a pending order fulfilled once its items are loaded and
// every unit has a key.
func settleOrder(ctx context.Context, db DB, sessionID string) error {
	_, err := db.Exec(ctx, `
		UPDATE orders o SET status = 'fulfilled', updated_at = now()
		WHERE o.checkout_session_id = $1 AND o.status = 'pending' AND o.items_loaded_at IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM order_keys k WHERE k.checkout_session_id = o.checkout_session_id AND k.user_key IS NULL)`,
		sessionID)
	if err != nil {
		return fmt.Errorf("settling order %s: %w", sessionID, err)
	}
	return nil
}

// ResetFailures makes a failed order and its refused keys pending again, so
// that a new fulfilment run retries them.
func ResetFailures(ctx context.Context, tx pgx.Tx, sessionID string) error {
	tag, err := tx.Exec(ctx, `UPDATE orders SET status = 'pending', failure_code = NULL, failure_reason = NULL, updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'failed' AND failure_code <> $2`, sessionID, order.FailurePaymentFailed)
	if err != nil {
		return fmt.Errorf("resetting order %s: %w", sessionID, err)
	}
	if tag.RowsAffected() == 0 {
		var status, code string
		err := tx.QueryRow(ctx, `SELECT status, COALESCE(failure_code, '') FROM orders WHERE checkout_session_id = $1`, sessionID).Scan(&status, &code)
		if errors.Is(err, pgx.ErrNoRows) {
			return order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
		}
		if err != nil {
			return err
		}
		if status != string(order.StatusFailed) {
			return order.Errorf(order.EINVALID, "order %s is %s, not failed: nothing to retry", sessionID, status)
		}
		return order.Errorf(order.EINVALID, "order %s failed because its payment failed: the customer must pay again", sessionID)
	}
	_, err = tx.Exec(ctx, `UPDATE order_keys SET status = 'pending', updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'failed'`, sessionID)
	if err != nil {
		return fmt.Errorf("resetting keys of order %s: %w", sessionID, err)
	}
	return nil
}
