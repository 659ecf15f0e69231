package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// SetDiscordLink records what became of the buyer's Discord ID on a unit
// still to be created. in_use and invalid are recorded before the create
// that leaves the ID out, so a retry never sends the ID again.
func SetDiscordLink(ctx context.Context, db DB, id int64, link order.DiscordLink) error {
	_, err := db.Exec(ctx, `UPDATE order_keys SET discord_link = $2, updated_at = now()
		WHERE id = $1 AND status = 'pending'`, id, link)
	if err != nil {
		return fmt.Errorf("recording the Discord link of order key %d: %w", id, err)
	}
	return nil
}

// KeyMadeForCustomer reports whether the Luarmor key userKey of a project
// was delivered by this service, under reference, for an order of
// customerID. An empty customer ID never matches: a Discord ID typed at
// checkout proves nothing, only the Stripe customer does.
func KeyMadeForCustomer(ctx context.Context, db DB, reference, projectID, userKey, customerID string) (bool, error) {
	if reference == "" || customerID == "" {
		return false, nil
	}
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE k.reference = $1 AND k.project_id = $2 AND k.user_key = $3 AND o.customer_id = $4)`,
		reference, projectID, userKey, customerID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking who key reference %s was made for: %w", reference, err)
	}
	return ok, nil
}

// SetExtension stores, once, the expiry that extending an existing key
// sets and the key's expiry without the purchase, and returns the stored
// pair: a retry sends the same absolute value, and a revocation knows what
// the key had before.
func SetExtension(ctx context.Context, db DB, keyID int64, target, from int64) (storedTarget, storedFrom int64, err error) {
	var fromCol *int64
	err = db.QueryRow(ctx, `UPDATE order_keys SET extend_target = COALESCE(extend_target, $2),
			extend_from = CASE WHEN extend_target IS NULL THEN $3 ELSE extend_from END, updated_at = now()
		WHERE id = $1 RETURNING extend_target, extend_from`, keyID, target, from).Scan(&storedTarget, &fromCol)
	if err != nil {
		return 0, 0, fmt.Errorf("recording extension of key %d: %w", keyID, err)
	}
	storedFrom = from
	if fromCol != nil {
		storedFrom = *fromCol
	}
	return storedTarget, storedFrom, nil
}

// RenewedExpiry returns the latest expiry renewals set on a Luarmor key
// through units other than exceptID (0 if none): time the customer paid
// for by other payments, which taking back one purchase never removes.
func RenewedExpiry(ctx context.Context, db DB, projectID, userKey string, exceptID int64) (int64, error) {
	var expire int64
	err := db.QueryRow(ctx, `SELECT COALESCE(max(r.applied_expire), 0) FROM key_renewals r
		JOIN order_keys k ON k.id = r.order_key_id
		WHERE k.project_id = $1 AND k.user_key = $2 AND k.id <> $3 AND r.changed`,
		projectID, userKey, exceptID).Scan(&expire)
	if err != nil {
		return 0, fmt.Errorf("reading renewals of a key: %w", err)
	}
	return expire, nil
}

// KeyHeldByOthers reports whether another unit than exceptID still holds
// the Luarmor key userKey of a project for a payment that stands: the unit
// is active (not banned, deleted or reverted) and its order is not revoked.
// Such a unit paid for time on the key, so revoking one purchase of a
// shared key takes back only that purchase's days.
func KeyHeldByOthers(ctx context.Context, db DB, projectID, userKey string, exceptID int64) (bool, error) {
	var held bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE k.project_id = $1 AND k.user_key = $2 AND k.id <> $3
			AND k.status = 'active' AND o.status <> 'revoked')`,
		projectID, userKey, exceptID).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("checking which payments still hold a key: %w", err)
	}
	return held, nil
}

// SetRevertTarget stores, once, the expiry a revocation sets on a key other
// payments still hold, and returns the stored value.
func SetRevertTarget(ctx context.Context, db DB, keyID int64, target int64) (int64, error) {
	var stored int64
	err := db.QueryRow(ctx, `UPDATE order_keys SET revert_target = COALESCE(revert_target, $2), updated_at = now()
		WHERE id = $1 RETURNING revert_target`, keyID, target).Scan(&stored)
	if err != nil {
		return 0, fmt.Errorf("recording the revert of key %d: %w", keyID, err)
	}
	return stored, nil
}

// ForgetRevertTargets drops the revert targets of an order's units still
// active, once no revocation holds the order: a revert decided but never
// sent belongs to the revocation that was lifted, and a later revocation
// computes its own from the key as it is then, keeping days added since.
func ForgetRevertTargets(ctx context.Context, tx pgx.Tx, sessionID string) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET revert_target = NULL, updated_at = now()
		WHERE checkout_session_id = $1 AND status = 'active' AND revert_target IS NOT NULL`, sessionID)
	if err != nil {
		return fmt.Errorf("forgetting the revert targets of order %s: %w", sessionID, err)
	}
	return nil
}

// RevertExtension records that a revocation took back a unit's days from a
// key other payments still hold, and the key's expiry afterwards.
func RevertExtension(ctx context.Context, tx pgx.Tx, keyID int64, authExpire int64) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET status = 'reverted', auth_expire = $2, updated_at = now()
		WHERE id = $1`, keyID, authExpire)
	if err != nil {
		return fmt.Errorf("recording the revert of key %d: %w", keyID, err)
	}
	return nil
}

// LinkDiscord records, in the delivery's transaction, that a unit's key
// carries the buyer's Discord ID.
func LinkDiscord(ctx context.Context, tx pgx.Tx, keyID int64) error {
	_, err := tx.Exec(ctx, `UPDATE order_keys SET discord_link = 'linked' WHERE id = $1`, keyID)
	if err != nil {
		return fmt.Errorf("recording the Discord link of order key %d: %w", keyID, err)
	}
	return nil
}
