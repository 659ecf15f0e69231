package jobs

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// ActionLiftRevocation names support's lifting of a revocation in logs and
// answers.
const ActionLiftRevocation = "lift-revocation"

// revocationSourcePattern accepts the Stripe IDs revocations are recorded
// by (issfr_..., dp_..., ch_...).
var revocationSourcePattern = regexp.MustCompile(`^[a-z]{2,6}_[A-Za-z0-9_]{1,250}$`)

// LiftQueued is an accepted lifting of a revocation: the lift_revocation
// job that restores its payment's orders.
type LiftQueued struct {
	JobID             int64
	RevocationID      int64
	SourceID          string
	CheckoutSessionID string
	OrderRef          string
}

// LiftRevocation lifts the early fraud warning revocation sourceID
// (issfr_...) holding the order named by idOrRef: support decided that the
// payment stands (the issuer's warning was wrong, the buyer proved who they
// are). The revocation is recorded lifted and lift_revocation is queued in
// one transaction, the path a won dispute takes: the payment's orders are
// restored and their bans lifted with each key's current unban token,
// except a ban support made; an order another revocation holds stays
// revoked. A later copy of the warning's event revokes nothing.
//
// ENOTFOUND: no such order, or no such revocation of its payment;
// ECONFLICT: the revocation is a dispute's or a refund's (Stripe's outcome
// lifts those: a dispute won, a refund failed), or it is lifted already.
func (s *Support) LiftRevocation(ctx context.Context, actor, idOrRef, sourceID, reason string) (*LiftQueued, error) {
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	id, err := s.SessionOf(ctx, idOrRef)
	if err != nil {
		return nil, err
	}
	if !revocationSourcePattern.MatchString(sourceID) {
		return nil, order.Errorf(order.EINVALID, "give the revocation's source ID as `orders show` lists it (issfr_... for an early fraud warning)")
	}
	var q *LiftQueued
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		r, err := postgres.RevocationOf(ctx, tx, sourceID)
		if err != nil {
			return err
		}
		if r == nil || !revocationOfOrder(o, r) {
			return order.Errorf(order.ENOTFOUND, "no revocation %s of this order's payment", sourceID)
		}
		switch {
		case r.Source != order.SourceEarlyFraudWarning:
			return order.Errorf(order.ECONFLICT, "revocation %s is a %s's: Stripe's outcome lifts it (a dispute won, a refund failed), not support",
				sourceID, r.Source)
		case r.Status != order.RevocationActive:
			return order.Errorf(order.ECONFLICT, "revocation %s is lifted already", sourceID)
		}
		lifted, wasActive, err := postgres.LiftRevocation(ctx, tx, *r)
		if err != nil {
			return err
		}
		if !wasActive {
			return order.Errorf(order.ECONFLICT, "revocation %s is lifted already", sourceID)
		}
		res, err := s.River.InsertTx(ctx, tx, LiftRevocationArgs{RevocationID: lifted.ID}, nil)
		if err != nil {
			return fmt.Errorf("queueing the lifting of revocation %d: %w", lifted.ID, err)
		}
		q = &LiftQueued{JobID: res.Job.ID, RevocationID: lifted.ID, SourceID: sourceID,
			CheckoutSessionID: id, OrderRef: logging.OrderRef(id)}
		return auditOrder(ctx, tx, actor, ActionLiftRevocation, o, "", reason,
			map[string]any{"job_id": q.JobID, "revocation_id": lifted.ID, "source_id": sourceID})
	})
	if err != nil {
		return nil, err
	}
	s.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", ActionLiftRevocation, "order_ref", q.OrderRef,
		"source", order.SourceEarlyFraudWarning, "source_id", sourceID, "revocation_id", q.RevocationID, "job_id", q.JobID)
	return q, nil
}

// revocationOfOrder reports whether r is one of the revocations support
// sees on o (postgres.RevocationsOfOrder): of its payment or subscription,
// or the one that revoked it.
func revocationOfOrder(o *order.Order, r *order.Revocation) bool {
	return r.ID == o.RevocationID ||
		(o.PaymentIntentID != "" && r.PaymentIntentID == o.PaymentIntentID) ||
		(o.SubscriptionID != "" && r.SubscriptionID == o.SubscriptionID)
}

// LiftOutcome is how the lifting of a revocation ended.
type LiftOutcome struct {
	// State is the lift job's final state; Error why it did not complete.
	State rivertype.JobState
	Error string
	// Order is the named order once the unbans the lift queued for its
	// keys have finished.
	Order *order.Order
}

// WaitLift waits for the job of q to finish, then for the unbans it queued
// for the order's keys, and returns the outcome. ctx bounds the wait.
func (s *Support) WaitLift(ctx context.Context, q *LiftQueued) (*LiftOutcome, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	out := &LiftOutcome{}
	for {
		if out.State == "" {
			job, err := s.River.JobGet(ctx, q.JobID)
			if err != nil {
				return nil, fmt.Errorf("reading job %d of the %s: %w", q.JobID, ActionLiftRevocation, err)
			}
			if job.FinalizedAt != nil {
				out.State = job.State
				if job.State != rivertype.JobStateCompleted {
					if len(job.Errors) > 0 {
						out.Error = job.Errors[len(job.Errors)-1].Error
					}
					return out, nil
				}
			}
		}
		if out.State != "" {
			o, err := postgres.GetOrder(ctx, s.Pool, q.CheckoutSessionID)
			if err != nil {
				return nil, err
			}
			waiting, err := s.keyWritesInFlight(ctx, o)
			if err != nil {
				return nil, err
			}
			if !waiting {
				// Read again: the order read above may predate a
				// write that finished since.
				if out.Order, err = postgres.GetOrder(ctx, s.Pool, q.CheckoutSessionID); err != nil {
					return nil, err
				}
				return out, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the %s is queued (job %d) but its keys are not unbanned yet; is the service running? %w",
				ActionLiftRevocation, q.JobID, ctx.Err())
		case <-tick.C:
		}
	}
}

// keyWritesInFlight reports whether the writer of one of o's keys waits
// or runs.
func (s *Support) keyWritesInFlight(ctx context.Context, o *order.Order) (bool, error) {
	if len(o.Keys) == 0 {
		return false, nil
	}
	ids := make([]int64, len(o.Keys))
	for i, k := range o.Keys {
		ids[i] = k.ID
	}
	// The keys' writers apply what the lift restored.
	keys, err := postgres.LedgerKeysOfUnits(ctx, s.Pool, ids)
	if err != nil || len(keys) == 0 {
		return false, err
	}
	params := river.NewJobListParams().Kinds(SyncKeyArgs{}.Kind()).States(inFlight...).First(1).
		Where("(args->>'ledger_key_id')::bigint = ANY(@ledger_key_ids::bigint[])", river.NamedArgs{"ledger_key_ids": keys})
	res, err := s.River.JobList(ctx, params)
	if err != nil {
		return false, fmt.Errorf("listing the key writes of order %s: %w", logging.OrderRef(o.CheckoutSessionID), err)
	}
	return len(res.Jobs) > 0, nil
}
