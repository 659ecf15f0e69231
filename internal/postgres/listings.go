package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

var ordersOfEmailSQL = lookup("OrdersOfEmail", newestOrdersWhere(`lower(customer_email) = $1 AND customer_email <> ''`))

// OrdersOfEmail returns the newest orders (at most limit) whose buyer's
// address is email, compared case-insensitively, each with its keys.
// email must already be lower case.
func OrdersOfEmail(ctx context.Context, db DB, email string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, ordersOfEmailSQL, email, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of an email address: %w", err)
	}
	return orders, nil
}

var hasOrdersOfEmailSQL = lookup("HasOrdersOfEmail",
	`SELECT EXISTS (SELECT 1 FROM orders WHERE lower(customer_email) = $1 AND customer_email <> '')`)

// HasOrdersOfEmail reports whether any order was bought with email (lower
// case).
func HasOrdersOfEmail(ctx context.Context, db DB, email string) (bool, error) {
	var found bool
	err := db.QueryRow(ctx, hasOrdersOfEmailSQL, email).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("looking for the orders of an email address: %w", err)
	}
	return found, nil
}

var ordersOfCustomerSQL = lookup("OrdersOfCustomer", newestOrdersWhere(`customer_id = $1 AND customer_id <> ''`))

// OrdersOfCustomer returns the newest orders (at most limit) of a Stripe
// customer, each with its keys.
func OrdersOfCustomer(ctx context.Context, db DB, customerID string, limit int) ([]*order.Order, error) {
	orders, err := ordersWithKeys(ctx, db, ordersOfCustomerSQL, customerID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of customer %s: %w", customerID, err)
	}
	return orders, nil
}

// newestOrdersWhere is the query of the newest orders (at most $2)
// matching where (one parameter, $1), for ordersWithKeys.
func newestOrdersWhere(where string) string { return newestOrders(where, "$2") }

// newestOrders is newestOrdersWhere with the limit in parameter limit.
func newestOrders(where, limit string) string {
	return "SELECT " + orderColumns + " FROM orders WHERE " + where + " ORDER BY created_at DESC, checkout_session_id LIMIT " + limit
}

var keysOfOrdersSQL = lookup("ordersWithKeys/keys", "SELECT "+keyColumns+" FROM order_keys WHERE checkout_session_id = ANY($1) ORDER BY id")

