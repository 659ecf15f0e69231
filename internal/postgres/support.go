package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// sessionOfRefSQL finds orders by reference through order_ref (migration
// 0042), logging.OrderRef computed by PostgreSQL and indexed.
var sessionOfRefSQL = lookup("SessionOfRef", `SELECT checkout_session_id FROM orders WHERE order_ref(checkout_session_id) = $1 LIMIT 2`)

// SessionOfRef returns the Checkout Session ID of the order whose log
// reference (ord_...) is ref.
func SessionOfRef(ctx context.Context, db DB, ref string) (string, error) {
	rows, err := db.Query(ctx, sessionOfRefSQL, ref)
	if err != nil {
		return "", fmt.Errorf("finding the order of reference %s: %w", ref, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("finding the order of reference %s: %w", ref, err)
	}
	switch len(ids) {
	case 0:
		return "", order.Errorf(order.ENOTFOUND, "no order with reference %s", ref)
	case 1:
		return ids[0], nil
	}
	return "", order.Errorf(order.ECONFLICT, "reference %s matches several orders; give the Checkout Session ID", ref)
}

var ownKeyOfSQL = lookup("OwnKeyOf", "SELECT "+keyColumns+` FROM order_keys
		WHERE user_key = $1 AND NOT extended_existing ORDER BY id LIMIT 2`)

// OwnKeyOf returns the unit a delivered key was created for: the row of
// the key itself, not of a later purchase that only extended it.
func OwnKeyOf(ctx context.Context, db DB, userKey string) (*order.Key, error) {
	rows, err := db.Query(ctx, ownKeyOfSQL, userKey)
	if err != nil {
		return nil, fmt.Errorf("finding a key: %w", err)
	}
	keys, err := collectKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("finding a key: %w", err)
	}
	switch len(keys) {
	case 0:
		return nil, order.Errorf(order.ENOTFOUND, "no order holds this key")
	case 1:
		return &keys[0], nil
	}
	return nil, order.Errorf(order.ECONFLICT, "this key is recorded for several units (different projects); revoke it in the Luarmor dashboard")
}

var ordersOfDiscordIDSQL = lookup("OrdersOfDiscordID", newestOrdersWhere(`discord_id = $1 AND discord_id <> ''`))

// OrdersOfDiscordID returns the newest orders (at most limit) bought with
// the Discord ID, each with its keys.
func OrdersOfDiscordID(ctx context.Context, db DB, discordID string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, ordersOfDiscordIDSQL, discordID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of a Discord ID: %w", err)
	}
	return orders, nil
}

var ordersOfKeySQL = lookup("OrdersOfKey",
	newestOrdersWhere(`checkout_session_id IN (SELECT checkout_session_id FROM order_keys WHERE user_key = $1)`))

// OrdersOfKey returns the orders holding a key (its own, and any purchase
// that extended it), newest first, each with its keys.
func OrdersOfKey(ctx context.Context, db DB, userKey string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, ordersOfKeySQL, userKey, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of a key: %w", err)
	}
	return orders, nil
}

// EventSummary is one recorded Stripe event about an order.
type EventSummary struct {
	ID         string
	Type       string
	ObjectID   string
	CreatedAt  time.Time
	ReceivedAt time.Time
}

// EventsOfOrder lists the recorded Stripe events about an order's session,
// payment, subscription or first invoice, oldest first.
func EventsOfOrder(ctx context.Context, db DB, o *order.Order) ([]EventSummary, error) {
	objects := []string{o.CheckoutSessionID}
	for _, id := range []string{o.PaymentIntentID, o.SubscriptionID, o.InvoiceID} {
		if id != "" {
			objects = append(objects, id)
		}
	}
	rows, err := db.Query(ctx, eventsAboutSQL, objects)
	if err != nil {
		return nil, fmt.Errorf("listing the events of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (EventSummary, error) {
		var e EventSummary
		err := row.Scan(&e.ID, &e.Type, &e.ObjectID, &e.CreatedAt, &e.ReceivedAt)
		return e, err
	})
}

// EmailSummary is one keys email of an order.
type EmailSummary struct {
	Delivery  int
	Status    string
	Attempts  int
	LastError string
	CreatedAt time.Time
	SentAt    *time.Time
}

var emailsOfOrderSQL = lookup("EmailsOfOrder", `SELECT delivery, status, attempts, COALESCE(last_error, ''), created_at, sent_at
		FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1) ORDER BY delivery`)

// EmailsOfOrder lists an order's keys emails, first delivery first.
func EmailsOfOrder(ctx context.Context, db DB, sessionID string) ([]EmailSummary, error) {
	rows, err := db.Query(ctx, emailsOfOrderSQL, sessionID)
	if err != nil {
		return nil, fmt.Errorf("listing the emails of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (EmailSummary, error) {
		var e EmailSummary
		err := row.Scan(&e.Delivery, &e.Status, &e.Attempts, &e.LastError, &e.CreatedAt, &e.SentAt)
		return e, err
	})
}

