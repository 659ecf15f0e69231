package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// StockKey is one key of a price's stock (migrations/0015_key_stock.sql).
type StockKey struct {
	ID             int64
	PriceID        string
	ProjectID      string
	KeyDays        int
	Reference      string
	Status         string // "pending", "ready", "sold" or "retiring" (0017)
	UserKey        string
	CreateAttempts int
}

const stockColumns = `id, price_id, project_id, key_days, reference, status, COALESCE(user_key, ''), create_attempts`

func scanStockKey(row pgx.Row) (*StockKey, error) {
	var s StockKey
	err := row.Scan(&s.ID, &s.PriceID, &s.ProjectID, &s.KeyDays, &s.Reference, &s.Status, &s.UserKey, &s.CreateAttempts)
	return &s, err
}

// StockPlan is what a price's stock should hold.
type StockPlan struct {
	PriceID   string
	ProjectID string
	KeyDays   int
	Target    int // the catalog's stock: N
}

// ClaimStockKey claims, for owner and lease from now, the next stock key of
// a price to make, recording the create attempt about to be sent in the
// same commit. A pending key (an earlier run was cut off) comes first, so a
// crash never leaves a second key planned beside it; otherwise a new key is
// planned, with its reference, while the price's keys for sale (ready and
// pending) of the plan's project and key_days number fewer than
// plan.Target: keys of the price's earlier plan are no stock of it, since
// its units can no longer take them, and neither are keys being deleted
// (retiring), which are never sold. It returns nil when the stock is
// full, and *LeaseHeldError while another runner's create may be on its way.
// Refills of one price are serialised, so two never plan past the target.
func ClaimStockKey(ctx context.Context, tx pgx.Tx, plan StockPlan, owner string, lease time.Duration) (*StockKey, error) {
	if err := LockStock(ctx, tx, plan.PriceID); err != nil {
		return nil, err
	}
	var pendingID int64
	var until *time.Time
	var heldBy string
	err := tx.QueryRow(ctx, `SELECT id, create_lease_until, COALESCE(create_lease_owner, '') FROM stock_keys
		WHERE price_id = $1 AND status = 'pending' ORDER BY id LIMIT 1`, plan.PriceID).Scan(&pendingID, &until, &heldBy)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("reading the stock of price %s: %w", plan.PriceID, err)
	default:
		if heldBy != owner && until != nil && until.After(time.Now()) {
			return nil, &LeaseHeldError{Until: *until}
		}
		s, err := scanStockKey(tx.QueryRow(ctx, `UPDATE stock_keys SET create_lease_owner = $2, create_lease_until = now() + $3::interval,
				create_attempts = create_attempts + 1
			WHERE id = $1 AND (create_lease_owner = $2 OR create_lease_until IS NULL OR create_lease_until <= now())
			RETURNING `+stockColumns, pendingID, owner, lease))
		if errors.Is(err, pgx.ErrNoRows) { // the lease is on the database's clock: still held there
			return nil, &LeaseHeldError{Until: time.Now().Add(time.Second)}
		}
		if err != nil {
			return nil, fmt.Errorf("claiming stock key %d: %w", pendingID, err)
		}
		return s, nil
	}
	s, err := scanStockKey(tx.QueryRow(ctx, `
		INSERT INTO stock_keys (price_id, project_id, key_days, reference, create_attempts, create_lease_owner, create_lease_until)
		SELECT $1, $2, $3, 'fk_' || left(replace(gen_random_uuid()::text, '-', ''), 20), 1, $5, now() + $6::interval
		WHERE (SELECT count(*) FROM stock_keys WHERE price_id = $1 AND project_id = $2 AND key_days = $3 AND status <> 'sold' AND status <> 'retiring') < $4
		RETURNING `+stockColumns, plan.PriceID, plan.ProjectID, plan.KeyDays, plan.Target, owner, lease))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("planning a stock key of price %s: %w", plan.PriceID, err)
	}
	return s, nil
}

