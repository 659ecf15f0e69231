package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// subscription reads a subscription back from the Stripe stand-in.
func (b *bundle) subscription(t *testing.T, id string) *stripe.Subscription {
	t.Helper()
	s, err := b.Stripe.Client().Subscription(context.Background(), id)
	require.NoError(t, err)
	return s
}

// subscribe registers sub with Stripe, then a checkout that started it
// buying items, and waits for the order's keys.
func (b *bundle) subscribe(t *testing.T, sub stripefake.Subscription, paymentStatus string, items ...stripefake.Item) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	b.Stripe.PutSubscription(sub)
	s := stripefake.Session{
		ID: fulfillertest.NewID("cs_test_"), Mode: "subscription", PaymentStatus: paymentStatus, Status: "complete",
		CustomerEmail: defaultMail, Customer: fulfillertest.NewID("cus_"), Subscription: sub.ID, Invoice: fulfillertest.NewID("in_"), Items: items,
	}
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	b.waitIdle(t)
	return s, o
}

// changeSubscription makes Stripe hold sub and sends its
// customer.subscription.updated event.
func (b *bundle) changeSubscription(t *testing.T, sub stripefake.Subscription) {
	t.Helper()
	b.Stripe.PutSubscription(sub)
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.updated", mustJSON(t, map[string]any{
		"id": sub.ID, "object": "subscription", "status": withDefault(sub.Status, "active"),
	})))
	b.waitIdle(t)
}

func withDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func monthly(id string, start int64, items ...stripefake.SubscriptionItem) stripefake.Subscription {
	return stripefake.Subscription{ID: id, Status: "active", CurrentPeriodStart: start, CurrentPeriodEnd: start + 30*day, Items: items}
}

func keysOf(o httpapi.OrderJSON, priceID string) []httpapi.KeyJSON {
	var out []httpapi.KeyJSON
	for _, k := range o.Keys {
		if k.PriceID == priceID {
			out = append(out, k)
		}
	}
	return out
}

func TestTrialKeyEndsAtTrialEndWhetherOrNotItsTimerStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().Unix()
	trialEnd := now + 3*day
	sub := stripefake.Subscription{ID: fulfillertest.NewID("sub_"), Status: "trialing", CurrentPeriodStart: now, CurrentPeriodEnd: trialEnd,
		TrialStart: now, TrialEnd: trialEnd, Items: []stripefake.SubscriptionItem{{PriceID: priceMonth, Quantity: 2}}}
	_, o := b.subscribe(t, sub, "no_payment_required", stripefake.Item{PriceID: priceMonth, Quantity: 2, Recurring: true})
	require.Len(t, o.Keys, 2)

	started, waiting := o.Keys[0].UserKey, o.Keys[1].UserKey
	require.NoError(t, b.Luarmor.Execute(project, started, "hwid-1"))
	for _, key := range []string{started, waiting} {
		u := b.user(t, key)
		require.Equal(t, trialEnd+day, u.AuthExpire, "three days and the grace, not key_days")
		require.Zero(t, u.KeyDays, "no timer left to start later")
	}
	for _, k := range o.Keys {
		require.NotNil(t, k.AuthExpire)
		require.Equal(t, trialEnd+day, *k.AuthExpire)
	}
}

func TestFirstPeriodKeyEndsAtThePeriodEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now().Unix() - 25*day // the buyer first runs the script on day 25
	sub := monthly(fulfillertest.NewID("sub_"), start, stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	_, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	require.NoError(t, b.Luarmor.Execute(project, o.Keys[0].UserKey, "hwid-1"))
	require.Equal(t, start+30*day+day, b.user(t, o.Keys[0].UserKey).AuthExpire, "five days left and the grace, not 30 more")
}

func TestSeatAddedMakesOneMoreKeyOnTheOriginalOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{ID: "si_seats", PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	require.Len(t, o.Keys, 1)

	sub.Items[0].Quantity = 2
	b.changeSubscription(t, sub)
	b.changeSubscription(t, sub) // repeated: nothing more
	got := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, got.Keys, 2)
	require.Equal(t, o.Keys[0].UserKey, got.Keys[0].UserKey)
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, got.Keys[1].UserKey).AuthExpire)
	require.Equal(t, 2, b.luarmorUsersFor(s.ID))
}

