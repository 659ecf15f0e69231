package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// DB is what the queries need: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// UpsertOrder creates the order of a session or refreshes its details. Empty
// details never erase known ones (events and API reads may be partial), and
// the status is left alone. It returns the order as stored, without keys.
// A subscription's renewals recorded before its order (the invoice's event
// came first) count for the order's paid_through as soon as it exists.
func UpsertOrder(ctx context.Context, db DB, d order.SessionDetails) (*order.Order, error) {
	row := db.QueryRow(ctx, `
		INSERT INTO orders AS o (checkout_session_id, mode, payment_status, customer_email, customer_id,
		                         payment_intent_id, subscription_id, invoice_id, discord_id, session_status, paid_through,
		                         amount_total, currency, placed_at, receipt_url)
		VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), NULLIF($8, ''), $9, $10,
		        (SELECT max(period_end) FROM renewals WHERE subscription_id = NULLIF($7, '')),
		        $11, NULLIF($12, ''), to_timestamp(NULLIF($13::bigint, 0)), NULLIF($14, ''))
		ON CONFLICT (checkout_session_id) DO UPDATE SET
			paid_through      = GREATEST(o.paid_through, (SELECT max(r.period_end) FROM renewals r
			                         WHERE r.subscription_id = COALESCE(EXCLUDED.subscription_id, o.subscription_id))),
			mode              = COALESCE(NULLIF(EXCLUDED.mode, ''), o.mode),
			-- "paid" is final: a stale "unpaid" read never takes it back.
			payment_status    = CASE WHEN o.payment_status IN ('paid', 'no_payment_required') THEN o.payment_status
			                         ELSE COALESCE(NULLIF(EXCLUDED.payment_status, ''), o.payment_status) END,
			-- "complete" is final too.
			session_status    = CASE WHEN o.session_status = 'complete' THEN o.session_status
			                         ELSE COALESCE(NULLIF(EXCLUDED.session_status, ''), o.session_status) END,
			customer_email    = COALESCE(NULLIF(EXCLUDED.customer_email, ''), o.customer_email),
			customer_id       = COALESCE(NULLIF(EXCLUDED.customer_id, ''), o.customer_id),
			payment_intent_id = COALESCE(EXCLUDED.payment_intent_id, o.payment_intent_id),
			subscription_id   = COALESCE(EXCLUDED.subscription_id, o.subscription_id),
			invoice_id        = COALESCE(EXCLUDED.invoice_id, o.invoice_id),
			discord_id        = COALESCE(NULLIF(EXCLUDED.discord_id, ''), o.discord_id),
			-- What was paid is known once and stays: a later read without
			-- it (an event's payload has no receipt) never erases it.
			amount_total      = COALESCE(EXCLUDED.amount_total, o.amount_total),
			currency          = COALESCE(EXCLUDED.currency, o.currency),
			placed_at         = COALESCE(o.placed_at, EXCLUDED.placed_at),
			receipt_url       = COALESCE(EXCLUDED.receipt_url, o.receipt_url),
			updated_at        = now()
		RETURNING `+orderColumns,
		d.CheckoutSessionID, d.Mode, d.PaymentStatus, d.CustomerEmail, d.CustomerID,
		d.PaymentIntentID, d.SubscriptionID, d.InvoiceID, d.DiscordID, d.SessionStatus,
		amountOf(d), d.Currency, d.PlacedAt, d.ReceiptURL)
	o, err := scanOrder(row)
	if err != nil {
		return nil, fmt.Errorf("saving order %s: %w", d.CheckoutSessionID, err)
	}
	return o, nil
}

const orderColumns = `checkout_session_id, status, mode, payment_status, session_status, customer_email, customer_id,
	COALESCE(payment_intent_id, ''), COALESCE(subscription_id, ''), COALESCE(invoice_id, ''), discord_id,
	items_loaded_at IS NOT NULL, paid_through, COALESCE(subscription_status, ''), COALESCE(revocation_id, 0),
	COALESCE(failure_code, ''), COALESCE(failure_reason, ''), created_at, updated_at, id,
	access_generation, session_access_revoked_at IS NOT NULL,
	amount_total, COALESCE(currency, ''), placed_at, COALESCE(receipt_url, '')`

