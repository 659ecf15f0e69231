package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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

// listAuditSQL holds the audit log's query for each pair of filters (an
// older-than ID, an order), by whether each is set: the service's generic
// plans (SessionSettings) of "($2 = 0 OR order_id = $2)" could not use
// support_audit_order_idx and read the whole log backwards for an order's
// few entries.
var listAuditSQL = func() map[[2]bool]string {
	queries := map[[2]bool]string{}
	for _, before := range []bool{false, true} {
		for _, byOrder := range []bool{false, true} {
			where, name, param := []string{"true"}, []string{}, 2 // $1 is the limit
			if before {
				where, name, param = append(where, fmt.Sprintf("id < $%d", param)), append(name, "before"), param+1
			}
			if byOrder {
				where, name = append(where, fmt.Sprintf("order_id = $%d", param)), append(name, "order")
			}
			if len(name) == 0 {
				name = []string{"all"}
			}
			queries[[2]bool{before, byOrder}] = lookup("ListAudit/"+strings.Join(name, "+"),
				`SELECT id, at, actor, action, order_id, order_ref, key_tail, reason, detail
		FROM support_audit WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT $1`)
		}
	}
	return queries
}()

// ListAudit returns the entries q selects, newest first.
func ListAudit(ctx context.Context, db DB, q AuditQuery) ([]AuditEntry, error) {
	args := []any{q.Limit}
	for _, v := range []int64{q.Before, q.OrderID} {
		if v != 0 {
			args = append(args, v)
		}
	}
	rows, err := db.Query(ctx, listAuditSQL[[2]bool{q.Before != 0, q.OrderID != 0}], args...)
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.OrderID, &e.OrderRef, &e.KeyTail, &e.Reason, &e.Detail)
		return e, err
	})
}