var revocationsOfOrderSQL = lookup("RevocationsOfOrder", `SELECT id, source, source_id, COALESCE(charge_id, ''),
			COALESCE(payment_intent_id, ''), COALESCE(subscription_id, ''), action, reason, status, resolved_at IS NOT NULL, inquiry
		FROM revocations
		WHERE id = $1 OR (payment_intent_id <> '' AND payment_intent_id = $2) OR (subscription_id <> '' AND subscription_id = $3)
		ORDER BY id`)

// RevocationsOfOrder lists the revocations (disputes, refunds, fraud
// warnings) of an order's payment or subscription, oldest first.
func RevocationsOfOrder(ctx context.Context, db DB, o *order.Order) ([]order.Revocation, error) {
	rows, err := db.Query(ctx, revocationsOfOrderSQL, o.RevocationID, o.PaymentIntentID, o.SubscriptionID)
	if err != nil {
		return nil, fmt.Errorf("listing the revocations of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.Revocation, error) {
		var r order.Revocation
		err := row.Scan(&r.ID, &r.Source, &r.SourceID, &r.ChargeID, &r.PaymentIntentID, &r.SubscriptionID,
			&r.Action, &r.Reason, &r.Status, &r.Resolved, &r.Inquiry)
		return r, err
	})
}

// ForceHWIDReset accepts an operator's HWID reset of a key whatever its
// cooldown: the key's next request number, queued, with the cooldown
// restarted from now as for a buyer's reset (the reset is recorded like
// any other). The caller queues the reset_hwid job in the same tx.
func ForceHWIDReset(ctx context.Context, tx pgx.Tx, keyID int64, now time.Time, cooldown time.Duration) (order.HWIDReset, error) {
	r, err := scanHWIDReset(tx.QueryRow(ctx, `
		INSERT INTO hwid_resets AS h (order_key_id, request, status, requested_at, next_reset_at)
		VALUES ($1, 1, 'queued', $2, $3)
		ON CONFLICT (order_key_id) DO UPDATE SET request = h.request + 1, status = 'queued', requested_at = $2,
			next_reset_at = $3, message = NULL
		RETURNING `+hwidResetColumns, keyID, now, now.Add(cooldown)))
	if err != nil {
		return order.HWIDReset{}, fmt.Errorf("recording the HWID reset of order key %d: %w", keyID, err)
	}
	return r, nil
}

// Reissue is a key replaced by a new one for the same unit.
type Reissue struct {
	ID          int64
	OldKeyID    int64
	NewKeyID    int64
	RequestedBy string
	Reason      string
	Status      string // queued, done, failed
	Message     string
	CreatedAt   time.Time
	// DiscordID is the Discord ID the old key held, moved to the new key:
	// nil until read, "" for none.
	DiscordID *string
	// OwesLinkEmail: the order's access was rotated with the reissue, and
	// the fresh link is emailed once the reissue is finished.
	OwesLinkEmail bool
}

const reissueColumns = `id, old_key_id, new_key_id, requested_by, reason, status, COALESCE(message, ''), created_at, discord_id,
	owes_link_email`