// ordersWithKeys reads the orders of sql (a newestOrders, given args: its
// own and the limit) and their keys, in two statements whatever the number
// of orders.
func ordersWithKeys(ctx context.Context, db DB, sql string, args ...any) ([]*order.Order, error) {
	rows, err := db.Query(ctx, sql, args...)
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
	keyRows, err := db.Query(ctx, keysOfOrdersSQL, ids)
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
	if err := attachLines(ctx, db, orders...); err != nil {
		return nil, err
	}
	for _, o := range orders {
		if err := attachStanding(ctx, db, o); err != nil {
			return nil, err
		}
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

// Find-my-keys counts: each request must fit in every one of its counts.
const (
	// KeyLookupByAddress counts one address whoever asks
	// (key_lookup_requests, digest: SHA-256 of the normalised address).
	KeyLookupByAddress = "address"
	// KeyLookupByAddressClient counts one address asked for by one client,
	// and KeyLookupByNetwork one client network whatever the address
	// (key_lookup_client_requests, digest: a keyed HMAC).
	KeyLookupByAddressClient = "address_client"
	KeyLookupByNetwork       = "network"
)

// KeyLookupCount is one count a find-my-keys request must fit in: at most
// Limit accepted requests of Scope and Digest within the window.
type KeyLookupCount struct {
	Scope  string
	Digest []byte
	Limit  int
}

// keyLookupScopeRank is the order rows are locked in, whatever order the
// caller gives: every transaction takes its address row, then its
// address-client row, then its network row, so two requests sharing a row
// never wait for each other in a cycle.
var keyLookupScopeRank = map[string]int{KeyLookupByAddress: 0, KeyLookupByAddressClient: 1, KeyLookupByNetwork: 2}

// ReserveKeyLookup records a link request in each of counts, unless one of
// them already holds its limit of requests accepted within per: it reports
// whether this one is accepted. The rows are locked until tx ends, so
// concurrent requests on every replica count one by one. It returns ""
// when the request is accepted, or the scope of the first full count. A
// refused request is recorded in none of them: a flood neither extends the
// wait nor grows a row.
func ReserveKeyLookup(ctx context.Context, tx pgx.Tx, counts []KeyLookupCount, per time.Duration) (refusedBy string, err error) {
	counts = slices.Clone(counts)
	for _, c := range counts {
		if _, ok := keyLookupScopeRank[c.Scope]; !ok {
			return "", fmt.Errorf("find-my-keys count of unknown scope %q", c.Scope)
		}
	}
	slices.SortStableFunc(counts, func(a, b KeyLookupCount) int { return keyLookupScopeRank[a.Scope] - keyLookupScopeRank[b.Scope] })
	recents := make([][]time.Time, len(counts))
	var now time.Time
	for i, c := range counts {
		// A new row is created first, so that there is always a row to
		// lock; a concurrent creator waits for this one's commit.
		insert := `INSERT INTO key_lookup_client_requests (digest, scope) VALUES ($1, $2) ON CONFLICT (scope, digest) DO NOTHING`
		read := `SELECT accepted_at, now() FROM key_lookup_client_requests WHERE digest = $1 AND scope = $2 FOR UPDATE`
		args := []any{c.Digest, c.Scope}
		if c.Scope == KeyLookupByAddress {
			insert = `INSERT INTO key_lookup_requests (email_digest) VALUES ($1) ON CONFLICT (email_digest) DO NOTHING`
			read = `SELECT accepted_at, now() FROM key_lookup_requests WHERE email_digest = $1 FOR UPDATE`
			args = args[:1]
		}
		if _, err := tx.Exec(ctx, insert, args...); err != nil {
			return "", fmt.Errorf("recording a find-my-keys request: %w", err)
		}
		var accepted []time.Time
		if err := tx.QueryRow(ctx, read, args...).Scan(&accepted, &now); err != nil {
			return "", fmt.Errorf("reading the find-my-keys requests of an address: %w", err)
		}
		recent := accepted[:0]
		for _, t := range accepted {
			if t.After(now.Add(-per)) {
				recent = append(recent, t)
			}
		}
		if len(recent) >= c.Limit {
			return c.Scope, nil
		}
		recents[i] = recent
	}
	for i, c := range counts {
		update := `UPDATE key_lookup_client_requests SET accepted_at = $3, last_requested_at = $4 WHERE digest = $1 AND scope = $2`
		args := []any{c.Digest, c.Scope, append(recents[i], now), now}
		if c.Scope == KeyLookupByAddress {
			update = `UPDATE key_lookup_requests SET accepted_at = $2, last_requested_at = $3 WHERE email_digest = $1`
			args = []any{c.Digest, append(recents[i], now), now}
		}
		if _, err := tx.Exec(ctx, update, args...); err != nil {
			return "", fmt.Errorf("recording a find-my-keys request: %w", err)
		}
	}
	return "", nil
}

// ForgetKeyLookups deletes the request counts that no longer count against
// any limit (none within per), and the addresses of requests older than
// stale, whose links are no longer sent.
func ForgetKeyLookups(ctx context.Context, db DB, per, stale time.Duration) error {
	for _, sql := range []string{
		`DELETE FROM key_lookup_requests WHERE last_requested_at < now() - $1 * interval '1 second'`,
		`DELETE FROM key_lookup_client_requests WHERE last_requested_at < now() - $1 * interval '1 second'`,
	} {
		if _, err := db.Exec(ctx, sql, int64(per/time.Second)); err != nil {
			return fmt.Errorf("deleting old find-my-keys requests: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `DELETE FROM key_lookup_emails WHERE created_at < now() - $1 * interval '1 second'`,
		int64(stale/time.Second)); err != nil {
		return fmt.Errorf("deleting the addresses of old find-my-keys requests: %w", err)
	}
	return nil
}

// AddKeyLookupEmail records the address (normalised) of an accepted
// find-my-keys request and returns the request's number, which its job
// names instead of the address.
func AddKeyLookupEmail(ctx context.Context, tx pgx.Tx, email string) (int64, error) {
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO key_lookup_emails (email) VALUES ($1) RETURNING id`, email).Scan(&id); err != nil {
		return 0, fmt.Errorf("recording a find-my-keys request: %w", err)
	}
	return id, nil
}

// KeyLookupEmail returns the address of find-my-keys request id; found is
// false once the request is done (sent, given up, or forgotten).
func KeyLookupEmail(ctx context.Context, db DB, id int64) (email string, found bool, err error) {
	err = db.QueryRow(ctx, `SELECT email FROM key_lookup_emails WHERE id = $1`, id).Scan(&email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading find-my-keys request %d: %w", id, err)
	}
	return email, true, nil
}

// ForgetKeyLookupEmail deletes the address of a find-my-keys request that
// is done.
func ForgetKeyLookupEmail(ctx context.Context, db DB, id int64) error {
	if _, err := db.Exec(ctx, `DELETE FROM key_lookup_emails WHERE id = $1`, id); err != nil {
		return fmt.Errorf("deleting the address of find-my-keys request %d: %w", id, err)
	}
	return nil
}
