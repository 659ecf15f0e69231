package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

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
		// has: its grant is the checkout's, recorded once.
		Extends: paidPeriod && inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCreate,
		Lines:   renewalLines(lines),
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockPayment(ctx, tx, inv.Subscription.ID); err != nil {
			return err
		}
		stored, err := postgres.RecordRenewal(ctx, tx, r)
		if err != nil {
			return err
		}
		if err := postgres.RecordRenewalLines(ctx, tx, id, r.Lines); err != nil {
			return err
		}
		// A payment may end a past_due state: lift suspended keys.
		if err := insertMany(ctx, tx, SyncSubscriptionArgs{SubscriptionID: stored.SubscriptionID}); err != nil {
			return err
		}
		granted, err := postgres.GrantRenewals(ctx, tx, stored.SubscriptionID)
		if err != nil {
			return err
		}
		// A refund of the first invoice handled before this renewal
		// revoked the order; the period paid now holds its keys.
		if err := postgres.RestoreRefundedOrders(ctx, tx, stored.SubscriptionID); err != nil {
			return err
		}
		w.Logger.InfoContext(ctx, "subscription renewed", "subscription_id", stored.SubscriptionID, "invoice_id", id,
			"billing_reason", stored.BillingReason, "expires_at", stored.ExpiresAt, "units", len(granted))
		for range granted {
			w.Metrics.KeyRenewed()
		}
		return syncUnits(ctx, tx, granted...)
	})
}

// renewalLines are the seats and periods an invoice paid for, per price:
// its subscription lines, prorations aside (they adjust a period already
// paid, and Stripe's next period accounts for them).
func renewalLines(lines []*stripe.InvoiceLineItem) []order.RenewalLine {
	var out []order.RenewalLine
	index := map[string]int{}
	for _, l := range lines {
		if l == nil || l.Period == nil || l.Proration || l.Type != stripe.InvoiceLineItemTypeSubscription || l.Price == nil {
			continue
		}
		if i, ok := index[l.Price.ID]; ok {
			out[i].Quantity += int(l.Quantity)
			out[i].Period.Start = min(out[i].Period.Start, l.Period.Start)
			out[i].Period.End = max(out[i].Period.End, l.Period.End)
			continue
		}
		index[l.Price.ID] = len(out)
		out = append(out, order.RenewalLine{PriceID: l.Price.ID, Quantity: int(l.Quantity),
			Period: order.Period{Start: l.Period.Start, End: l.Period.End}})
	}
	return out
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

// ExtendKeyWorker works ExtendKeyArgs, queued before renewals became
// grants of the entitlement ledger: the renewal's grants are recorded by
// renew_subscription, so this only hands the key to its writer.
type ExtendKeyWorker struct {
	river.WorkerDefaults[ExtendKeyArgs]
	Deps
}

func (w *ExtendKeyWorker) Work(ctx context.Context, job *river.Job[ExtendKeyArgs]) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return syncUnits(ctx, tx, job.Args.OrderKeyID)
	})
}