// The stock's one invariant across transactions: a price's stock never
// holds more than N keys for sale, and a sale is never left unreplaced by
// a refill that decided, during the sale, that the stock was full. A key is
// never sold twice by the row lock its sale takes (SellStockKey, SKIP
// LOCKED), not by these locks.
//
// LockStock takes, until tx ends, the price's stock lock exclusively: a
// refill holds it while it counts the stock, plans a key and, when full,
// completes its job (ClaimStockKey), so two refills never plan past N.
// ShareStockLock takes the same lock shared: a sale holds it from queueing
// the refill that replaces its key to its commit. Sales therefore commit
// concurrently, and a refill's count-and-complete step waits for the sales
// in flight and is waited for by the next ones: whichever commits second
// sees the other.
func LockStock(ctx context.Context, tx pgx.Tx, priceID string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('stock_keys:' || $1, 0))`, priceID); err != nil {
		return fmt.Errorf("locking the stock of price %s: %w", priceID, err)
	}
	return nil
}

// ShareStockLock takes a price's stock lock shared until tx ends: see
// LockStock.
func ShareStockLock(ctx context.Context, tx pgx.Tx, priceID string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtextextended('stock_keys:' || $1, 0))`, priceID); err != nil {
		return fmt.Errorf("locking the stock of price %s for a sale: %w", priceID, err)
	}
	return nil
}