func scanOrder(row pgx.Row) (*order.Order, error) {
	var o order.Order
	err := row.Scan(&o.CheckoutSessionID, &o.Status, &o.Mode, &o.PaymentStatus, &o.SessionStatus, &o.CustomerEmail, &o.CustomerID,
		&o.PaymentIntentID, &o.SubscriptionID, &o.InvoiceID, &o.DiscordID,
		&o.ItemsLoaded, &o.PaidThrough, &o.SubscriptionStatus, &o.RevocationID,
		&o.FailureCode, &o.FailureReason, &o.CreatedAt, &o.UpdatedAt, &o.ID,
		&o.AccessGeneration, &o.SessionAccessRevoked,
		&o.AmountTotal, &o.Currency, &o.PlacedAt, &o.ReceiptURL)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

const keyColumns = `id, checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference, status,
	COALESCE(user_key, ''), auth_expire, create_attempts, COALESCE(last_error, ''), delivered_at,
	extended_existing, extend_target, recurring, expire_target, expire_applied, ending, suspended,
	extend_from, revert_target, discord_link, support_ban`

func scanKey(row pgx.Row) (*order.Key, error) { return scanKeyWith(row) }

// scanKeyWith scans keyColumns and then extra columns into extra.
func scanKeyWith(row pgx.Row, extra ...any) (*order.Key, error) {
	var k order.Key
	dest := append([]any{&k.ID, &k.CheckoutSessionID, &k.LineItemID, &k.Unit, &k.PriceID, &k.ProjectID, &k.KeyDays,
		&k.Reference, &k.Status, &k.UserKey, &k.AuthExpire, &k.CreateAttempts, &k.LastError, &k.DeliveredAt,
		&k.ExtendedExisting, &k.ExtendTarget, &k.Recurring, &k.ExpireTarget, &k.ExpireApplied, &k.Ending, &k.Suspended,
		&k.ExtendFrom, &k.RevertTarget, &k.DiscordLink, &k.SupportBan}, extra...)
	err := row.Scan(dest...)
	if err != nil {
		return nil, err
	}
	return &k, nil
}

var (
	getOrderSQL    = lookup("GetOrder", "SELECT "+orderColumns+" FROM orders WHERE checkout_session_id = $1")
	keysOfOrderSQL = lookup("GetOrder/keys", "SELECT "+keyColumns+" FROM order_keys WHERE checkout_session_id = $1 ORDER BY id")
	// Reads of GetOrder's batch by the order's Checkout Session ID, where
	// the attach functions of listings read many orders at once.
	hwidResetsOfOrderSQL = lookup("GetOrder/hwid", "SELECT "+hwidResetColumns+`, h.order_key_id FROM hwid_resets h
		WHERE h.order_key_id = ANY(ARRAY(SELECT id FROM order_keys WHERE checkout_session_id = $1))`)
	linesOfOrderSQL        = lookup("GetOrder/lines", linesSQL+"o.checkout_session_id = $1"+linesOrder)
	verifiedDiscordOfOrder = lookup("GetOrder/discord", verifiedDiscordSQL)
)

// GetOrderRow returns an order's own row (status, payment, access), one
// query, without what GetOrder adds (keys, HWID resets, Discord, lines,
// standing), or an order.ENOTFOUND error. For steps that decide on the
// order's state alone: a fulfilment queueing units, a long-poll waking.
func GetOrderRow(ctx context.Context, db DB, sessionID string) (*order.Order, error) {
	o, err := scanOrder(db.QueryRow(ctx, getOrderSQL, sessionID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading order %s: %w", sessionID, err)
	}
	return o, nil
}

// GetOrder returns an order with its keys and everything a buyer or
// support sees of it, or an order.ENOTFOUND error. Its row and details are
// read in one round trip (queueOrderDetails), and an order with a verified
// Discord account takes one more.
func GetOrder(ctx context.Context, db DB, sessionID string) (*order.Order, error) {
	o := &order.Order{CheckoutSessionID: sessionID}
	found := false
	b := &pgx.Batch{}
	b.Queue(getOrderSQL, sessionID).QueryRow(func(row pgx.Row) error {
		read, err := scanOrder(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		*o, found = *read, true
		return nil
	})
	details := queueOrderDetails(b, o)
	// A statement PostgreSQL refuses fails the batch before any result is
	// read: the error is named here, not by the reads.
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("reading order %s: %w", sessionID, err)
	}
	if !found {
		return nil, order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
	}
	if err := attachDiscord(ctx, db, o, details.verified); err != nil {
		return nil, err
	}
	return o, nil
}

// AddOrderDetails reads into o, an order's row (GetOrderRow), what GetOrder
// adds to it, in one round trip as GetOrder does.
func AddOrderDetails(ctx context.Context, db DB, o *order.Order) error {
	b := &pgx.Batch{}
	details := queueOrderDetails(b, o)
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("reading the details of order %s: %w", o.CheckoutSessionID, err)
	}
	return attachDiscord(ctx, db, o, details.verified)
}

// orderDetails is what queueOrderDetails reads besides what it fills in.
type orderDetails struct {
	verified *order.VerifiedDiscord // the order's verified Discord account, if any
}

// queueOrderDetails queues in b the reads of what GetOrder adds to the row
// of o: its keys, their HWID resets, its verified Discord account, its
// line items and the standing of the order and its keys. Every read is by
// the order's Checkout Session ID, needing no answer from another, so all
// go to PostgreSQL in one round trip; they fill o as b's results are read,
// in the order queued, keys first (the later reads attach to them), after
// any read queued before (GetOrder's of the row itself). Each read sees
// the database as of its own start, as when they were sent one by one.
func queueOrderDetails(b *pgx.Batch, o *order.Order) *orderDetails {
	sessionID := o.CheckoutSessionID
	details := &orderDetails{}
	b.Queue(keysOfOrderSQL, sessionID).Query(func(rows pgx.Rows) error {
		keys, err := collectKeys(rows)
		if err != nil {
			return fmt.Errorf("reading keys of order %s: %w", sessionID, err)
		}
		o.Keys = keys
		return nil
	})
	b.Queue(hwidResetsOfOrderSQL, sessionID).Query(func(rows pgx.Rows) error { return readHWIDResets(rows, o) })
	b.Queue(verifiedDiscordOfOrder, sessionID).QueryRow(func(row pgx.Row) error {
		v, err := readVerifiedDiscord(row, sessionID)
		details.verified = v
		return err
	})
	b.Queue(linesOfOrderSQL, sessionID).Query(func(rows pgx.Rows) error {
		return readLines(rows, map[string]*order.Order{sessionID: o})
	})
	b.Queue(orderStandingSQL, sessionID).QueryRow(func(row pgx.Row) error {
		if err := readOrderStanding(row, o); !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return nil // no order: GetOrder answers ENOTFOUND
	})
	b.Queue(grantStandingSQL, sessionID).Query(func(rows pgx.Rows) error { return readGrantStanding(rows, o) })
	b.Queue(keyStandingSQL, sessionID).Query(func(rows pgx.Rows) error { return readKeyStanding(rows, o) })
	return details
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

// AddUnits records the units of an order, one row per purchased unit, in
// one statement per line (the rows are generated by PostgreSQL, so an
// order's size never grows the process's memory). A repeated call adds
// nothing. It marks the order's items loaded and clears a catalog failure
// that the units now resolve.
func AddUnits(ctx context.Context, tx pgx.Tx, sessionID string, lines []order.Line) error {
	for _, l := range lines {
		// A reference is "fk_" and 20 hex digits of a random UUID: unique
		// (the column is UNIQUE) and unguessable enough for a note tag.
		_, err := tx.Exec(ctx, `
			INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference,
			                        recurring, expire_target)
			SELECT $1, $2, g, $4, $5, $6, 'fk_' || left(replace(gen_random_uuid()::text, '-', ''), 20), $7, $8
			FROM generate_series(1, $3::int) AS g
			ON CONFLICT (checkout_session_id, line_item_id, unit) DO NOTHING`,
			sessionID, l.LineItemID, l.Quantity, l.PriceID, l.ProjectID, l.KeyDays, l.Recurring, l.ExpireTarget)
		if err != nil {
			return fmt.Errorf("recording keys of order %s: %w", sessionID, err)
		}
		var subscriptionID string
		if l.Recurring {
			if err := tx.QueryRow(ctx, `SELECT COALESCE(subscription_id, '') FROM orders WHERE checkout_session_id = $1`,
				sessionID).Scan(&subscriptionID); err != nil {
				return fmt.Errorf("reading the subscription of order %s: %w", sessionID, err)
			}
		}
		source := "unit"
		if l.Recurring {
			source = periodSource(l.Invoice)
		}
		if err := addLineGrants(ctx, tx, sessionID, l, subscriptionID, source); err != nil {
			return err
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

// ReplanUnits points the order's units of a price that Luarmor refused for
// their project (marked replan, and reset by a retry, so no create of
// theirs is outstanding) at the catalog's current project and key_days,
// and clears the mark: a retry after fixing a project uses the fix. Every
// other unit keeps the terms it was sold with.
func ReplanUnits(ctx context.Context, tx pgx.Tx, sessionID, priceID, projectID string, keyDays int) error {
	// The unit's one-time grant follows its new terms: it was never
	// delivered, so nothing was paid for on a key yet.
	_, err := tx.Exec(ctx, `
		WITH replanned AS (
			UPDATE order_keys SET project_id = $3, key_days = $4, replan = false, updated_at = now()
			WHERE checkout_session_id = $1 AND price_id = $2 AND replan AND status = 'pending' AND create_attempts = 0
			RETURNING id, recurring
		)
		UPDATE key_grants g SET days = $4, kind = CASE WHEN $4 = 0 THEN 'lifetime' ELSE 'days' END, updated_at = now()
		FROM replanned r WHERE g.order_key_id = r.id AND g.source = 'unit' AND NOT r.recurring`,
		sessionID, priceID, projectID, keyDays)
	if err != nil {
		return fmt.Errorf("re-planning keys of order %s: %w", sessionID, err)
	}
	return nil
}

// PricesToReplan lists the prices of an order's units to plan again from
// the catalog (see ReplanUnits).
func PricesToReplan(ctx context.Context, db DB, sessionID string) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT DISTINCT price_id FROM order_keys
		WHERE checkout_session_id = $1 AND replan AND status = 'pending' ORDER BY price_id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("listing prices of order %s: %w", sessionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// QueueUnits returns up to limit pending units of an order to run create
// jobs for: those already queued first (queueing them again is harmless:
// their jobs are unique), then the next unqueued ones, which it marks
// queued. Keeping only a few units of an order queued at a time, and
// queueing the next as each one finishes, makes the deliver queue serve
// orders round-robin: a one-unit order placed after a 500-unit order waits
// for a few of its units, not all of them. The caller holds the order's lock.
func QueueUnits(ctx context.Context, tx pgx.Tx, sessionID string, limit int) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		WITH picked AS (
			SELECT id FROM order_keys
			WHERE checkout_session_id = $1 AND status = 'pending'
			ORDER BY queued_at IS NULL, id
			LIMIT $2
		)
		UPDATE order_keys k SET queued_at = COALESCE(k.queued_at, now())
		FROM picked WHERE k.id = picked.id
		RETURNING k.id`, sessionID, limit)
	if err != nil {
		return nil, fmt.Errorf("queueing keys of order %s: %w", sessionID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("queueing keys of order %s: %w", sessionID, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// FailOrder marks an order failed with a stable code and a reason for the
// operator, at most logging.MaxReasonLength characters of it. A fulfilled
// or revoked order keeps its status.
func FailOrder(ctx context.Context, db DB, sessionID, code, reason string) error {
	reason = logging.Truncate(reason, logging.MaxReasonLength)
	_, err := db.Exec(ctx, `
		UPDATE orders SET status = 'failed', failure_code = $2, failure_reason = $3, updated_at = now()
		WHERE checkout_session_id = $1 AND status IN ('pending', 'failed')`, sessionID, code, reason)
	if err != nil {
		return fmt.Errorf("marking order %s failed: %w", sessionID, err)
	}
	return nil
}

// FailSubscriptionChange fails a subscription's order, fulfilled or
// pending, whose subscription moved to a price the service cannot make a
// key of (code unknown_price): the operator sees it among failed orders
// and retries it once the catalog is fixed. Revoked orders keep their
// status.
func FailSubscriptionChange(ctx context.Context, tx pgx.Tx, sessionID, code, reason string) error {
	reason = logging.Truncate(reason, logging.MaxReasonLength)
	_, err := tx.Exec(ctx, `UPDATE orders SET status = 'failed', failure_code = $2, failure_reason = $3, updated_at = now()
		WHERE checkout_session_id = $1 AND status IN ('pending', 'fulfilled')`, sessionID, code, reason)
	if err != nil {
		return fmt.Errorf("failing order %s: %w", sessionID, err)
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

// LeaseHeldError says another runner holds a unit's create lease until Until.
type LeaseHeldError struct{ Until time.Time }

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("another runner holds this unit until %s", e.Until.Format(time.RFC3339))
}

// ClaimCreate takes or renews the create lease of a unit for owner, for
// lease from now, and returns the unit. countAttempt records, in the same
// commit, that a create is about to be sent. It fails with *LeaseHeldError
// while another owner's lease runs, and returns the unit unchanged (no
// lease) once it is no longer pending.
//
// Invariant: a Luarmor request for a unit is sent only by the holder of a
// lease renewed just before the send, and a lease outlives the longest a
// request can take. So a runner that takes an expired lease knows every
// earlier request for the unit has ended, and its look-up by reference sees
// any key they created.
func ClaimCreate(ctx context.Context, db DB, id int64, owner string, lease time.Duration, countAttempt bool) (*order.Key, error) {
	k, err := scanKey(db.QueryRow(ctx, `
		UPDATE order_keys SET create_lease_owner = $2, create_lease_until = now() + $3::interval,
			create_attempts = create_attempts + CASE WHEN $4 THEN 1 ELSE 0 END, updated_at = now()
		WHERE id = $1 AND status = 'pending'
		  AND (create_lease_owner = $2 OR create_lease_until IS NULL OR create_lease_until <= now())
		RETURNING `+keyColumns, id, owner, lease, countAttempt))
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claiming order key %d: %w", id, err)
	}
	var until *time.Time
	k, err = scanKeyWith(db.QueryRow(ctx, `SELECT `+keyColumns+`, create_lease_until FROM order_keys WHERE id = $1`, id), &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no order key %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading order key %d: %w", id, err)
	}
	if k.Status != order.KeyPending {
		return k, nil
	}
	if until == nil { // released between the two statements: try again soon
		return nil, &LeaseHeldError{Until: time.Now()}
	}
	return nil, &LeaseHeldError{Until: *until}
}

// ReleaseCreate drops owner's lease on a unit whose request was never
// applied, so the next run need not wait it out; undoAttempt takes back the
// attempt it recorded (Luarmor refused it unapplied: a 429, or it was never
// sent), so the next run does not look up a key that cannot exist.
func ReleaseCreate(ctx context.Context, db DB, id int64, owner string, undoAttempt bool) error {
	_, err := db.Exec(ctx, `UPDATE order_keys SET create_lease_until = NULL, create_lease_owner = NULL,
			create_attempts = create_attempts - CASE WHEN $3 AND create_attempts > 0 THEN 1 ELSE 0 END
		WHERE id = $1 AND create_lease_owner = $2`, id, owner, undoAttempt)
	return err
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

// ErrDeliveredElsewhere says a unit already holds another key: a runner
// that was cut off created a second one, which the caller must remove.
var ErrDeliveredElsewhere = errors.New("the unit was already delivered with another key")

// DeliverKey records the Luarmor key of a unit and settles its order. A unit
// delivered before with the same key is left as it is; with another key,
// ErrDeliveredElsewhere.
func DeliverKey(ctx context.Context, tx pgx.Tx, id int64, userKey string, authExpire *int64, extendedExisting bool) error {
	sessionID, err := lockOrderOfKey(ctx, tx, id)
	if err != nil {
		return err
	}
	var existing string
	err = tx.QueryRow(ctx, `SELECT COALESCE(user_key, '') FROM order_keys WHERE id = $1 FOR UPDATE`, id).Scan(&existing)
	if err != nil {
		return fmt.Errorf("reading order key %d: %w", id, err)
	}
	switch existing {
	case userKey:
		return nil
	case "":
	default:
		return ErrDeliveredElsewhere
	}
	_, err = tx.Exec(ctx, `UPDATE order_keys SET user_key = $2, auth_expire = $3, status = 'active', last_error = NULL,
			extended_existing = $4, delivered_at = now(), updated_at = now(),
			create_lease_until = NULL, create_lease_owner = NULL
		WHERE id = $1`, id, userKey, authExpire, extendedExisting)
	if err != nil {
		return fmt.Errorf("recording key of order key %d: %w", id, err)
	}
	return settleOrder(ctx, tx, sessionID)
}

// FailKey records that Luarmor refused a unit for good, and fails its order.
// replan says Luarmor refused the unit's project: the unit, and the order's
// other undelivered units of that project (their creates would be refused
// alike, or were never sent once the order failed), are marked to be
// planned again from the catalog by the operator's retry (ReplanUnits). Any
// other unit is retried with the project and key_days it was sold with.
func FailKey(ctx context.Context, tx pgx.Tx, id int64, reason string, replan bool) error {
	reason = logging.Truncate(reason, logging.MaxReasonLength) // Luarmor's answer: hostile input
	sessionID, err := lockOrderOfKey(ctx, tx, id)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2, updated_at = now(),
		create_lease_until = NULL, create_lease_owner = NULL WHERE id = $1 AND status = 'pending'`, id, reason)
	if err != nil {
		return fmt.Errorf("recording failure of order key %d: %w", id, err)
	}
	if replan {
		_, err = tx.Exec(ctx, `UPDATE order_keys k SET replan = true, updated_at = now()
			FROM order_keys refused
			WHERE refused.id = $1 AND k.checkout_session_id = refused.checkout_session_id
			  AND k.project_id = refused.project_id AND k.user_key IS NULL`, id)
		if err != nil {
			return fmt.Errorf("marking the units of order key %d's project to plan again: %w", id, err)
		}
	}
	return FailOrder(ctx, tx, sessionID, order.FailureLuarmorRefused, reason)
}

// NoteKeyError records the latest transient error of a unit for operators.
func NoteKeyError(ctx context.Context, db DB, id int64, reason string) error {
	reason = logging.Truncate(reason, logging.MaxReasonLength)
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
	// A unit whose create is on its way now was planned from the catalog
	// before the fix: resetting around it would let its answer fail the
	// order again after this retry. It settles within its lease.
	var inFlight int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM order_keys
		WHERE checkout_session_id = $1 AND status = 'pending' AND create_lease_until > now()`, sessionID).Scan(&inFlight)
	if err != nil {
		return fmt.Errorf("checking keys of order %s: %w", sessionID, err)
	}
	if inFlight > 0 {
		return order.Errorf(order.ECONFLICT, "order %s still has %d key(s) being created from the old plan: retry in a few seconds, once they have settled", sessionID, inFlight)
	}
	// Luarmor refused these units' last create, after a look-up found no
	// key of an earlier one: none exists, so they start over, with the
	// terms they were sold with, or (marked replan: refused for their
	// project) planned again from the current catalog.
	_, err = tx.Exec(ctx, `UPDATE order_keys SET status = 'pending', create_attempts = 0, queued_at = NULL,
			create_lease_until = NULL, create_lease_owner = NULL, updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'failed'`, sessionID)
	if err != nil {
		return fmt.Errorf("resetting keys of order %s: %w", sessionID, err)
	}
	return nil
}

// ShortenCreateLease ends owner's lease on a unit within d: its last request
// was answered (with an error) or its connection dropped, so Luarmor is
// done with it and the retry need not wait the whole lease.
func ShortenCreateLease(ctx context.Context, db DB, id int64, owner string, d time.Duration) error {
	_, err := db.Exec(ctx, `UPDATE order_keys SET create_lease_until = LEAST(create_lease_until, now() + $3::interval)
		WHERE id = $1 AND create_lease_owner = $2`, id, owner, d)
	return err
}
