package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// SuspendBanReason is shown to the user of a key suspended while its
// subscription's renewal is unpaid (PAST_DUE_ACTION=suspend).
const SuspendBanReason = "Subscription payment past due"

// paidPeriod is what a new subscription's checkout paid for: the trial, or
// the first period.
type paidPeriod struct {
	status    string
	start     int64 // unix seconds
	end       int64 // unix seconds
	expiresAt int64 // end + RENEWAL_GRACE: the keys' absolute expiry
}

// firstPeriod reads what a subscription's checkout paid for: the trial
// while trialing, else the current period.
func (d Deps) firstPeriod(sub *stripe.Subscription) *paidPeriod {
	start, end := sub.CurrentPeriodStart, sub.CurrentPeriodEnd
	if sub.Status == stripe.SubscriptionStatusTrialing && sub.TrialEnd > 0 {
		start, end = sub.TrialStart, sub.TrialEnd
	}
	if start == 0 || start > end {
		start = sub.StartDate
	}
	return &paidPeriod{status: string(sub.Status), start: start, end: end, expiresAt: end + d.graceSeconds()}
}

func (d Deps) graceSeconds() int64 { return int64(d.policy().RenewalGrace / time.Second) }

// policy is the configured policy, or the default when none is.
func (d Deps) policy() order.Policy {
	if d.Policy == (order.Policy{}) {
		return order.DefaultPolicy()
	}
	return d.Policy
}

// subscriptionChanged queues the reconciliation of a subscription with
// Stripe's current state (customer.subscription.updated and .deleted). It
// decides from the subscription read back, never from the event's
// previous_attributes, so repeated and out-of-order events agree.
func subscriptionChanged(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	sub, err := decodeObject[stripe.Subscription](event, "a subscription")
	if err != nil {
		return err
	}
	if sub.ID == "" {
		return &badObjectError{fmt.Sprintf("event %s: subscription without an id", event.ID)}
	}
	return insertMany(ctx, tx, SyncSubscriptionArgs{SubscriptionID: sub.ID})
}

// SyncSubscriptionArgs reconciles a subscription's keys with what Stripe
// says the subscription holds now.
type SyncSubscriptionArgs struct {
	SubscriptionID string `json:"subscription_id"`
}

func (SyncSubscriptionArgs) Kind() string { return "sync_subscription" }

func (SyncSubscriptionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// SyncSubscriptionWorker works SyncSubscriptionArgs: it reads the
// subscription from Stripe and, in one commit with the job's completion,
// adds units for added seats and prices, ends units of removed ones, ends
// every unit of an ended subscription, keeps a subscription whose renewal
// is being paid alive (or suspends it), and queues the Luarmor changes.
type SyncSubscriptionWorker struct {
	river.WorkerDefaults[SyncSubscriptionArgs]
	Deps
}

// terminal statuses: Stripe gave up on the subscription.
var terminal = map[stripe.SubscriptionStatus]bool{
	stripe.SubscriptionStatusCanceled:          true,
	stripe.SubscriptionStatusUnpaid:            true,
	stripe.SubscriptionStatusIncompleteExpired: true,
}

func (w *SyncSubscriptionWorker) Work(ctx context.Context, job *river.Job[SyncSubscriptionArgs]) error {
	id := job.Args.SubscriptionID
	sub, err := w.Stripe.Subscription(ctx, id)
	if err != nil {
		return stripeFailure("subscription "+id, err)
	}
	now, grace := w.Now().Unix(), w.graceSeconds()
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockPayment(ctx, tx, id); err != nil {
			return err
		}
		// Cancelled in the portal or the dashboard, Stripe keeps the
		// subscription active until the period's end: its keys run until
		// then, renewed no more, and the buyer is told so.
		if err := postgres.RecordSubscriptionCancellation(ctx, tx, id, cancelling(sub)); err != nil {
			return err
		}
		o, err := postgres.SubscriptionOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		if o == nil {
			// No order yet: fulfilment reads the subscription itself.
			return postgres.RecordSubscriptionState(ctx, tx, id, string(sub.Status), 0)
		}
		if err := postgres.RecordSubscriptionState(ctx, tx, id, string(sub.Status), 0); err != nil {
			return err
		}
		paidThrough, err := postgres.SubscriptionPaidThrough(ctx, tx, id)
		if err != nil {
			return err
		}
		paidEnd := paidThrough + grace
		var changed []int64
		if terminal[sub.Status] {
			// Stripe gave up: what was paid stands, the access kept while
			// it collected ends. A cancelled subscription's units leave it;
			// an unpaid one's stay, so a reactivation's payment extends the
			// same keys.
			if changed, err = postgres.EndCollecting(ctx, tx, id); err != nil {
				return err
			}
			if sub.Status != stripe.SubscriptionStatusUnpaid {
				ended, err := postgres.EndSubscriptionKeys(ctx, tx, id, paidEnd, paidEnd)
				if err != nil {
					return err
				}
				changed = append(changed, ended...)
			}
		} else {
			if changed, err = w.reconcileItems(ctx, tx, o, sub, paidEnd); err != nil {
				return err
			}
			more, err := w.renewalPending(ctx, tx, sub, paidThrough, now)
			if err != nil {
				return err
			}
			changed = append(changed, more...)
		}
		if err := emailCancellation(ctx, tx, w.Deps, o, sub); err != nil {
			return err
		}
		if sub.Status == stripe.SubscriptionStatusCanceled {
			if err := eventSubscriptionEnded(ctx, tx, w.Deps, o, id); err != nil {
				return err
			}
		}
		w.Logger.InfoContext(ctx, "subscription reconciled", "subscription_id", id, "status", sub.Status,
			"paid_through", paidThrough, "keys_changed", len(changed))
		return syncUnits(ctx, tx, changed...)
	})
}

