package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// The reads behind the operator console: what touched one order (its
// jobs, its lifecycle emails) and the shop's figures of the day and week.

// maxOrderJobs bounds the jobs listed for one order: a renewed
// subscription's keys gather a few a month.
const maxOrderJobs = 200

// JobSummary is one River job about an order or one of its keys.
type JobSummary struct {
	ID          int64
	Kind        string
	State       string
	Attempt     int
	MaxAttempts int
	CreatedAt   time.Time
	ScheduledAt time.Time
	FinalizedAt *time.Time
	// Errors are its failed attempts, oldest first.
	Errors []JobError
}

// JobError is one failed attempt of a job, as River recorded it.
type JobError struct {
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error"`
}

// JobsOfOrder lists the jobs whose arguments name the order (order_id),
// one of its units (order_key_id), the Luarmor key of one (ledger_key_id)
// or one of the revocations of its payment (revocation_id), oldest first.
func JobsOfOrder(ctx context.Context, db DB, o *order.Order, revocationIDs []int64) ([]JobSummary, error) {
	rows, err := db.Query(ctx, `WITH names AS (
			SELECT jsonb_build_object('order_id', $1::bigint) AS name
			UNION ALL SELECT jsonb_build_object('order_key_id', id) FROM order_keys WHERE checkout_session_id = $2
			UNION ALL SELECT jsonb_build_object('ledger_key_id', l.id) FROM ledger_keys l
				JOIN order_keys k ON k.project_id = l.project_id AND k.user_key = l.user_key WHERE k.checkout_session_id = $2
			UNION ALL SELECT jsonb_build_object('revocation_id', r) FROM unnest($3::bigint[]) AS r)
		SELECT id, kind, state::text, attempt, max_attempts, created_at, scheduled_at, finalized_at,
			COALESCE(to_jsonb(errors), '[]'::jsonb)
		FROM river_job WHERE args @> ANY(ARRAY(SELECT name FROM names)) ORDER BY id LIMIT $4`,
		o.ID, o.CheckoutSessionID, revocationIDs, maxOrderJobs)
	if err != nil {
		return nil, fmt.Errorf("listing the jobs of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobSummary, error) {
		var j JobSummary
		var errs []byte
		if err := row.Scan(&j.ID, &j.Kind, &j.State, &j.Attempt, &j.MaxAttempts, &j.CreatedAt, &j.ScheduledAt, &j.FinalizedAt, &errs); err != nil {
			return j, err
		}
		if err := json.Unmarshal(errs, &j.Errors); err != nil {
			return j, fmt.Errorf("reading the errors of job %d: %w", j.ID, err)
		}
		return j, nil
	})
}

var eventsAboutSQL = lookup("EventsAbout", `SELECT id, type, object_id, created_at, received_at FROM stripe_events
		WHERE object_id = ANY($1) ORDER BY created_at, id LIMIT 200`)

// EventsAbout lists the recorded Stripe events about any of objects
// (a dispute, a charge, an early fraud warning), oldest first.
func EventsAbout(ctx context.Context, db DB, objects []string) ([]EventSummary, error) {
	if len(objects) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, eventsAboutSQL, objects)
	if err != nil {
		return nil, fmt.Errorf("listing the events of an order's revocations: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (EventSummary, error) {
		var e EventSummary
		err := row.Scan(&e.ID, &e.Type, &e.ObjectID, &e.CreatedAt, &e.ReceivedAt)
		return e, err
	})
}

// LifecycleEmailSummary is one email about what happened to an order
// after its keys email.
type LifecycleEmailSummary struct {
	Kind      string
	Status    string
	Attempts  int
	LastError string
	CreatedAt time.Time
	SentAt    *time.Time
}

var lifecycleEmailsOfOrderSQL = lookup("LifecycleEmailsOfOrder", `SELECT kind, status, attempts, COALESCE(last_error, ''), created_at, sent_at
		FROM lifecycle_emails WHERE order_id = $1 ORDER BY created_at, id`)

// LifecycleEmailsOfOrder lists an order's lifecycle emails, oldest first.
func LifecycleEmailsOfOrder(ctx context.Context, db DB, orderID int64) ([]LifecycleEmailSummary, error) {
	rows, err := db.Query(ctx, lifecycleEmailsOfOrderSQL, orderID)
	if err != nil {
		return nil, fmt.Errorf("listing the lifecycle emails of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (LifecycleEmailSummary, error) {
		var e LifecycleEmailSummary
		err := row.Scan(&e.Kind, &e.Status, &e.Attempts, &e.LastError, &e.CreatedAt, &e.SentAt)
		return e, err
	})
}

// KeyTailIndexed is how many of a key's last characters are indexed
// (order_keys_key_tail_idx, migration 0043): a search by a key's end takes
// at least that many.
const KeyTailIndexed = 4

