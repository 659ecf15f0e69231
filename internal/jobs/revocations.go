package jobs

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// ---- Revocations -------------------------------------------------------------

// ResolveRevocationArgs traces a disputed or refunded payment to its orders
// and revokes their keys.
type ResolveRevocationArgs struct {
	RevocationID int64 `json:"revocation_id"`
}

func (ResolveRevocationArgs) Kind() string { return "resolve_revocation" }

func (ResolveRevocationArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, Priority: 1, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// ResolveRevocationWorker works ResolveRevocationArgs.
type ResolveRevocationWorker struct {
	river.WorkerDefaults[ResolveRevocationArgs]
	Deps
}

func (w *ResolveRevocationWorker) Work(ctx context.Context, job *river.Job[ResolveRevocationArgs]) error {
	r, err := postgres.GetRevocation(ctx, w.Pool, job.Args.RevocationID)
	if err != nil {
		return err
	}
	if r.Status != order.RevocationActive {
		return nil
	}
	pi, sub, invoice := r.PaymentIntentID, r.SubscriptionID, r.InvoiceID
	if !r.Resolved && r.ChargeID != "" && (sub == "" || invoice == "") {
		// A subscription's payments belong to invoices, not to the
		// checkout: follow the charge to its invoice and subscription.
		ch, err := w.Stripe.Charge(ctx, r.ChargeID)
		if err != nil {
			return stripeFailure("charge "+r.ChargeID, err)
		}
		if pi == "" && ch.PaymentIntent != nil {
			pi = ch.PaymentIntent.ID
		}
		if ch.Invoice != nil && ch.Invoice.ID != "" {
			invoice = ch.Invoice.ID
			inv, err := w.Stripe.Invoice(ctx, ch.Invoice.ID)
			if err != nil {
				return stripeFailure("invoice "+ch.Invoice.ID, err)
			}
			if inv.Subscription != nil {
				sub = inv.Subscription.ID
			} else {
				invoice = ""
			}
		}
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockPayment(ctx, tx, pi, sub); err != nil {
			return err
		}
		if err := postgres.ResolveRevocation(ctx, tx, r.ID, pi, sub, invoice); err != nil {
			return err
		}
		current, err := postgres.GetRevocation(ctx, tx, r.ID)
		if err != nil || current.Status != order.RevocationActive || current.Action == order.ActionNone {
			return err
		}
		orders, err := postgres.OrdersOfPayment(ctx, tx, pi, sub)
		if err != nil {
			return err
		}
		state, action := grantState(current)
		var changed []int64
		periodOnly := false
		for _, id := range orders {
			o, err := postgres.LockOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			// A subscription's charge paid one period: only that
			// period's grants are taken. A refund of one period leaves
			// the order and the subscription standing while another
			// payment holds its keys: always for a renewal's, and for
			// the first invoice's once a renewal was paid.
			only := ""
			if o.SubscriptionID != "" && current.InvoiceID != "" {
				only = current.InvoiceID
			}
			units, err := postgres.UnitsOfOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			took, err := postgres.RevokeGrants(ctx, tx, units, current, state, action, only)
			if err != nil {
				return err
			}
			changed = append(changed, took...)
			periodRefund := only != "" && current.Source == order.SourceRefund
			held := periodRefund && only != o.InvoiceID
			if periodRefund && !held {
				if held, err = postgres.OrderPaidOtherwise(ctx, tx, id, only); err != nil {
					return err
				}
			}
			periodOnly = periodOnly || held
			if !held {
				if err := postgres.RevokeOrder(ctx, tx, id, r.ID); err != nil {
					return err
				}
				if err := queueRevokedEmail(ctx, tx, w.Deps, o, current); err != nil {
					return err
				}
				if err := eventKeysRevoked(ctx, tx, w.Deps, o, current); err != nil {
					return err
				}
			}
		}
		var args []river.JobArgs
		// Only a subscription that bought keys here: the shop may sell
		// others through the same Stripe account.
		if len(orders) > 0 && !periodOnly && cancelsSubscription(w.Policy, current) {
			queued, err := postgres.RequestSubscriptionCancellation(ctx, tx, current.SubscriptionID, r.ID)
			if err != nil {
				return err
			}
			if queued {
				args = append(args, CancelSubscriptionArgs{SubscriptionID: current.SubscriptionID})
			}
		}
		w.Logger.InfoContext(ctx, "payment taken back; its grants are revoked", "source", r.Source, "source_id", r.SourceID,
			"action", r.Action, "state", state, "orders", len(orders), "units", len(changed), "period_only", periodOnly)
		if err := insertMany(ctx, tx, args...); err != nil {
			return err
		}
		return syncUnitsUrgently(ctx, tx, changed...)
	})
}

// grantState is what a revocation does to the grants of its payment: a
// refund takes their time back (the key left with nothing gets
// REFUND_ACTION); an inquiry suspends them; a chargeback or a fraud
// warning acted on bans the key, the policy's answer to fraud.
func grantState(r *order.Revocation) (entitlement.State, entitlement.Action) {
	switch {
	case r.Inquiry:
		return entitlement.Suspended, ""
	case r.Source == order.SourceRefund || r.Action == order.ActionDelete:
		return entitlement.Revoked, entitlement.Action(r.Action)
	}
	return entitlement.Banned, ""
}