func TestSeatRemovedEndsTheNewestKeyAtThePeriodEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 2})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 2, Recurring: true})
	kept, removed := o.Keys[0].UserKey, o.Keys[1].UserKey

	sub.Items[0].Quantity = 1
	b.changeSubscription(t, sub)
	_, got := b.GetOrder(t, s.ID)
	require.False(t, got.Keys[0].Ending)
	require.True(t, got.Keys[1].Ending, "the newest key ends")
	require.False(t, b.user(t, removed).IsBanned(), "ended at the period end, not blacklisted")

	// The next period's payment renews only the seat still held.
	nextEnd := sub.CurrentPeriodEnd + 30*day
	_, ev := b.invoice(t, sub.ID, "subscription_cycle", nextEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, nextEnd+day, b.user(t, kept).AuthExpire)
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, removed).AuthExpire)
}

func TestPriceMovedToAnotherProjectEndsTheOldKeyAtThePeriodEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{ID: "si_plan", PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	old := o.Keys[0].UserKey

	sub.Items = []stripefake.SubscriptionItem{{ID: "si_plan", PriceID: priceOther, Quantity: 1}}
	b.changeSubscription(t, sub)
	b.changeSubscription(t, sub)
	got := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, got.Keys, 2)
	require.True(t, keysOf(got, priceMonth)[0].Ending)
	moved := keysOf(got, priceOther)
	require.Len(t, moved, 1)
	require.Equal(t, project2, moved[0].ProjectID)
	u, ok := b.Luarmor.User(project2, moved[0].UserKey)
	require.True(t, ok, "the new project's key exists")
	require.Equal(t, sub.CurrentPeriodEnd+day, u.AuthExpire)
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, old).AuthExpire)
	require.False(t, b.user(t, old).IsBanned())
}

func TestRenewalDoesNotExtendAOneTimeItemOfTheSameCheckout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	_, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true},
		stripefake.Item{PriceID: priceOther, Quantity: 1})
	oneTime := keysOf(o, priceOther)[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project2, oneTime, "hwid-1"))
	bought, ok := b.Luarmor.User(project2, oneTime)
	require.True(t, ok)

	nextEnd := sub.CurrentPeriodEnd + 30*day
	_, ev := b.invoice(t, sub.ID, "subscription_cycle", nextEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, nextEnd+day, b.user(t, keysOf(o, priceMonth)[0].UserKey).AuthExpire)
	after, ok := b.Luarmor.User(project2, oneTime)
	require.True(t, ok)
	require.Equal(t, bought.AuthExpire, after.AuthExpire, "the one-time item keeps its own 30 days")
}

// A renewal paid ahead is refunded, then the subscription is cancelled:
// the key runs to the end of what is still paid for, the first period.
func TestCancellationAfterARefundedRenewalEndsAtThePeriodStillPaid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	_, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	key := o.Keys[0].UserKey
	next := sub.CurrentPeriodEnd + 30*day
	invoiceID, ev := b.invoice(t, sub.ID, "subscription_cycle", next)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, next+day, b.user(t, key).AuthExpire)
	pi := fulfillertest.NewID("pi_")
	b.Deliver(t, b.refund(t, b.charge(t, pi, invoiceID), pi, invoiceID, 1000))
	b.waitIdle(t)
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, key).AuthExpire, "the refunded period is taken back")
	require.False(t, b.user(t, key).IsBanned(), "a refund of one period bans nothing")

	sub.Status = "canceled"
	b.Stripe.PutSubscription(sub)
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.deleted", mustJSON(t, map[string]any{"id": sub.ID, "object": "subscription", "status": "canceled"})))
	b.waitIdle(t)
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, key).AuthExpire)
}

func pastDuePolicy(suspend bool) func(*options) {
	p := order.DefaultPolicy()
	p.RenewalGrace = time.Hour
	p.SuspendWhenPastDue = suspend
	return func(o *options) { o.policy = &p }
}

// lapsedSubscription starts a subscription whose paid first period ended
// two hours ago (grace: an hour), as when the renewal is still being paid.
func (b *bundle) lapsedSubscription(t *testing.T) (stripefake.Subscription, string) {
	t.Helper()
	start := time.Now().Unix() - 30*day - 2*3600
	sub := monthly(fulfillertest.NewID("sub_"), start, stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	_, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd = sub.CurrentPeriodEnd, sub.CurrentPeriodEnd+30*day
	return sub, o.Keys[0].UserKey
}

func TestPastDueKeepsAccessUntilStripeGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, pastDuePolicy(false))
	sub, key := b.lapsedSubscription(t)
	sub.Status = "past_due"
	before := time.Now().Unix()
	b.changeSubscription(t, sub)
	u := b.user(t, key)
	require.False(t, u.IsBanned())
	require.GreaterOrEqual(t, u.AuthExpire, before+3600, "kept alive for the grace from now")

	// Stripe gives up: access ends within the grace. The key stays the
	// subscription's: a reactivation's payment extends it.
	sub.Status = "unpaid"
	b.changeSubscription(t, sub)
	require.LessOrEqual(t, b.user(t, key).AuthExpire, time.Now().Unix()+3600)
	_, o := b.GetOrder(t, b.orderOf(t, sub.ID))
	require.False(t, o.Keys[0].Ending)
}