// ordersOfKeyTailSQL compares the indexed last characters first, then the
// whole tail.
var ordersOfKeyTailSQL = lookup("OrdersOfKeyTail", newestOrdersWhere(`checkout_session_id IN (SELECT checkout_session_id FROM order_keys
		WHERE right(user_key, 4) = right($1, 4) AND right(user_key, length($1)) = $1 AND user_key IS NOT NULL)`))

// OrdersOfKeyTail returns the newest orders (at most limit) holding a key
// that ends with tail, of at least KeyTailIndexed characters.
func OrdersOfKeyTail(ctx context.Context, db DB, tail string, limit int) ([]*order.Order, error) {
	if len([]rune(tail)) < KeyTailIndexed {
		return nil, order.Errorf(order.EINVALID, "give at least the last %d characters of a key", KeyTailIndexed)
	}
	orders, err := ordersWithKeys(ctx, db, ordersOfKeyTailSQL, tail, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the orders of a key's last characters: %w", err)
	}
	return orders, nil
}

// Figures counts what the shop sold since a moment.
type Figures struct {
	Orders int
	// Keys counts the keys delivered.
	Keys int
}

// Bounded by now() as well (no row is later): a generic plan estimates a
// range closed on both sides as narrow, and reads it through the index; a
// count from $1 on was estimated as a third of the table and read whole.
var figuresSinceSQL = lookup("FiguresSince", `SELECT (SELECT count(*) FROM orders WHERE created_at >= $1 AND created_at <= now()),
		(SELECT count(*) FROM order_keys WHERE delivered_at >= $1 AND delivered_at <= now())`)

// FiguresSince counts the orders recorded and the keys delivered since.
func FiguresSince(ctx context.Context, db DB, since time.Time) (Figures, error) {
	var f Figures
	err := db.QueryRow(ctx, figuresSinceSQL, since).Scan(&f.Orders, &f.Keys)
	if err != nil {
		return f, fmt.Errorf("counting the orders and keys since %s: %w", since.Format(time.RFC3339), err)
	}
	return f, nil
}

// openOrderQueries are, per status the console lists, the count and the
// newest orders of that status. The status is written in each query's
// text: orders_open_idx holds only pending and failed orders, and a
// generic plan (postgres.ConfigureSession) of "status = $1" could not know
// that the value is one of them.
var openOrderQueries = map[order.Status]struct{ count, newest string }{
	order.StatusPending: {
		lookup("OrdersInStatus/pending/count", `SELECT count(*) FROM orders WHERE status = 'pending'`),
		lookup("OrdersInStatus/pending", newestOrders(`status = 'pending'`, "$1")),
	},
	order.StatusFailed: {
		lookup("OrdersInStatus/failed/count", `SELECT count(*) FROM orders WHERE status = 'failed'`),
		lookup("OrdersInStatus/failed", newestOrders(`status = 'failed'`, "$1")),
	},
}

// OrdersInStatus returns the newest orders (at most limit) in status, each
// with its keys, and how many there are in all. The console lists the
// pending and the failed ones, few at any time (orders_open_idx); another
// status is refused.
func OrdersInStatus(ctx context.Context, db DB, status order.Status, limit int) ([]*order.Order, int, error) {
	q, ok := openOrderQueries[status]
	if !ok {
		return nil, 0, order.Errorf(order.EINVALID, "orders are listed by status only while pending or failed, not %s", status)
	}
	var total int
	if err := db.QueryRow(ctx, q.count).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("counting the %s orders: %w", status, err)
	}
	orders, err := ordersWithKeys(ctx, db, q.newest, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the %s orders: %w", status, err)
	}
	return orders, total, nil
}

// JobKindCount is how many jobs of a kind are in a state.
type JobKindCount struct {
	Kind  string
	Count int
}

// RetryingJobs counts the jobs waiting to be retried after a failed
// attempt, per kind, most first.
func RetryingJobs(ctx context.Context, db DB) ([]JobKindCount, error) {
	rows, err := db.Query(ctx, `SELECT kind, count(*) FROM river_job WHERE state = 'retryable'
		GROUP BY kind ORDER BY count(*) DESC, kind`)
	if err != nil {
		return nil, fmt.Errorf("counting the jobs waiting to be retried: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobKindCount, error) {
		var c JobKindCount
		err := row.Scan(&c.Kind, &c.Count)
		return c, err
	})
}

// Bounded by now() too, as figuresSinceSQL is.
var newKeysDeliveredSinceSQL = lookup("NewKeysDeliveredSince",
	`SELECT count(*) FROM order_keys WHERE delivered_at > $1 AND delivered_at <= now() AND NOT extended_existing`)

// NewKeysDeliveredSince counts the keys delivered after since that were
// made for their unit (a unit that extended its buyer's key made none).
func NewKeysDeliveredSince(ctx context.Context, db DB, since time.Time) (int, error) {
	var n int
	if err := db.QueryRow(ctx, newKeysDeliveredSinceSQL, since).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the keys delivered since %s: %w", since.Format(time.RFC3339), err)
	}
	return n, nil
}