// RefillInFlight reports whether a job of kind (the refill's) for price
// waits or runs. Read under ShareStockLock, such a refill has not yet
// decided the stock is full (it decides and completes under LockStock), so
// it will count a sale committed now: the sale need not queue another.
func RefillInFlight(ctx context.Context, tx pgx.Tx, kind, priceID string) (bool, error) {
	var found bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = $1
		AND state IN `+liveJobStates+` AND args->>'price_id' = $2)`, kind, priceID).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("looking for the refill of price %s: %w", priceID, err)
	}
	return found, nil
}

// RenewStockLease renews owner's lease on a pending stock key right before
// a request for it is sent; it fails once the lease passed to another
// runner or the key was recorded.
func RenewStockLease(ctx context.Context, db DB, id int64, owner string, lease time.Duration) error {
	tag, err := db.Exec(ctx, `UPDATE stock_keys SET create_lease_until = now() + $3::interval
		WHERE id = $1 AND status = 'pending' AND create_lease_owner = $2`, id, owner, lease)
	if err != nil {
		return fmt.Errorf("renewing the lease of stock key %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("stock key %d is no longer this runner's to make", id)
	}
	return nil
}

// ReleaseStockLease drops owner's lease on a stock key whose request was
// never applied; undoAttempt takes back the attempt it recorded.
func ReleaseStockLease(ctx context.Context, db DB, id int64, owner string, undoAttempt bool) error {
	_, err := db.Exec(ctx, `UPDATE stock_keys SET create_lease_until = NULL, create_lease_owner = NULL,
			create_attempts = create_attempts - CASE WHEN $3 AND create_attempts > 0 THEN 1 ELSE 0 END
		WHERE id = $1 AND create_lease_owner = $2`, id, owner, undoAttempt)
	return err
}

// ShortenStockLease ends owner's lease on a stock key within d: Luarmor
// answered its last request, so the retry need not wait the whole lease.
func ShortenStockLease(ctx context.Context, db DB, id int64, owner string, d time.Duration) error {
	_, err := db.Exec(ctx, `UPDATE stock_keys SET create_lease_until = LEAST(create_lease_until, now() + $3::interval)
		WHERE id = $1 AND create_lease_owner = $2`, id, owner, d)
	return err
}

// ErrStockKeyRecordedElsewhere says a stock key already holds another
// Luarmor key (or was dropped): a runner whose lease was taken over made a
// second key, which the caller must remove.
var ErrStockKeyRecordedElsewhere = errors.New("the stock key was already recorded with another key")

// StockKeyMade records the Luarmor key of a pending stock key: it is ready
// to sell. The same key recorded before is left as it is; another one,
// ErrStockKeyRecordedElsewhere.
func StockKeyMade(ctx context.Context, db DB, id int64, userKey string) error {
	tag, err := db.Exec(ctx, `UPDATE stock_keys SET status = 'ready', user_key = $2, made_at = now(),
			create_lease_until = NULL, create_lease_owner = NULL
		WHERE id = $1 AND status = 'pending'`, id, userKey)
	if err != nil {
		return fmt.Errorf("recording stock key %d: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var existing string
	err = db.QueryRow(ctx, `SELECT COALESCE(user_key, '') FROM stock_keys WHERE id = $1`, id).Scan(&existing)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrStockKeyRecordedElsewhere
	case err != nil:
		return fmt.Errorf("reading stock key %d: %w", id, err)
	case existing != userKey:
		return ErrStockKeyRecordedElsewhere
	}
	return nil
}

// DropStockKey forgets a pending stock key Luarmor refused for good (after
// a look-up found no key of an earlier attempt): no key exists for it.
func DropStockKey(ctx context.Context, db DB, id int64) error {
	_, err := db.Exec(ctx, `DELETE FROM stock_keys WHERE id = $1 AND status = 'pending'`, id)
	if err != nil {
		return fmt.Errorf("dropping stock key %d: %w", id, err)
	}
	return nil
}

// SellStockKey delivers unit id from stock inside tx, the transaction that
// then records the rest of its delivery: it sells the oldest ready key of
// the unit's own (project_id, key_days), skipping keys another transaction
// is taking, so two replicas never sell one key, and records it as the
// unit's key (with authExpire, as DeliverKey would) in the same statement,
// then settles the order. It takes one only for a unit no create was ever
// sent for (create_attempts 0, which ClaimCreate raises under the same row
// lock), still without a key, whose key follows key_days (not a
// subscription's), of an order not revoked, and returns "" when there is
// none to take. priceID is the price whose stock the key was made for, to
// refill. The order's row is locked first, as DeliverKey does.
func SellStockKey(ctx context.Context, tx pgx.Tx, id int64, authExpire *int64) (userKey, priceID string, err error) {
	sessionID, err := lockOrderOfKey(ctx, tx, id)
	if err != nil {
		return "", "", err
	}
	// The unit's row is locked by its CTE before the key is picked, and
	// updated by the outer statement: the whole sale is one round trip.
	err = tx.QueryRow(ctx, `
		WITH unit AS (
			SELECT id, project_id, key_days FROM order_keys
			WHERE id = $1 AND status = 'pending' AND user_key IS NULL AND create_attempts = 0
			  AND NOT recurring AND expire_target IS NULL
			  AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.checkout_session_id = order_keys.checkout_session_id AND o.status = 'revoked')
			FOR UPDATE
		), picked AS (
			SELECT s.id FROM stock_keys s JOIN unit u ON s.project_id = u.project_id AND s.key_days = u.key_days
			WHERE s.status = 'ready'
			ORDER BY s.id LIMIT 1
			FOR UPDATE OF s SKIP LOCKED
		), sold AS (
			UPDATE stock_keys s SET status = 'sold', order_key_id = $1, sold_at = now()
			FROM picked WHERE s.id = picked.id
			RETURNING s.user_key, s.price_id
		)
		UPDATE order_keys k SET user_key = sold.user_key, auth_expire = $2, status = 'active', last_error = NULL,
			extended_existing = false, delivered_at = now(), updated_at = now(),
			create_lease_until = NULL, create_lease_owner = NULL
		FROM sold WHERE k.id = $1
		RETURNING sold.user_key, sold.price_id`, id, authExpire).Scan(&userKey, &priceID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("selling a stock key to order key %d: %w", id, err)
	}
	return userKey, priceID, settleOrder(ctx, tx, sessionID)
}

var sellableStockSQL = lookup("SellableStock", `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending')
		FROM stock_keys WHERE project_id = $1 AND key_days = $2 AND status <> 'sold'`)

// SellableStock counts the stock keys a unit of (projectID, keyDays) can be
// sold, whichever price made them: a sale matches on the key, not the
// price. Keys of a price's former project or key_days are not among them.
func SellableStock(ctx context.Context, db DB, projectID string, keyDays int) (ready, pending int, err error) {
	err = db.QueryRow(ctx, sellableStockSQL, projectID, keyDays).Scan(&ready, &pending)
	if err != nil {
		return 0, 0, fmt.Errorf("counting the stock of project %s, key_days %d: %w", projectID, keyDays, err)
	}
	return ready, pending, nil
}

// StockActivity is what a price's stock did since a moment, as recorded:
// the same on every replica, unlike a process's counters.
type StockActivity struct {
	Sold        int // units of the price delivered from stock
	MadeToOrder int // units of the price whose key was made at the sale
	Refilled    int // stock keys of the price made
}

var stockActivitySinceSQL = lookup("StockActivitySince", `SELECT
			(SELECT count(*) FROM stock_keys WHERE price_id = $1 AND sold_at > $2),
			(SELECT count(*) FROM order_keys k WHERE k.price_id = $1 AND k.delivered_at > $2 AND k.delivered_at <= now()
			   AND NOT k.recurring AND NOT k.extended_existing
			   -- a look-up per unit through stock_keys' unique order_key_id:
			   -- an anti-join planned for any "since" hashed every stock key
			   AND (SELECT s.id FROM stock_keys s WHERE s.order_key_id = k.id) IS NULL),
			(SELECT count(*) FROM stock_keys WHERE price_id = $1 AND made_at > $2)`)

// StockActivitySince counts a price's sales from stock, its units made to
// order (subscription units and extensions, which the stock never serves,
// aside) and its refills since since.
func StockActivitySince(ctx context.Context, db DB, priceID string, since time.Time) (StockActivity, error) {
	var a StockActivity
	err := db.QueryRow(ctx, stockActivitySinceSQL, priceID, since).Scan(&a.Sold, &a.MadeToOrder, &a.Refilled)
	if err != nil {
		return a, fmt.Errorf("counting the stock activity of price %s: %w", priceID, err)
	}
	return a, nil
}

// StockKeyOf returns the stock key sold as unit orderKeyID, or nil when the
// unit's key was made to order.
func StockKeyOf(ctx context.Context, db DB, orderKeyID int64) (*StockKey, error) {
	s, err := scanStockKey(db.QueryRow(ctx, `SELECT `+stockColumns+` FROM stock_keys WHERE order_key_id = $1`, orderKeyID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stock key of order key %d: %w", orderKeyID, err)
	}
	return s, nil
}

// StockKeyByReference returns the stock key planned with reference, or nil
// when none is recorded.
func StockKeyByReference(ctx context.Context, db DB, reference string) (*StockKey, error) {
	s, err := scanStockKey(db.QueryRow(ctx, `SELECT `+stockColumns+` FROM stock_keys WHERE reference = $1`, reference))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stock key of reference %s: %w", reference, err)
	}
	return s, nil
}

// AdoptStockKey records userKey, a Luarmor key carrying a stock note with
// reference that the database does not know, as a ready key of plan's price
// (plan.Target is not read: an adopted key exists already, so it counts
// toward N however many there are). It adopts nothing, and returns false,
// when a stock key already holds the reference or the key, a unit holds
// the key, or the reference is of a stock key deleted (stock_keys_deleted:
// the caller's listing may predate the deletion). The unique indexes on
// reference and (project_id, user_key) make two adoptions at once record
// it once.
func AdoptStockKey(ctx context.Context, db Beginner, plan StockPlan, reference, userKey string) (bool, error) {
	adopted := false
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// Waits for a deletion of the reference in flight; the statement
		// after it sees that deletion's tombstone.
		if err := lockStockReference(ctx, tx, reference); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO stock_keys (price_id, project_id, key_days, reference, status, user_key, made_at)
			SELECT $1, $2, $3, $4, 'ready', $5, now()
			WHERE NOT EXISTS (SELECT 1 FROM order_keys WHERE project_id = $2 AND user_key = $5)
			  AND NOT EXISTS (SELECT 1 FROM stock_keys_deleted WHERE reference = $4)
			ON CONFLICT DO NOTHING`, plan.PriceID, plan.ProjectID, plan.KeyDays, reference, userKey)
		adopted = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("adopting stock key %s of price %s: %w", reference, plan.PriceID, err)
	}
	return adopted, nil
}

