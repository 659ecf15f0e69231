package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// SessionIDOfOrder returns the Checkout Session ID of order number id, or
// an order.ENOTFOUND error. Jobs name orders by number (it grants nothing)
// and find the session, which Stripe's API and the order's rows are keyed
// by, here.
func SessionIDOfOrder(ctx context.Context, db DB, id int64) (string, error) {
	var sessionID string
	err := db.QueryRow(ctx, `SELECT checkout_session_id FROM orders WHERE id = $1`, id).Scan(&sessionID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", order.Errorf(order.ENOTFOUND, "no order number %d", id)
	}
	if err != nil {
		return "", fmt.Errorf("reading order number %d: %w", id, err)
	}
	return sessionID, nil
}

// NumberOfOrder returns the number of the order of a Checkout Session, or
// an order.ENOTFOUND error.
func NumberOfOrder(ctx context.Context, db DB, sessionID string) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, `SELECT id FROM orders WHERE checkout_session_id = $1`, sessionID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, order.Errorf(order.ENOTFOUND, "no order for checkout session %s", sessionID)
	}
	if err != nil {
		return 0, fmt.Errorf("reading the number of order %s: %w", sessionID, err)
	}
	return id, nil
}