// reconcileItems matches the subscription's current units with its items.
// A unit of a price the subscription no longer holds moves to a new price
// of the same Luarmor project (a plan change: the buyer keeps the key, its
// HWID and Discord link, and the new price's paid periods extend it).
// Missing units of a price are added to the checkout's order with the
// period its other units were paid for, and queued through the order's
// fair queue; surplus ones (newest first) and those of prices no longer
// held leave the subscription: they keep what was paid before the change
// and are renewed no more. It returns the units whose grants changed.
func (w *SyncSubscriptionWorker) reconcileItems(ctx context.Context, tx pgx.Tx, o *order.Order, sub *stripe.Subscription, paidEnd int64) ([]int64, error) {
	units, err := postgres.RecurringUnits(ctx, tx, sub.ID)
	if err != nil {
		return nil, err
	}
	byPrice := map[string][]order.Key{}
	for _, u := range units {
		byPrice[u.PriceID] = append(byPrice[u.PriceID], u)
	}
	// The expiry new units get: what the subscription's keys have now.
	target := paidEnd
	for _, u := range units {
		if u.ExpireTarget != nil {
			target = max(target, *u.ExpireTarget)
		}
	}
	var items []*stripe.SubscriptionItem
	wanted := map[string]bool{}
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it != nil && it.Price != nil {
				items = append(items, it)
				wanted[it.Price.ID] = true
			}
		}
	}
	// Units of prices the subscription no longer holds, per project,
	// oldest first: the candidates of a plan change.
	leaving := map[string][]order.Key{}
	for _, u := range units {
		if !wanted[u.PriceID] {
			leaving[u.ProjectID] = append(leaving[u.ProjectID], u)
		}
	}
	var surplus, changed []int64
	added, moved := 0, 0
	for _, it := range items {
		price := it.Price.ID
		have := byPrice[price]
		n := int(it.Quantity) - len(have)
		if n < 0 {
			for i := len(have) - 1; i >= len(have)+n; i-- {
				surplus = append(surplus, have[i].ID)
			}
			continue
		}
		if n == 0 {
			continue
		}
		product, ok := w.Catalog.Lookup(price)
		if !ok {
			// The keys delivered keep what was paid; the new price's key
			// waits for the operator, visibly (failed orders, metrics).
			f := unknownPrices([]string{price})
			w.Logger.ErrorContext(ctx, "subscription holds a price that is not in the catalog; add it to CATALOG_FILE and retry the order",
				"subscription_id", sub.ID, "price_id", price)
			if err := postgres.FailSubscriptionChange(ctx, tx, o.CheckoutSessionID, f.code, f.reason); err != nil {
				return nil, err
			}
			if err := eventOrderFailed(ctx, tx, w.Deps, o.CheckoutSessionID); err != nil {
				return nil, err
			}
			continue
		}
		for n > 0 && len(leaving[product.ProjectID]) > 0 {
			u := leaving[product.ProjectID][0]
			leaving[product.ProjectID] = leaving[product.ProjectID][1:]
			if err := postgres.MoveUnitToPrice(ctx, tx, u.ID, price, product.KeyDays); err != nil {
				return nil, err
			}
			changed = append(changed, u.ID)
			n--
			moved++
		}
		if n == 0 {
			continue
		}
		if n+len(units) > w.maxUnits() {
			w.Logger.ErrorContext(ctx, "subscription holds more units than MAX_UNITS_PER_ORDER; no keys added",
				"subscription_id", sub.ID, "price_id", price, "quantity", it.Quantity)
			continue
		}
		t := target
		err := postgres.AddSubscriptionUnits(ctx, tx, o.CheckoutSessionID, order.Line{
			LineItemID: it.ID, PriceID: price, ProjectID: product.ProjectID, KeyDays: product.KeyDays, ExpireTarget: &t,
		}, n)
		if err != nil {
			return nil, err
		}
		period := order.Period{Start: w.Now().Unix(), End: paidEnd - w.graceSeconds()}
		if err := postgres.GrantSeat(ctx, tx, o.CheckoutSessionID, it.ID, period, sub.ID); err != nil {
			return nil, err
		}
		added += n
	}
	for _, us := range leaving {
		for _, u := range us {
			surplus = append(surplus, u.ID)
		}
	}
	if len(surplus) > 0 {
		ended, err := postgres.EndUnits(ctx, tx, surplus, paidEnd)
		if err != nil {
			return nil, err
		}
		changed = append(changed, ended...)
	}
	// Periods already paid for the units' new prices (an invoice that
	// arrived before this change).
	granted, err := postgres.GrantRenewals(ctx, tx, sub.ID)
	if err != nil {
		return nil, err
	}
	changed = append(changed, granted...)
	if added > 0 {
		o, err = postgres.LockOrder(ctx, tx, o.CheckoutSessionID)
		if err != nil {
			return nil, err
		}
		if err := queueUnits(ctx, tx, o); err != nil {
			return nil, err
		}
	}
	if added > 0 || moved > 0 || len(surplus) > 0 {
		w.Logger.InfoContext(ctx, "subscription items changed", "subscription_id", sub.ID, "units_added", added,
			"units_moved_to_a_new_price", moved, "units_ending", len(surplus))
	}
	return changed, nil
}

