package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
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
	pi, sub := r.PaymentIntentID, r.SubscriptionID
	if !r.Resolved && r.ChargeID != "" && sub == "" {
		// A subscription's payments belong to invoices, not to the
		// checkout: follow the charge to its invoice's subscription.
		ch, err := w.Stripe.Charge(ctx, r.ChargeID)
		if err != nil {
			return stripeFailure("charge "+r.ChargeID, err)
		}
		if pi == "" && ch.PaymentIntent != nil {
			pi = ch.PaymentIntent.ID
		}
		if ch.Invoice != nil && ch.Invoice.ID != "" {
			inv, err := w.Stripe.Invoice(ctx, ch.Invoice.ID)
			if err != nil {
				return stripeFailure("invoice "+ch.Invoice.ID, err)
			}
			if inv.Subscription != nil {
				sub = inv.Subscription.ID
			}
		}
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockPayment(ctx, tx, pi, sub); err != nil {
			return err
		}
		if err := postgres.ResolveRevocation(ctx, tx, r.ID, pi, sub); err != nil {
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
		var args []river.JobArgs
		for _, id := range orders {
			if _, err := postgres.LockOrder(ctx, tx, id); err != nil {
				return err
			}
			if err := postgres.RevokeOrder(ctx, tx, id, r.ID); err != nil {
				return err
			}
			keys, err := postgres.KeysWithStatus(ctx, tx, id, order.KeyActive)
			if err != nil {
				return err
			}
			for _, k := range keys {
				args = append(args, RevokeKeyArgs{OrderKeyID: k.ID, RevocationID: r.ID})
			}
		}
		// Only a subscription that bought keys here: the shop may sell
		// others through the same Stripe account.
		if len(orders) > 0 && cancelsSubscription(w.Policy, current) {
			queued, err := postgres.RequestSubscriptionCancellation(ctx, tx, current.SubscriptionID, r.ID)
			if err != nil {
				return err
			}
			if queued {
				args = append(args, CancelSubscriptionArgs{SubscriptionID: current.SubscriptionID})
			}
		}
		w.Logger.InfoContext(ctx, "payment taken back; revoking its keys", "source", r.Source, "source_id", r.SourceID,
			"action", r.Action, "orders", len(orders), "keys", len(args))
		return insertMany(ctx, tx, args...)
	})
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

// RevokeKeyWorker works RevokeKeyArgs.
type RevokeKeyWorker struct {
	river.WorkerDefaults[RevokeKeyArgs]
	Deps
}

func (w *RevokeKeyWorker) Timeout(*river.Job[RevokeKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *RevokeKeyWorker) Work(ctx context.Context, job *river.Job[RevokeKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRevoke)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	r, err := postgres.GetRevocation(ctx, w.Pool, job.Args.RevocationID)
	if err != nil {
		return err
	}
	if r.Status != order.RevocationActive || !k.Delivered() || k.Status != order.KeyActive {
		return nil // lifted meanwhile, or already revoked
	}
	if r.Action != order.ActionBlacklist && r.Action != order.ActionDelete {
		return nil
	}
	// A key other purchases still hold loses only this payment's days; the
	// last payment holding it takes the key with it. An inquiry only
	// suspends: the key that purchase made is banned until it closes, and
	// then unbanned with all its days, rather than losing them for good.
	if !r.Inquiry || k.ExtendedExisting {
		if kept, err := w.takeBackDays(ctx, job, k); kept || err != nil {
			return err
		}
	}
	status, err := banKey(ctx, w.Luarmor, k, r.Action, r.Reason)
	if err != nil {
		jobErr, retry := luarmorRetry(err, w.RateLimitWindow)
		if !retry {
			w.Logger.ErrorContext(ctx, "luarmor refused to revoke a key; revoke it in the dashboard", "order_key_id", k.ID, "error", err)
		}
		return jobErr
	}
	w.Logger.InfoContext(ctx, "key revoked", "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey), "status", status, "reason", r.Reason)
	err = complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if _, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID); err != nil {
			return err
		}
		if err := postgres.SetKeyStatus(ctx, tx, k.ID, status); err != nil {
			return err
		}
		// A dispute won (an inquiry closed, a refund failed) while the ban
		// was being sent: lift it again.
		current, err := postgres.GetRevocation(ctx, tx, r.ID)
		if err != nil {
			return err
		}
		if current.Status == order.RevocationLifted && status == order.KeyBlacklisted && unbansOnLift(w.Policy, current) {
			return insertMany(ctx, tx, UnbanKeyArgs{OrderKeyID: k.ID})
		}
		return nil
	})
	if err == nil {
		// Counted once: the job completed in that commit, and a rerun
		// finds the key no longer active.
		w.Metrics.KeyRevoked(string(r.Action))
	}
	return err
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
		var args []river.JobArgs
		for _, id := range orders {
			if err := postgres.RestoreOrder(ctx, tx, id); err != nil {
				return err
			}
			keys, err := postgres.KeysWithStatus(ctx, tx, id, order.KeyBlacklisted)
			if err != nil {
				return err
			}
			for _, k := range keys {
				args = append(args, UnbanKeyArgs{OrderKeyID: k.ID})
			}
			// Keys the revocation kept from being made are made now.
			o, err := postgres.GetOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			if o.Status == order.StatusRevoked {
				continue // another revocation (a refund) still holds it
			}
			if err := postgres.ForgetRevertTargets(ctx, tx, id); err != nil {
				return err
			}
			if !o.ItemsLoaded && order.Fulfillable(o.SessionStatus, o.PaymentStatus) {
				args = append(args, FulfilOrderArgs{CheckoutSessionID: id})
			}
			if err := queueUnits(ctx, tx, o); err != nil {
				return err
			}
		}
		w.Logger.InfoContext(ctx, "revocation lifted; restoring its orders", "source", r.Source, "source_id", r.SourceID,
			"orders", len(orders), "keys", len(args))
		return insertMany(ctx, tx, args...)
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

