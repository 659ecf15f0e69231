package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LuarmorCall is one Luarmor request made for an order or a key, as the
// console's timeline shows it (luarmor_call_log).
type LuarmorCall struct {
	SentAt time.Time
	Took   time.Duration
	// Endpoint is the route template, never a key or an ID.
	Endpoint string
	// Status is Luarmor's HTTP status, 0 when no answer arrived.
	Status int
	// ErrorClass is "" for a success, else what failed (see the table).
	ErrorClass string
	OrderID    int64 // 0 when no order is known
	// KeyTail is the key's masked form (logging.MaskKey), "" when the
	// request named no key.
	KeyTail    string
	JobID      int64 // 0 outside a job
	JobKind    string
	JobAttempt int
}

// LuarmorCallOwner names what a request was made for, so that its order
// can be found when the caller does not know it: the order or one of its
// units, else the key the request names. The key is only looked up, never
// stored.
type LuarmorCallOwner struct {
	OrderID, OrderKeyID int64
	ProjectID, UserKey  string
}

// RecordLuarmorCall stores c, its order being c.OrderID or else the one of
// owner's unit, or of the unit that holds owner's key (the first sold).
func RecordLuarmorCall(ctx context.Context, db DB, c LuarmorCall, owner LuarmorCallOwner) error {
	_, err := db.Exec(ctx, `INSERT INTO luarmor_call_log
			(sent_at, took_ms, endpoint, status, error_class, order_id, key_tail, job_id, job_kind, job_attempt)
		VALUES ($1, $2, $3, NULLIF($4, 0), $5,
			COALESCE(NULLIF($6::bigint, 0),
				(SELECT o.id FROM order_keys k JOIN orders o USING (checkout_session_id) WHERE k.id = NULLIF($7::bigint, 0)),
				(SELECT o.id FROM order_keys k JOIN orders o USING (checkout_session_id)
				  WHERE $9 <> '' AND k.project_id = $8 AND k.user_key = $9 ORDER BY k.id LIMIT 1)),
			$10, NULLIF($11::bigint, 0), $12, NULLIF($13, 0))`,
		c.SentAt, c.Took.Milliseconds(), c.Endpoint, c.Status, c.ErrorClass,
		c.OrderID, owner.OrderKeyID, owner.ProjectID, owner.UserKey,
		c.KeyTail, c.JobID, c.JobKind, c.JobAttempt)
	if err != nil {
		return fmt.Errorf("recording a Luarmor request of %s: %w", c.Endpoint, err)
	}
	return nil
}

// LuarmorCallsOfOrder lists the newest limit Luarmor requests made for the
// order, oldest first.
func LuarmorCallsOfOrder(ctx context.Context, db DB, orderID int64, limit int) ([]LuarmorCall, error) {
	rows, err := db.Query(ctx, `SELECT sent_at, took_ms, endpoint, COALESCE(status, 0), error_class, order_id,
			key_tail, COALESCE(job_id, 0), job_kind, COALESCE(job_attempt, 0)
		FROM (SELECT * FROM luarmor_call_log WHERE order_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2) newest
		ORDER BY sent_at, id`, orderID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing the Luarmor requests of an order: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (LuarmorCall, error) {
		var c LuarmorCall
		var tookMS int64
		err := row.Scan(&c.SentAt, &tookMS, &c.Endpoint, &c.Status, &c.ErrorClass, &c.OrderID,
			&c.KeyTail, &c.JobID, &c.JobKind, &c.JobAttempt)
		c.Took = time.Duration(tookMS) * time.Millisecond
		return c, err
	})
}
