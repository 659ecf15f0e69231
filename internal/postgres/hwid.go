package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// hwidResetColumns are read from hwid_resets under the alias h.
const hwidResetColumns = `h.request, h.status, h.requested_at, h.next_reset_at, h.last_reset_at, h.resets, COALESCE(h.message, '')`

func scanHWIDReset(row pgx.Row, extra ...any) (order.HWIDReset, error) {
	var r order.HWIDReset
	dest := append([]any{&r.Request, &r.Status, &r.RequestedAt, &r.NextResetAt, &r.LastResetAt, &r.Resets, &r.Message}, extra...)
	err := row.Scan(dest...)
	return r, err
}

// KeyOfOrder returns the delivered key userKey of the order, or ENOTFOUND
// when the order is unknown or the key is not one of its keys: the two are
// answered alike, so a caller learns nothing about other orders' keys.
func KeyOfOrder(ctx context.Context, db DB, sessionID, userKey string) (*order.Key, error) {
	k, err := scanKey(db.QueryRow(ctx, "SELECT "+keyColumns+` FROM order_keys
		WHERE checkout_session_id = $1 AND user_key = $2`, sessionID, userKey))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no such key in this order")
	}
	if err != nil {
		return nil, fmt.Errorf("reading a key of an order: %w", err)
	}
	return k, nil
}

// ReserveHWIDReset accepts a new HWID reset of the key at now when its
// cooldown has passed, and starts the next one (until now+cooldown). The
// check and the reservation are one statement: of concurrent requests for a
// key, on any replica, exactly one is accepted (a second one waits for the
// first's commit and then sees its cooldown). accepted is false when the
// key is within its cooldown; r is then the reset that holds it.
func ReserveHWIDReset(ctx context.Context, tx pgx.Tx, keyID int64, now time.Time, cooldown time.Duration) (r order.HWIDReset, accepted bool, err error) {
	r, err = scanHWIDReset(tx.QueryRow(ctx, `
		INSERT INTO hwid_resets AS h (order_key_id, request, status, requested_at, next_reset_at)
		VALUES ($1, 1, 'queued', $2, $3)
		ON CONFLICT (order_key_id) DO UPDATE
		SET request = h.request + 1, status = 'queued', requested_at = $2, next_reset_at = $3, message = NULL
		WHERE h.next_reset_at IS NULL OR h.next_reset_at <= $2
		RETURNING `+hwidResetColumns, keyID, now, now.Add(cooldown)))
	if err == nil {
		return r, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return r, false, fmt.Errorf("reserving an HWID reset of order key %d: %w", keyID, err)
	}
	r, err = HWIDResetOf(ctx, tx, keyID)
	return r, false, err
}