// RevokeKeyArgs blacklists or deletes one key for a revocation.
type RevokeKeyArgs struct {
	OrderKeyID   int64 `json:"order_key_id"`
	RevocationID int64 `json:"revocation_id"`
}

func (RevokeKeyArgs) Kind() string { return "revoke_key" }

func (RevokeKeyArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRevoke, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// RevokeKeyWorker works RevokeKeyArgs, queued before revocations became
// grant states of the entitlement ledger: it takes the unit's grants for
// the revocation and hands the key to its writer.
type RevokeKeyWorker struct {
	river.WorkerDefaults[RevokeKeyArgs]
	Deps
}

func (w *RevokeKeyWorker) Work(ctx context.Context, job *river.Job[RevokeKeyArgs]) error {
	r, err := postgres.GetRevocation(ctx, w.Pool, job.Args.RevocationID)
	if err != nil {
		return err
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if r.Status != order.RevocationActive || r.Action == order.ActionNone {
			return syncUnitsUrgently(ctx, tx, job.Args.OrderKeyID)
		}
		state, action := grantState(r)
		if _, err := postgres.RevokeGrants(ctx, tx, []int64{job.Args.OrderKeyID}, r, state, action, r.InvoiceID); err != nil {
			return err
		}
		return syncUnitsUrgently(ctx, tx, job.Args.OrderKeyID)
	})
}

// LiftRevocationArgs restores the orders of a dispute the shop won, of an
// inquiry that closed, of a refund that failed, or of a fraud warning
// support lifted.
type LiftRevocationArgs struct {
	RevocationID int64 `json:"revocation_id"`
}

func (LiftRevocationArgs) Kind() string { return "lift_revocation" }

func (LiftRevocationArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, Priority: 1, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// LiftRevocationWorker works LiftRevocationArgs.
type LiftRevocationWorker struct {
	river.WorkerDefaults[LiftRevocationArgs]
	Deps
}

func (w *LiftRevocationWorker) Work(ctx context.Context, job *river.Job[LiftRevocationArgs]) error {
	r, err := postgres.GetRevocation(ctx, w.Pool, job.Args.RevocationID)
	if err != nil {
		return err
	}
	if r.Status != order.RevocationLifted {
		return nil // held again since: an inquiry became a chargeback
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockPayment(ctx, tx, r.PaymentIntentID, r.SubscriptionID); err != nil {
			return err
		}
		orders, err := postgres.OrdersOfPayment(ctx, tx, r.PaymentIntentID, r.SubscriptionID)
		if err != nil {
			return err
		}
		// The grants the revocation took stand again (a won dispute's
		// bans stay under DISPUTE_WON_ACTION=keep).
		restored, err := postgres.RestoreGrants(ctx, tx, r.ID, !unbansOnLift(w.Policy, r))
		if err != nil {
			return err
		}
		var args []river.JobArgs
		for _, id := range orders {
			if err := postgres.RestoreOrder(ctx, tx, id); err != nil {
				return err
			}
			// Keys the revocation kept from being made are made now.
			o, err := postgres.GetOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			if o.Status == order.StatusRevoked {
				continue // another revocation (a refund) still holds it
			}
			if !o.ItemsLoaded && order.Fulfillable(o.SessionStatus, o.PaymentStatus) {
				args = append(args, fulfilOrder(o))
			}
			if err := queueUnits(ctx, tx, o); err != nil {
				return err
			}
		}
		w.Logger.InfoContext(ctx, "revocation lifted; restoring its orders", "source", r.Source, "source_id", r.SourceID,
			"orders", len(orders), "units", len(restored))
		if err := insertMany(ctx, tx, args...); err != nil {
			return err
		}
		return syncUnitsUrgently(ctx, tx, restored...)
	})
}

// UnbanKeyArgs lifts the ban of one key.
type UnbanKeyArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
}

func (UnbanKeyArgs) Kind() string { return "unban_key" }

func (UnbanKeyArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRevoke, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// UnbanKeyWorker works UnbanKeyArgs, queued before bans became grant
// states of the entitlement ledger: it hands the key to its writer, which
// lifts the ban if nothing in the ledger holds it any more.
type UnbanKeyWorker struct {
	river.WorkerDefaults[UnbanKeyArgs]
	Deps
}

func (w *UnbanKeyWorker) Work(ctx context.Context, job *river.Job[UnbanKeyArgs]) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return syncUnitsUrgently(ctx, tx, job.Args.OrderKeyID)
	})
}

// banKey blacklists a key for good (with reason shown to its user) or
// deletes it, as action says, and returns the key's status afterwards. A
// key Luarmor no longer has counts as deleted: nothing is left to use.
func banKey(ctx context.Context, l Luarmor, k *order.Key, action order.Action, reason string) (order.KeyStatus, error) {
	status := order.KeyBlacklisted
	var err error
	if action == order.ActionDelete {
		status = order.KeyDeleted
		err = l.DeleteUser(ctx, k.ProjectID, k.UserKey)
	} else {
		never := luarmor.NeverExpires
		err = l.Blacklist(ctx, k.ProjectID, luarmor.BlacklistRequest{UserKey: k.UserKey, BanReason: reason, BanExpire: &never})
	}
	if errors.Is(err, luarmor.ErrNotFound) {
		return order.KeyDeleted, nil
	}
	if err != nil {
		return "", err
	}
	return status, nil
}