func (w *SyncSubscriptionWorker) maxUnits() int {
	if w.MaxUnitsPerOrder > 0 {
		return w.MaxUnitsPerOrder
	}
	return DefaultMaxUnitsPerOrder
}

// renewalPending applies PAST_DUE_ACTION to a subscription whose latest
// period is not paid yet while Stripe still collects it (a SEPA or ACH
// payment processing, card retries while past_due): keep grants its keys
// access until now, at most PAST_DUE_KEEP_FOR past the paid period, so
// slow payment methods never lapse; suspend blacklists them while
// past_due. Once paid, suspended keys are lifted. A subscription whose
// collection the shop paused (pause_collection) keeps access without
// paying, as Stripe describes it, and is never suspended for it.
func (w *SyncSubscriptionWorker) renewalPending(ctx context.Context, tx pgx.Tx, sub *stripe.Subscription, paidThrough, now int64) ([]int64, error) {
	paused := sub.PauseCollection != nil && sub.PauseCollection.Behavior != ""
	collecting := sub.Status == stripe.SubscriptionStatusPastDue ||
		(sub.Status == stripe.SubscriptionStatusActive && paidThrough > 0 && paidThrough < now)
	suspend := w.policy().SuspendWhenPastDue && sub.Status == stripe.SubscriptionStatusPastDue && !paused
	changed, err := postgres.SuspendSubscription(ctx, tx, sub.ID, suspend)
	if err != nil || !collecting || paidThrough == 0 {
		return changed, err
	}
	until := now
	switch {
	case paused:
		if sub.PauseCollection.ResumesAt > 0 {
			until = min(until, sub.PauseCollection.ResumesAt)
		}
	case w.policy().SuspendWhenPastDue:
		return changed, nil
	default:
		until = min(until, paidThrough+int64(w.policy().PastDueKeepFor/time.Second))
	}
	kept, err := postgres.GrantCollecting(ctx, tx, sub.ID, paidThrough, until)
	return append(changed, kept...), err
}

// ApplyKeyStateArgs sets one key in Luarmor to what the service decided
// for it: its absolute expiry and whether it is suspended.
type ApplyKeyStateArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
}

func (ApplyKeyStateArgs) Kind() string { return "apply_key_state" }

func (ApplyKeyStateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRenew, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// ApplyKeyStateWorker works ApplyKeyStateArgs, queued before subscription
// changes became grants of the entitlement ledger: it hands the key to its
// writer.
type ApplyKeyStateWorker struct {
	river.WorkerDefaults[ApplyKeyStateArgs]
	Deps
}

func (w *ApplyKeyStateWorker) Work(ctx context.Context, job *river.Job[ApplyKeyStateArgs]) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return syncUnits(ctx, tx, job.Args.OrderKeyID)
	})
}

// appliedTarget is the target a just-delivered key was given, if any.
func appliedTarget(k *order.Key, authExpire *int64) *int64 {
	if k.ExpireTarget == nil {
		return nil
	}
	return authExpire
}

// cancelling reports whether sub is set to end without renewing: at its
// period's end (cancel_at_period_end) or at a set moment (cancel_at).
func cancelling(sub *stripe.Subscription) bool { return sub.CancelAtPeriodEnd || sub.CancelAt > 0 }