func scanReissue(row pgx.Row) (*Reissue, error) {
	var r Reissue
	err := row.Scan(&r.ID, &r.OldKeyID, &r.NewKeyID, &r.RequestedBy, &r.Reason, &r.Status, &r.Message, &r.CreatedAt, &r.DiscordID,
		&r.OwesLinkEmail)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ReissueOf returns the reissue of a key, or nil when it was never reissued.
func ReissueOf(ctx context.Context, db DB, oldKeyID int64) (*Reissue, error) {
	r, err := scanReissue(db.QueryRow(ctx, "SELECT "+reissueColumns+" FROM key_reissues WHERE old_key_id = $1", oldKeyID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the reissue of order key %d: %w", oldKeyID, err)
	}
	return r, nil
}

// GetReissue returns a reissue by its ID.
func GetReissue(ctx context.Context, db DB, id int64) (*Reissue, error) {
	r, err := scanReissue(db.QueryRow(ctx, "SELECT "+reissueColumns+" FROM key_reissues WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no reissue %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading reissue %d: %w", id, err)
	}
	return r, nil
}

var reissuesOfOrderSQL = lookup("ReissuesOfOrder", "SELECT "+reissueColumns+` FROM key_reissues
		WHERE old_key_id IN (SELECT id FROM order_keys WHERE checkout_session_id = $1) ORDER BY id`)

// ReissuesOfOrder lists the reissues of an order's keys, oldest first.
func ReissuesOfOrder(ctx context.Context, db DB, sessionID string) ([]Reissue, error) {
	rows, err := db.Query(ctx, reissuesOfOrderSQL, sessionID)
	if err != nil {
		return nil, fmt.Errorf("listing the reissues of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reissue, error) {
		r, err := scanReissue(row)
		if err != nil {
			return Reissue{}, err
		}
		return *r, nil
	})
}

// RecordReissue adds the unit that replaces old (same line item, price,
// project and key_days, numbered after the item's units, with its own
// reference; expiring at expireTarget when set) and the reissue row, and
// reopens the order until the new key is delivered. The caller holds the
// order's lock and checked that old was never reissued.
func RecordReissue(ctx context.Context, tx pgx.Tx, old *order.Key, expireTarget *int64, requestedBy, reason string) (*Reissue, error) {
	var newID int64
	err := tx.QueryRow(ctx, `
		INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference,
		                        recurring, expire_target, ending)
		SELECT $1, $2, base.n + 1, $3, $4, $5, 'fk_' || left(replace(gen_random_uuid()::text, '-', ''), 20), $6, $7, $8
		FROM (SELECT max(unit) AS n FROM order_keys WHERE checkout_session_id = $1 AND line_item_id = $2) base
		RETURNING id`,
		old.CheckoutSessionID, old.LineItemID, old.PriceID, old.ProjectID, old.KeyDays, old.Recurring, expireTarget, old.Ending).Scan(&newID)
	if err != nil {
		return nil, fmt.Errorf("adding the replacement of order key %d: %w", old.ID, err)
	}
	// The new key holds what the old one was paid for: the same grants.
	_, err = tx.Exec(ctx, `INSERT INTO key_grants (order_key_id, source, kind, days, valid_from, valid_to, line, state,
			reason, action, revocation_id)
		SELECT $2, source, kind, days, valid_from, valid_to, line, state, reason, action, revocation_id
		FROM key_grants WHERE order_key_id = $1
		ON CONFLICT (order_key_id, source) DO NOTHING`, old.ID, newID)
	if err != nil {
		return nil, fmt.Errorf("moving the grants of order key %d to its replacement: %w", old.ID, err)
	}
	_, err = tx.Exec(ctx, `UPDATE orders SET status = 'pending', updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'fulfilled'`, old.CheckoutSessionID)
	if err != nil {
		return nil, fmt.Errorf("reopening the order of order key %d: %w", old.ID, err)
	}
	r, err := scanReissue(tx.QueryRow(ctx, `INSERT INTO key_reissues (old_key_id, new_key_id, requested_by, reason)
		VALUES ($1, $2, $3, $4) RETURNING `+reissueColumns, old.ID, newID, requestedBy, reason))
	if err != nil {
		return nil, fmt.Errorf("recording the reissue of order key %d: %w", old.ID, err)
	}
	return r, nil
}

// RecordReissueDiscord records, once, the Discord ID a reissue's old key
// held ("" for none) and returns the one recorded: a repeat after a crash
// moves what the first read found, even if the old key has lost it since.
func RecordReissueDiscord(ctx context.Context, db DB, id int64, discordID string) (string, error) {
	var recorded string
	err := db.QueryRow(ctx, `UPDATE key_reissues SET discord_id = COALESCE(discord_id, $2) WHERE id = $1 RETURNING discord_id`,
		id, discordID).Scan(&recorded)
	if err != nil {
		return "", fmt.Errorf("recording the Discord ID of reissue %d: %w", id, err)
	}
	return recorded, nil
}

// FinishReissue records a reissue done or failed (with message); a
// finished reissue is left as it is.
func FinishReissue(ctx context.Context, db DB, id int64, status, message string) error {
	_, err := db.Exec(ctx, `UPDATE key_reissues SET status = $2, message = NULLIF($3, ''), finished_at = now()
		WHERE id = $1 AND status = 'queued'`, id, status, message)
	if err != nil {
		return fmt.Errorf("recording reissue %d %s: %w", id, status, err)
	}
	return nil
}

// PlanReissuedUnit sets the expiry the replacement unit of a reissue is
// created with (nil: its key_days) and marks it queued, unless an earlier
// run did: it reports whether this call planned it. The caller queues its
// create_key job in the same tx.
func PlanReissuedUnit(ctx context.Context, tx pgx.Tx, id int64, expireTarget *int64) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE order_keys SET expire_target = COALESCE($2, expire_target), queued_at = now(), updated_at = now()
		WHERE id = $1 AND queued_at IS NULL AND status = 'pending'`, id, expireTarget)
	if err != nil {
		return false, fmt.Errorf("planning the replacement unit %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// UnitQueued reports whether a unit's create_key job was queued.
func UnitQueued(ctx context.Context, db DB, id int64) (bool, error) {
	var queued bool
	err := db.QueryRow(ctx, `SELECT queued_at IS NOT NULL FROM order_keys WHERE id = $1`, id).Scan(&queued)
	if err != nil {
		return false, fmt.Errorf("reading unit %d: %w", id, err)
	}
	return queued, nil
}
