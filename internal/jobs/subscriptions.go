package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
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
	end       int64 // unix seconds
	expiresAt int64 // end + RENEWAL_GRACE: the keys' absolute expiry
}

// firstPeriod reads what a subscription's checkout paid for: up to
// trial_end while trialing, else up to current_period_end.
func (d Deps) firstPeriod(sub *stripe.Subscription) *paidPeriod {
	end := sub.CurrentPeriodEnd
	if sub.Status == stripe.SubscriptionStatusTrialing && sub.TrialEnd > 0 {
		end = sub.TrialEnd
	}
	return &paidPeriod{status: string(sub.Status), end: end, expiresAt: end + d.graceSeconds()}
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
		return &badObject{fmt.Sprintf("event %s: subscription without an id", event.ID)}
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
			if changed, err = postgres.EndSubscriptionKeys(ctx, tx, id, paidEnd, now+grace); err != nil {
				return err
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
		args := make([]river.JobArgs, 0, len(changed))
		for _, keyID := range changed {
			args = append(args, ApplyKeyStateArgs{OrderKeyID: keyID})
		}
		w.Logger.InfoContext(ctx, "subscription reconciled", "subscription_id", id, "status", sub.Status,
			"paid_through", paidThrough, "keys_changed", len(changed))
		return insertMany(ctx, tx, args...)
	})
}