// LockKeyResets serialises the HWID reset requests of one Luarmor key for
// the rest of tx, and returns the latest reset of another row of that key
// (a key extended by later orders has a row per order) that still holds a
// cooldown at now, if any: the cooldown is the key's, not the row's.
func LockKeyResets(ctx context.Context, tx pgx.Tx, k *order.Key, now time.Time) (holder order.HWIDReset, held bool, err error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 7703))`, k.ProjectID, k.UserKey); err != nil {
		return holder, false, fmt.Errorf("locking the HWID resets of order key %d: %w", k.ID, err)
	}
	holder, err = scanHWIDReset(tx.QueryRow(ctx, "SELECT "+hwidResetColumns+` FROM hwid_resets h
		JOIN order_keys k ON k.id = h.order_key_id
		WHERE k.project_id = $1 AND k.user_key = $2 AND k.id <> $3 AND h.next_reset_at > $4
		ORDER BY h.next_reset_at DESC LIMIT 1`, k.ProjectID, k.UserKey, k.ID, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return holder, false, nil
	}
	if err != nil {
		return holder, false, fmt.Errorf("reading the HWID resets of order key %d's other rows: %w", k.ID, err)
	}
	return holder, true, nil
}

// HWIDResetOf returns the key's latest HWID reset; the zero value if none.
func HWIDResetOf(ctx context.Context, db DB, keyID int64) (order.HWIDReset, error) {
	r, err := scanHWIDReset(db.QueryRow(ctx, "SELECT "+hwidResetColumns+" FROM hwid_resets h WHERE h.order_key_id = $1", keyID))
	if errors.Is(err, pgx.ErrNoRows) {
		return order.HWIDReset{}, nil
	}
	if err != nil {
		return r, fmt.Errorf("reading the HWID reset of order key %d: %w", keyID, err)
	}
	return r, nil
}

// FinishHWIDReset records that Luarmor applied request at; done reports
// whether this call recorded it (false: it was recorded already, or a newer
// request replaced it), so a reset is counted once however often its job runs.
func FinishHWIDReset(ctx context.Context, tx pgx.Tx, keyID int64, request int, at time.Time) (done bool, err error) {
	tag, err := tx.Exec(ctx, `
		UPDATE hwid_resets SET status = 'done', last_reset_at = $3, resets = resets + 1
		WHERE order_key_id = $1 AND request = $2 AND status = 'queued'`, keyID, request, at)
	if err != nil {
		return false, fmt.Errorf("recording the HWID reset of order key %d: %w", keyID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FailedResetPause is the longest a refused HWID reset holds the key's
// cooldown: short, so the buyer may ask again soon after the seller fixed
// the cause, but not nothing, or a key whose resets Luarmor refuses would
// cost a Luarmor call at every request.
const FailedResetPause = 10 * time.Minute

// FailHWIDReset records that request will never be applied, with the
// buyer-readable reason, and gives most of its cooldown back: the next
// reset is allowed FailedResetPause after now (sooner if the cooldown
// itself is shorter).
func FailHWIDReset(ctx context.Context, db DB, keyID int64, request int, message string, now time.Time) error {
	_, err := db.Exec(ctx, `
		UPDATE hwid_resets SET status = 'failed', message = $3,
			next_reset_at = LEAST(next_reset_at, $4::timestamptz + LEAST(next_reset_at - requested_at, $5::interval))
		WHERE order_key_id = $1 AND request = $2 AND status = 'queued'`, keyID, request, message, now, FailedResetPause)
	if err != nil {
		return fmt.Errorf("recording the failed HWID reset of order key %d: %w", keyID, err)
	}
	return nil
}

// RefuseHWIDReset records that request was refused before anything was
// done, with the buyer-readable reason, and gives its whole cooldown back:
// the next reset is allowed at once. It is for a refusal the buyer did
// not spend anything on, such as a key never bound to a machine.
func RefuseHWIDReset(ctx context.Context, db DB, keyID int64, request int, message string, now time.Time) error {
	_, err := db.Exec(ctx, `
		UPDATE hwid_resets SET status = 'failed', message = $3, next_reset_at = LEAST(next_reset_at, $4::timestamptz)
		WHERE order_key_id = $1 AND request = $2 AND status = 'queued'`, keyID, request, message, now)
	if err != nil {
		return fmt.Errorf("recording the refused HWID reset of order key %d: %w", keyID, err)
	}
	return nil
}

// attachHWIDResets fills the HWIDReset of each key of the orders, in one
// query however many orders there are.
func attachHWIDResets(ctx context.Context, db DB, orders ...*order.Order) error {
	var keyIDs []int64
	for _, o := range orders {
		for _, k := range o.Keys {
			keyIDs = append(keyIDs, k.ID)
		}
	}
	if len(keyIDs) == 0 {
		return nil
	}
	rows, err := db.Query(ctx, "SELECT "+hwidResetColumns+", h.order_key_id FROM hwid_resets h WHERE h.order_key_id = ANY($1)", keyIDs)
	if err != nil {
		return fmt.Errorf("reading the HWID resets of %d keys: %w", len(keyIDs), err)
	}
	return readHWIDResets(rows, orders...)
}

// readHWIDResets fills the HWIDReset of each key of the orders from rows
// of hwidResetColumns and h.order_key_id, and closes them.
func readHWIDResets(rows pgx.Rows, orders ...*order.Order) error {
	defer rows.Close()
	byKey := make(map[int64]order.HWIDReset)
	for rows.Next() {
		var keyID int64
		r, err := scanHWIDReset(rows, &keyID)
		if err != nil {
			return fmt.Errorf("reading the HWID resets of the keys: %w", err)
		}
		byKey[keyID] = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the HWID resets of the keys: %w", err)
	}
	for _, o := range orders {
		for i := range o.Keys {
			o.Keys[i].HWIDReset = byKey[o.Keys[i].ID]
		}
	}
	return nil
}
