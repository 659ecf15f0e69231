package jobs

import (
	"context"
	"os/user"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Every support action writes its audit entry (postgres.RecordAudit) in the
// transaction that queues it: an action is never taken without its entry,
// nor recorded without being taken.

// MaxAuditEntries is the most entries one listing answers.
const MaxAuditEntries = 500

// CLIActor names the operator running a CLI command: "cli:" and their
// system user, so the audit log tells two operators apart.
func CLIActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return ActorCLI + ":" + u.Username
	}
	return ActorCLI
}

// auditOrder records action on o (and on userKey, when the action names
// one) in tx.
func auditOrder(ctx context.Context, tx pgx.Tx, actor, action string, o *order.Order, userKey, reason string, detail map[string]any) error {
	e := postgres.AuditEntry{Actor: actor, Action: action, Reason: reason, Detail: detail}
	if o != nil {
		e.OrderID, e.OrderRef = &o.ID, logging.OrderRef(o.CheckoutSessionID)
	}
	if userKey != "" {
		e.KeyTail = logging.MaskKey(userKey)
	}
	return postgres.RecordAudit(ctx, tx, e)
}

// AuditLog lists the support actions q selects, newest first.
func (s *Support) AuditLog(ctx context.Context, q postgres.AuditQuery) ([]postgres.AuditEntry, error) {
	if q.Limit <= 0 || q.Limit > MaxAuditEntries {
		q.Limit = MaxAuditEntries
	}
	return postgres.ListAudit(ctx, s.Pool, q)
}

// RecordAdminRequest records a state-changing request of an admin tool the
// service mounts but does not own (the River UI: cancelling, retrying or
// deleting jobs), which no Support method carries out.
func (s *Support) RecordAdminRequest(ctx context.Context, actor, action string, detail map[string]any) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		return postgres.RecordAudit(ctx, tx, postgres.AuditEntry{Actor: actor, Action: action, Detail: detail})
	})
}