func TestPastDueSuspendsAndInvoicePaidLifts(t *testing.T) {
	t.Parallel()
	b := setup(t, pastDuePolicy(true))
	sub, key := b.lapsedSubscription(t)
	sub.Status = "past_due"
	b.changeSubscription(t, sub)
	require.True(t, b.user(t, key).IsBanned(), "suspended while past_due")
	_, o := b.GetOrder(t, b.orderOf(t, sub.ID))
	require.Equal(t, "active", o.Keys[0].Status, "the buyer's key, not revoked")
	require.True(t, o.Keys[0].Suspended, "the buyer is told it is suspended until paid")
	_, _, page := send(t, http.MethodGet, b.URL+"/orders/"+b.orderOf(t, sub.ID), "", nil)
	require.Contains(t, page, "Your key is suspended")
	require.Contains(t, page, "The subscription&#39;s renewal is unpaid. Pay the open invoice or update your payment method")
	require.NotContains(t, page, `data-copy="key-`, "no copy button for a key that does not work")

	sub.Status = "active"
	b.Stripe.PutSubscription(sub)
	_, ev := b.invoice(t, sub.ID, "subscription_cycle", sub.CurrentPeriodEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	u := b.user(t, key)
	require.False(t, u.IsBanned(), "lifted once paid")
	_, o = b.GetOrder(t, b.orderOf(t, sub.ID))
	require.False(t, o.Keys[0].Suspended)
	require.Equal(t, sub.CurrentPeriodEnd+3600, u.AuthExpire)
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
}

func (b *bundle) orderOf(t *testing.T, subscriptionID string) string {
	t.Helper()
	var id string
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT checkout_session_id FROM orders WHERE subscription_id = $1`,
		subscriptionID).Scan(&id))
	return id
}

// A renewal paid by SEPA or ACH can settle days after the period ended,
// with no Stripe event meanwhile: the periodic watch reads the subscription
// again before its keys lapse, and with PAST_DUE_ACTION=keep they stay
// alive for the grace from now.
func TestSlowRenewalKeepsAccessWithoutAnEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, pastDuePolicy(false))
	sub, key := b.lapsedSubscription(t) // Stripe still says active: the payment is processing
	b.Stripe.PutSubscription(sub)
	before := time.Now().Unix()
	_, err := b.Main.River.Insert(context.Background(), jobs.WatchSubscriptionsArgs{}, nil)
	require.NoError(t, err)
	b.waitIdle(t) // the watch and the writes it queues
	require.GreaterOrEqual(t, b.user(t, key).AuthExpire, before+3600, "the key is kept alive for the grace from now")
	require.False(t, b.user(t, key).IsBanned())
}

// A subscription moved to a price the catalog lacks fails its order
// visibly (unknown_price, as failed orders and the metrics show it); the
// key it had runs to the end of what was paid; once the catalog has the
// price, a retry makes the new price's key.
func TestSubscriptionMovedToAPriceTheCatalogLacksFailsVisiblyUntilFixed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{ID: "si_plan", PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	old := o.Keys[0].UserKey

	const unknown = "price_not_in_catalog"
	sub.Items = []stripefake.SubscriptionItem{{ID: "si_plan", PriceID: unknown, Quantity: 1}}
	b.changeSubscription(t, sub)
	failed := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureUnknownPrice, failed.FailureCode)
	require.Contains(t, failed.FailureReason, unknown)
	u := b.user(t, old)
	require.False(t, u.IsBanned(), "the key paid for is not taken")
	require.Equal(t, sub.CurrentPeriodEnd+day, u.AuthExpire, "it runs to the end of its paid period")

	b.Catalog.Put(unknown, catalog.Product{ProjectID: project2, KeyDays: 30})
	require.Equal(t, http.StatusAccepted, b.retryStatus(t, s.ID))
	got := b.WaitOrder(t, s.ID, "fulfilled")
	b.waitIdle(t)
	moved := keysOf(got, unknown)
	require.Len(t, moved, 1, "the retry made the new price's key")
	nu, ok := b.Luarmor.User(project2, moved[0].UserKey)
	require.True(t, ok)
	require.Equal(t, sub.CurrentPeriodEnd+day, nu.AuthExpire, "with the period paid")
	require.True(t, keysOf(got, priceMonth)[0].Ending)
}