// reconcileItems matches the subscription's current units with its items:
// missing units of a price are added to the checkout's order and queued
// through the order's fair queue; surplus ones (newest first) and those of
// prices no longer held end at paidEnd. It returns the delivered keys
// whose expiry changed.
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
	wanted := map[string]bool{}
	var surplus []int64
	added := 0
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it == nil || it.Price == nil {
				continue
			}
			price := it.Price.ID
			wanted[price] = true
			have := byPrice[price]
			switch n := int(it.Quantity) - len(have); {
			case n > 0:
				product, ok := w.Catalog.Lookup(price)
				if !ok {
					w.Logger.ErrorContext(ctx, "subscription holds a price that is not in the catalog; add it to CATALOG_FILE",
						"subscription_id", sub.ID, "price_id", price)
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
				added += n
			case n < 0:
				for i := len(have) - 1; i >= len(have)+n; i-- {
					surplus = append(surplus, have[i].ID)
				}
			}
		}
	}
	for price, have := range byPrice {
		if !wanted[price] {
			for _, u := range have {
				surplus = append(surplus, u.ID)
			}
		}
	}
	var changed []int64
	if len(surplus) > 0 {
		if changed, err = postgres.EndUnits(ctx, tx, surplus, paidEnd); err != nil {
			return nil, err
		}
	}
	if added > 0 {
		o, err = postgres.LockOrder(ctx, tx, o.CheckoutSessionID)
		if err != nil {
			return nil, err
		}
		if err := queueUnits(ctx, tx, o); err != nil {
			return nil, err
		}
	}
	if added > 0 || len(surplus) > 0 {
		w.Logger.InfoContext(ctx, "subscription items changed", "subscription_id", sub.ID, "units_added", added, "units_ending", len(surplus))
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
// payment processing, card retries while past_due): keep extends its keys
// to now + grace, so slow payment methods never lapse; suspend blacklists
// them while past_due. Once paid, suspended keys are lifted.
func (w *SyncSubscriptionWorker) renewalPending(ctx context.Context, tx pgx.Tx, sub *stripe.Subscription, paidThrough, now int64) ([]int64, error) {
	collecting := sub.Status == stripe.SubscriptionStatusPastDue ||
		(sub.Status == stripe.SubscriptionStatusActive && paidThrough > 0 && paidThrough < now)
	suspend := w.policy().SuspendWhenPastDue && sub.Status == stripe.SubscriptionStatusPastDue
	changed, err := postgres.SuspendSubscription(ctx, tx, sub.ID, suspend)
	if err != nil || !collecting || w.policy().SuspendWhenPastDue {
		return changed, err
	}
	kept, err := postgres.KeepSubscriptionAlive(ctx, tx, sub.ID, now+w.graceSeconds())
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

// ApplyKeyStateWorker works ApplyKeyStateArgs. Every value it sends was
// committed before, and is absolute, so a repeat sends the same request.
type ApplyKeyStateWorker struct {
	river.WorkerDefaults[ApplyKeyStateArgs]
	Deps
}

func (w *ApplyKeyStateWorker) Timeout(*river.Job[ApplyKeyStateArgs]) time.Duration {
	return 5 * time.Minute
}

func (w *ApplyKeyStateWorker) Work(ctx context.Context, job *river.Job[ApplyKeyStateArgs]) error {
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	if !k.Delivered() {
		return completeBeforeDelivery(ctx, w.Deps, job, k)
	}
	if k.Status != order.KeyActive {
		return nil // revoked
	}
	suspendedApplied, err := postgres.SuspendedApplied(ctx, w.Pool, k.ID)
	if err != nil {
		return err
	}
	var expire *int64
	if k.ExpireTarget != nil && !sameExpiry(k.ExpireTarget, k.ExpireApplied) {
		expire = k.ExpireTarget
	}
	if expire == nil && k.Suspended == suspendedApplied {
		return nil
	}
	ctx = budget.WithClass(ctx, budget.ClassRenew)
	if k.Suspended && !suspendedApplied {
		ctx = budget.WithClass(ctx, budget.ClassRevoke)
	}
	if err := w.apply(ctx, k, expire, suspendedApplied); err != nil {
		if errors.Is(err, luarmor.ErrNotFound) {
			w.Logger.WarnContext(ctx, "subscription key no longer exists in Luarmor", "order_key_id", k.ID)
			return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
				return postgres.SetKeyStatus(ctx, tx, k.ID, order.KeyDeleted)
			})
		}
		jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
		return jobErr
	}
	w.Logger.InfoContext(ctx, "subscription key updated", "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey),
		"auth_expire", expire, "suspended", k.Suspended, "ending", k.Ending)
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if err := postgres.RecordKeyState(ctx, tx, k.ID, expire, k.Suspended); err != nil {
		return err
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	// Decided again while this run was sending: apply the newer state.
	// The job is completed in this transaction, so the new one is not
	// refused as a duplicate.
	now, err := postgres.GetKey(ctx, tx, k.ID)
	if err != nil {
		return err
	}
	if !sameExpiry(now.ExpireTarget, now.ExpireApplied) || now.Suspended != k.Suspended {
		if err := insertMany(ctx, tx, ApplyKeyStateArgs{OrderKeyID: k.ID}); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// apply sends the expiry (if any) and the suspension change to Luarmor.
func (w *ApplyKeyStateWorker) apply(ctx context.Context, k *order.Key, expire *int64, suspendedApplied bool) error {
	if expire != nil {
		if err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, AuthExpire: expire}); err != nil {
			return err
		}
	}
	switch {
	case k.Suspended && !suspendedApplied:
		never := luarmor.NeverExpires
		return w.Luarmor.Blacklist(ctx, k.ProjectID, luarmor.BlacklistRequest{UserKey: k.UserKey, BanReason: SuspendBanReason, BanExpire: &never})
	case !k.Suspended && suspendedApplied:
		// Luarmor issues a new unban token on every blacklist: read it now.
		u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
		if err != nil || !u.IsBanned() {
			return err
		}
		return w.Luarmor.Unban(ctx, k.ProjectID, u.UnbanToken)
	}
	return nil
}

// appliedTarget is the target a just-delivered key was given, if any.
func appliedTarget(k *order.Key, authExpire *int64) *int64 {
	if k.ExpireTarget == nil {
		return nil
	}
	return authExpire
}

func sameExpiry(a, b *int64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
