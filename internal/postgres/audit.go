package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEntry is one support action in the audit log (support_audit).
type AuditEntry struct {
	ID       int64
	At       time.Time
	Actor    string
	Action   string
	OrderID  *int64
	OrderRef string
	KeyTail  string
	Reason   string
	Detail   map[string]any
}

// RecordAudit writes e in tx, the transaction of the action it records.
func RecordAudit(ctx context.Context, tx pgx.Tx, e AuditEntry) error {
	detail := e.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("encoding the audit detail of %s: %w", e.Action, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO support_audit (actor, action, order_id, order_ref, key_tail, reason, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.Actor, e.Action, e.OrderID, e.OrderRef, e.KeyTail, e.Reason, raw)
	if err != nil {
		return fmt.Errorf("recording support action %s in the audit log: %w", e.Action, err)
	}
	return nil
}

// AuditQuery selects audit entries, newest first.
type AuditQuery struct {
	// Before lists entries older than this ID (0: from the newest).
	Before int64
	// OrderID lists one order's entries only (0: all).
	OrderID int64
	Limit   int
}

// listAudit is the audit log's query per set of filters present (an
// older-than ID, an order): a generic plan (SessionSettings) of
// "($2 = 0 OR order_id = $2)" could not use support_audit_order_idx and
// read the whole log backwards for an order's few entries.
var listAudit = newFilterQueries(filterListing{
	name: "ListAudit",
	selectFrom: `SELECT id, at, actor, action, order_id, order_ref, key_tail, reason, detail
		FROM support_audit`,
	fixedParams: 1, // the limit
	filters: []queryFilter{
		{"before", "id < " + filterParam},
		{"order", "order_id = " + filterParam},
	},
	tail: `ORDER BY id DESC LIMIT $1`,
})

// ListAudit returns the entries q selects, newest first.
func ListAudit(ctx context.Context, db DB, q AuditQuery) ([]AuditEntry, error) {
	sql, args := listAudit.query([]any{q.Limit}, unlessZero(q.Before), unlessZero(q.OrderID))
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.OrderID, &e.OrderRef, &e.KeyTail, &e.Reason, &e.Detail)
		return e, err
	})
}
