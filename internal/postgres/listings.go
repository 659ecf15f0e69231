package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// OrdersOfEmail returns the newest orders (at most limit) whose buyer's
// address is email, compared case-insensitively, each with its keys.
// email must already be lower case.
func OrdersOfEmail(ctx context.Context, db DB, email string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, `lower(customer_email) = $1 AND customer_email <> ''`, email, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of an email address: %w", err)
	}
	return orders, nil
}

// HasOrdersOfEmail reports whether any order was bought with email (lower
// case).
func HasOrdersOfEmail(ctx context.Context, db DB, email string) (bool, error) {
	var found bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE lower(customer_email) = $1 AND customer_email <> '')`,
		email).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("looking for the orders of an email address: %w", err)
	}
	return found, nil
}

// OrdersOfCustomer returns the newest orders (at most limit) of a Stripe
// customer, each with its keys.
func OrdersOfCustomer(ctx context.Context, db DB, customerID string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, `customer_id = $1 AND customer_id <> ''`, customerID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of customer %s: %w", customerID, err)
	}
	return orders, nil
}

// ordersWithKeys reads the newest orders matching where (one parameter,
// $1) and their keys, in two statements whatever the number of orders.
func ordersWithKeys(ctx context.Context, db DB, where, arg string, limit int) ([]*order.Order, error) {
	rows, err := db.Query(ctx, "SELECT "+orderColumns+" FROM orders WHERE "+where+
		" ORDER BY created_at DESC, checkout_session_id LIMIT $2", arg, limit)
	if err != nil {
		return nil, err
	}
	var orders []*order.Order
	byID := map[string]*order.Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		orders = append(orders, o)
		byID[o.CheckoutSessionID] = o
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(orders))
	for _, o := range orders {
		ids = append(ids, o.CheckoutSessionID)
	}
	keyRows, err := db.Query(ctx, "SELECT "+keyColumns+" FROM order_keys WHERE checkout_session_id = ANY($1) ORDER BY id", ids)
	if err != nil {
		return nil, err
	}
	keys, err := collectKeys(keyRows)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		o := byID[k.CheckoutSessionID]
		o.Keys = append(o.Keys, k)
	}
	if err := attachHWIDResets(ctx, db, orders...); err != nil {
		return nil, err
	}
	return orders, nil
}

// KeyLookupSigningKey returns the fleet's key for find-my-keys tokens,
// creating it on first use. Two replicas creating it at once agree: the
// second insert does nothing, and the read (a statement of its own, so it
// sees the first one's commit) returns the key that won.
func KeyLookupSigningKey(ctx context.Context, db DB) ([]byte, error) {
	var secret []byte
	err := db.QueryRow(ctx, `SELECT secret FROM key_lookup_signing_key WHERE id`).Scan(&secret)
	if err == nil {
		return secret, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("reading the find-my-keys signing key: %w", err)
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh) // never fails (crypto/rand)
	if _, err := db.Exec(ctx, `INSERT INTO key_lookup_signing_key (id, secret) VALUES (true, $1) ON CONFLICT (id) DO NOTHING`, fresh); err != nil {
		return nil, fmt.Errorf("creating the find-my-keys signing key: %w", err)
	}
	if err := db.QueryRow(ctx, `SELECT secret FROM key_lookup_signing_key WHERE id`).Scan(&secret); err != nil {
		return nil, fmt.Errorf("reading the find-my-keys signing key: %w", err)
	}
	return secret, nil
}

// ReserveKeyLookup records a link request for the address whose digest is
// given, unless limit requests were already accepted for it within per:
// it reports whether this one is accepted. The address's row is locked
// until tx ends, so concurrent requests on every replica count one by one.
// Requests past the limit are not recorded: a flood neither extends the
// wait nor grows the row.
func ReserveKeyLookup(ctx context.Context, tx pgx.Tx, emailDigest []byte, limit int, per time.Duration) (bool, error) {
	// A new address's row is created first, so that there is always a
	// row to lock; a concurrent creator waits for this one's commit.
	if _, err := tx.Exec(ctx, `INSERT INTO key_lookup_requests (email_digest) VALUES ($1) ON CONFLICT (email_digest) DO NOTHING`,
		emailDigest); err != nil {
		return false, fmt.Errorf("recording a find-my-keys request: %w", err)
	}
	var accepted []time.Time
	var now time.Time
	err := tx.QueryRow(ctx, `SELECT accepted_at, now() FROM key_lookup_requests WHERE email_digest = $1 FOR UPDATE`,
		emailDigest).Scan(&accepted, &now)
	if err != nil {
		return false, fmt.Errorf("reading the find-my-keys requests of an address: %w", err)
	}
	recent := accepted[:0]
	for _, t := range accepted {
		if t.After(now.Add(-per)) {
			recent = append(recent, t)
		}
	}
	if len(recent) >= limit {
		return false, nil
	}
	_, err = tx.Exec(ctx, `UPDATE key_lookup_requests SET accepted_at = $2, last_requested_at = $3 WHERE email_digest = $1`,
		emailDigest, append(recent, now), now)
	if err != nil {
		return false, fmt.Errorf("recording a find-my-keys request: %w", err)
	}
	return true, nil
}

// ForgetKeyLookups deletes the request records that no longer count
// against any limit (none within per).
func ForgetKeyLookups(ctx context.Context, db DB, per time.Duration) error {
	if _, err := db.Exec(ctx, `DELETE FROM key_lookup_requests WHERE last_requested_at < now() - $1 * interval '1 second'`,
		int64(per/time.Second)); err != nil {
		return fmt.Errorf("deleting old find-my-keys requests: %w", err)
	}
	return nil
}