// UnbanKeyWorker works UnbanKeyArgs. Luarmor issues a new unban token on
// every blacklist, so the current one is read just before unbanning.
type UnbanKeyWorker struct {
	river.WorkerDefaults[UnbanKeyArgs]
	Deps
}

func (w *UnbanKeyWorker) Timeout(*river.Job[UnbanKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *UnbanKeyWorker) Work(ctx context.Context, job *river.Job[UnbanKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRevoke)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	o, err := postgres.GetOrder(ctx, w.Pool, k.CheckoutSessionID)
	if err != nil {
		return err
	}
	if k.Status != order.KeyBlacklisted || o.Status == order.StatusRevoked {
		return nil // not banned, or another revocation (a refund) still holds it
	}
	if k.SupportBan {
		w.Logger.InfoContext(ctx, "key ban kept: support banned it; only support's unban lifts it",
			"order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
		return nil
	}
	status, err := liftBan(ctx, w.Luarmor, k)
	if err != nil {
		jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
		return jobErr
	}
	w.Logger.InfoContext(ctx, "key ban lifted", "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if _, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID); err != nil {
			return err
		}
		if err := postgres.SetKeyStatus(ctx, tx, k.ID, status); err != nil {
			return err
		}
		// Support banned the key (or retired it for a reissue) after it was
		// read above: its ban found the key banned and sent nothing, and
		// the unban just lifted it. Support's ban is sent again.
		current, err := postgres.GetKey(ctx, tx, k.ID)
		if err != nil {
			return err
		}
		if current.SupportBan && status == order.KeyActive {
			w.Logger.WarnContext(ctx, "support banned the key while its ban was being lifted; banning it again",
				"order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
			if err := insertMany(ctx, tx, SupportKeyArgs{Action: ActionBlacklistKey, OrderKeyID: k.ID, Actor: supportBanAgain}); err != nil {
				return err
			}
		}
		return postgres.RestoreOrder(ctx, tx, k.CheckoutSessionID)
	})
}

// supportBanAgain names, in the log, the support ban an automatic unban
// sends again after lifting it by mistake.
const supportBanAgain = "unban_key"

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

// liftBan unbans a key with its current unban token, read just before:
// Luarmor issues a new one on every blacklist. It returns the key's status
// afterwards: active, or deleted when Luarmor no longer has it. A key that
// is not banned (a repeat) costs the read only.
func liftBan(ctx context.Context, l Luarmor, k *order.Key) (order.KeyStatus, error) {
	u, err := l.GetUser(ctx, k.ProjectID, k.UserKey)
	switch {
	case errors.Is(err, luarmor.ErrNotFound):
		return order.KeyDeleted, nil
	case err != nil:
		return "", err
	case u.IsBanned():
		if err := l.Unban(ctx, k.ProjectID, u.UnbanToken); err != nil {
			return "", err
		}
	}
	return order.KeyActive, nil
}
