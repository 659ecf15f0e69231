package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// RenewSubscriptionArgs applies a paid subscription invoice: it records the
// new paid-through time and extends the subscription's keys.
type RenewSubscriptionArgs struct {
	InvoiceID string `json:"invoice_id"`
}

func (RenewSubscriptionArgs) Kind() string { return "renew_subscription" }

func (RenewSubscriptionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// RenewSubscriptionWorker works RenewSubscriptionArgs.
type RenewSubscriptionWorker struct {
	river.WorkerDefaults[RenewSubscriptionArgs]
	Deps
}

func (w *RenewSubscriptionWorker) Work(ctx context.Context, job *river.Job[RenewSubscriptionArgs]) error {
	id := job.Args.InvoiceID
	inv, err := w.Stripe.Invoice(ctx, id)
	if err != nil {
		return stripeFailure("invoice "+id, err)
	}
	if inv.Subscription == nil || inv.Subscription.ID == "" {
		return nil // a one-off invoice: nothing to renew
	}
	lines := []*stripe.InvoiceLineItem{}
	if inv.Lines != nil {
		lines = inv.Lines.Data
		if inv.Lines.HasMore {
			// The event and the invoice carry only the first page.
			if lines, err = w.Stripe.InvoiceLines(ctx, id); err != nil {
				return stripeFailure("lines of invoice "+id, err)
			}
		}
	}
	periodEnd, paidPeriod := paidPeriodEnd(lines)
	if periodEnd == 0 {
		w.Logger.WarnContext(ctx, "paid invoice has no service period; nothing to renew", "invoice_id", id)
		return nil
	}
	r := order.Renewal{
		InvoiceID:      id,
		SubscriptionID: inv.Subscription.ID,
		BillingReason:  string(inv.BillingReason),
		PeriodEnd:      periodEnd,
		ExpiresAt:      periodEnd + int64(w.Policy.RenewalGrace/time.Second),
		// The checkout's own invoice pays the period the new key already
		// has from key_days: extending on it would count that period twice.
		Extends: paidPeriod && inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCreate,
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		stored, err := postgres.RecordRenewal(ctx, tx, r)
		if err != nil {
			return err
		}
		// A payment may end a past_due state: lift suspended keys.
		if err := insertMany(ctx, tx, SyncSubscriptionArgs{SubscriptionID: stored.SubscriptionID}); err != nil {
			return err
		}
		if !stored.Extends {
			return nil
		}
		ids, err := postgres.ActiveKeysOfSubscription(ctx, tx, stored.SubscriptionID)
		if err != nil {
			return err
		}
		args := make([]river.JobArgs, len(ids))
		for i, keyID := range ids {
			args[i] = ExtendKeyArgs{OrderKeyID: keyID, InvoiceID: stored.InvoiceID}
		}
		w.Logger.InfoContext(ctx, "subscription renewed", "subscription_id", stored.SubscriptionID, "invoice_id", id,
			"billing_reason", stored.BillingReason, "expires_at", stored.ExpiresAt, "keys", len(ids))
		return insertMany(ctx, tx, args...)
	})
}

// paidPeriodEnd returns the end of the service period an invoice pays: the
// latest period.end of its subscription lines, prorations aside (they adjust
// a period already paid). paid is false when only other lines had periods.
func paidPeriodEnd(lines []*stripe.InvoiceLineItem) (end int64, paid bool) {
	var other int64
	for _, l := range lines {
		if l == nil || l.Period == nil || l.Proration {
			continue
		}
		if l.Type == stripe.InvoiceLineItemTypeSubscription {
			end = max(end, l.Period.End)
		} else {
			other = max(other, l.Period.End)
		}
	}
	if end > 0 {
		return end, true
	}
	return other, false
}

// ExtendKeyArgs applies one renewal to one key.
type ExtendKeyArgs struct {
	OrderKeyID int64  `json:"order_key_id"`
	InvoiceID  string `json:"invoice_id"`
}

func (ExtendKeyArgs) Kind() string { return "extend_key" }

func (ExtendKeyArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRenew, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// ExtendKeyWorker works ExtendKeyArgs. It reads the key and, if the
// renewal's absolute expiry gives more time, sets it: at most two Luarmor
// calls, and a repeat changes nothing.
type ExtendKeyWorker struct {
	river.WorkerDefaults[ExtendKeyArgs]
	Deps
}

func (w *ExtendKeyWorker) Timeout(*river.Job[ExtendKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *ExtendKeyWorker) Work(ctx context.Context, job *river.Job[ExtendKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRenew)
	applied, err := postgres.KeyRenewalApplied(ctx, w.Pool, job.Args.OrderKeyID, job.Args.InvoiceID)
	if err != nil || applied {
		return err
	}
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	if !k.Delivered() {
		return completeBeforeDelivery(ctx, w.Deps, job, k)
	}
	if k.Status != order.KeyActive {
		return nil // the key was revoked
	}
	r, err := postgres.GetRenewal(ctx, w.Pool, job.Args.InvoiceID)
	if err != nil {
		return err
	}
	if k.AuthExpire != nil && *k.AuthExpire == luarmor.NeverExpires && !k.ExtendedExisting {
		// A lifetime key stays lifetime; no call needed.
		return w.recordRenewal(ctx, job, k.ID, r.InvoiceID, luarmor.NeverExpires, false)
	}
	u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
	if err != nil {
		if errors.Is(err, luarmor.ErrNotFound) {
			w.Logger.WarnContext(ctx, "renewed key no longer exists in Luarmor", "order_key_id", k.ID)
			return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
				return postgres.SetKeyStatus(ctx, tx, k.ID, order.KeyDeleted)
			})
		}
		jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
		return jobErr
	}
	target, change := renewalExpiry(*u, r.ExpiresAt, w.Now())
	if change {
		err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, AuthExpire: &target})
		if err != nil {
			jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
			return jobErr
		}
	}
	w.Logger.InfoContext(ctx, "renewal applied", "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey),
		"invoice_id", r.InvoiceID, "auth_expire", target, "changed", change)
	return w.recordRenewal(ctx, job, k.ID, r.InvoiceID, target, change)
}

// recordRenewal records the renewal applied to a key and completes the job
// in one commit, so it is counted once: a rerun finds it applied.
func (w *ExtendKeyWorker) recordRenewal(ctx context.Context, job *river.Job[ExtendKeyArgs], keyID int64, invoiceID string, target int64, changed bool) error {
	err := complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return postgres.RecordKeyRenewal(ctx, tx, keyID, invoiceID, target, changed)
	})
	if err == nil {
		w.Metrics.KeyRenewed()
	}
	return err
}

// renewalExpiry decides what a renewal does to a key as Luarmor has it:
// never shorten, lifetime stays lifetime, and a key whose key_days timer
// has not started keeps waiting unless the paid period outlasts what its
// first use would give.
func renewalExpiry(u luarmor.User, expiresAt int64, now time.Time) (int64, bool) {
	switch {
	case u.AuthExpire == luarmor.NeverExpires && u.KeyDays == 0:
		return luarmor.NeverExpires, false
	case u.AuthExpire == luarmor.NeverExpires:
		if expiresAt > now.Unix()+int64(u.KeyDays)*86400 {
			return expiresAt, true
		}
		return u.AuthExpire, false
	case u.AuthExpire >= expiresAt:
		return u.AuthExpire, false
	}
	return expiresAt, true
}
