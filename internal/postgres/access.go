package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// RotateOrderAccess revokes the access of the order's Checkout Session ID
// and moves its link generation on, so every link signed before stops
// granting it; it returns the new generation. The caller holds the order's
// lock. The row's update wakes the requests waiting on the order, which
// then find their access gone.
func RotateOrderAccess(ctx context.Context, tx pgx.Tx, sessionID string) (int64, error) {
	var generation int64
	err := tx.QueryRow(ctx, `UPDATE orders SET access_generation = access_generation + 1,
			session_access_revoked_at = COALESCE(session_access_revoked_at, now()), updated_at = now()
		WHERE checkout_session_id = $1 RETURNING access_generation`, sessionID).Scan(&generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, order.Errorf(order.ENOTFOUND, "no order %s", logging.OrderRef(sessionID))
	}
	if err != nil {
		return 0, fmt.Errorf("rotating the access of order %s: %w", logging.OrderRef(sessionID), err)
	}
	return generation, nil
}

// OweLinkEmail records that the reissue's order had its access rotated
// with it: the fresh link is emailed when the reissue finishes.
func OweLinkEmail(ctx context.Context, tx pgx.Tx, reissueID int64) error {
	if _, err := tx.Exec(ctx, `UPDATE key_reissues SET owes_link_email = true WHERE id = $1`, reissueID); err != nil {
		return fmt.Errorf("recording the link email owed by reissue %d: %w", reissueID, err)
	}
	return nil
}

// TakeLinkEmail clears the link email a reissue owes and reports whether it
// owed one: the caller queues it in the same transaction, so it is queued
// once however often the reissue's job runs.
func TakeLinkEmail(ctx context.Context, tx pgx.Tx, reissueID int64) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE key_reissues SET owes_link_email = false WHERE id = $1 AND owes_link_email`, reissueID)
	if err != nil {
		return false, fmt.Errorf("reading the link email owed by reissue %d: %w", reissueID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// NextOrderEmail records the next delivery of an order's keys email, with
// its Message-ID, and returns its number; the caller queues its job in the
// same transaction.
func NextOrderEmail(ctx context.Context, tx pgx.Tx, sessionID, messageID string) (int, error) {
	var delivery int
	err := tx.QueryRow(ctx, `
		WITH o AS (SELECT id FROM orders WHERE checkout_session_id = $1)
		INSERT INTO order_emails (order_id, delivery, message_id)
		SELECT o.id, COALESCE((SELECT MAX(delivery) FROM order_emails e WHERE e.order_id = o.id), 0) + 1, $2 FROM o
		RETURNING delivery`, sessionID, messageID).Scan(&delivery)
	if err != nil {
		return 0, fmt.Errorf("recording a new keys email of order %s: %w", logging.OrderRef(sessionID), err)
	}
	return delivery, nil
}