// Beginner starts transactions: a pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func lockStockReference(ctx context.Context, tx pgx.Tx, reference string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('stock_keys.reference:' || $1, 0))`, reference); err != nil {
		return fmt.Errorf("locking stock key %s: %w", reference, err)
	}
	return nil
}

// StockLevels is one price's stock keys by status.
type StockLevels struct {
	PriceID                        string
	ProjectID                      string
	KeyDays                        int
	Ready, Pending, Retiring, Sold int
}

// AllStockLevels counts the stock keys of every price that has any, by
// price (one row per price and (project_id, key_days) it was made for).
func AllStockLevels(ctx context.Context, db DB) ([]StockLevels, error) {
	rows, err := db.Query(ctx, `SELECT price_id, project_id, key_days,
			count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'retiring'), count(*) FILTER (WHERE status = 'sold')
		FROM stock_keys GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("counting the stock: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StockLevels, error) {
		var l StockLevels
		err := row.Scan(&l.PriceID, &l.ProjectID, &l.KeyDays, &l.Ready, &l.Pending, &l.Retiring, &l.Sold)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("counting the stock: %w", err)
	}
	return out, nil
}

// RetireStock takes every ready key of a price out of sale (status
// retiring) and returns how many it took. A sale holding one of them
// (FOR UPDATE) is waited for, and a key it sold is skipped, so no key is
// both sold and retired.
func RetireStock(ctx context.Context, db DB, priceID string) (int, error) {
	tag, err := db.Exec(ctx, `UPDATE stock_keys SET status = 'retiring' WHERE price_id = $1 AND status = 'ready'`, priceID)
	if err != nil {
		return 0, fmt.Errorf("taking the stock of price %s out of sale: %w", priceID, err)
	}
	return int(tag.RowsAffected()), nil
}

// RetireStockKey takes one ready key out of sale (status retiring), as
// the reconciliation does with a key found used or banned, and reports
// whether it did. A sale holding the row (FOR UPDATE) is waited for, and a
// key it sold is left sold: the sale's own check reads that key.
func RetireStockKey(ctx context.Context, db DB, id int64) (bool, error) {
	tag, err := db.Exec(ctx, `UPDATE stock_keys SET status = 'retiring' WHERE id = $1 AND status = 'ready'`, id)
	if err != nil {
		return false, fmt.Errorf("taking stock key %d out of sale: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RetiringStockKeys returns a price's keys taken out of sale and not yet
// dropped, oldest first.
func RetiringStockKeys(ctx context.Context, db DB, priceID string) ([]*StockKey, error) {
	rows, err := db.Query(ctx, `SELECT `+stockColumns+` FROM stock_keys WHERE price_id = $1 AND status = 'retiring' ORDER BY id`, priceID)
	if err != nil {
		return nil, fmt.Errorf("reading the retiring stock of price %s: %w", priceID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*StockKey, error) { return scanStockKey(row) })
	if err != nil {
		return nil, fmt.Errorf("reading the retiring stock of price %s: %w", priceID, err)
	}
	return out, nil
}

// DropRetiredStockKey forgets a retiring stock key once Luarmor no longer
// has it, keeping its reference in stock_keys_deleted so that no
// reconciliation adopts it again.
func DropRetiredStockKey(ctx context.Context, db Beginner, k *StockKey) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := lockStockReference(ctx, tx, k.Reference); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM stock_keys WHERE id = $1 AND status = 'retiring'`, k.ID)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO stock_keys_deleted (reference, project_id, price_id) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, k.Reference, k.ProjectID, k.PriceID)
		return err
	})
	if err != nil {
		return fmt.Errorf("dropping stock key %d: %w", k.ID, err)
	}
	return nil
}
