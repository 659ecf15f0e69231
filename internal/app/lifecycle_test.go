package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

const day = int64(86400)

// mustJSON marshals v: a Stripe object for an event's data.object, or an
// event.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// subscriptionOrder buys quantity keys on a subscription and waits for them.
func (b *bundle) subscriptionOrder(t *testing.T, quantity int64) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	s := stripefake.Session{
		ID: fulfillertest.NewID("cs_test_"), Mode: "subscription", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Customer: fulfillertest.NewID("cus_"), Subscription: fulfillertest.NewID("sub_"), Invoice: fulfillertest.NewID("in_"),
		Items: []stripefake.Item{{PriceID: priceMonth, Quantity: quantity, Recurring: true}},
	}
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	b.waitIdle(t) // the keys' writers read the new keys back
	return s, o
}

// invoice registers a paid subscription invoice with Stripe and returns
// its invoice.paid event.
func (b *bundle) invoice(t *testing.T, sub, reason string, periodEnd int64) (string, []byte) {
	t.Helper()
	id := fulfillertest.NewID("in_")
	// One line per price the subscription holds, for as many seats as its
	// order has units of the price (one of priceMonth before any).
	seats := map[string]int{}
	rows, err := b.Pool.Query(context.Background(), `SELECT k.price_id, count(*) FROM order_keys k
		JOIN orders o USING (checkout_session_id) WHERE o.subscription_id = $1 AND k.recurring AND NOT k.ending
		GROUP BY k.price_id`, sub)
	require.NoError(t, err)
	for rows.Next() {
		var price string
		var n int
		require.NoError(t, rows.Scan(&price, &n))
		seats[price] = n
	}
	require.NoError(t, rows.Err())
	if len(seats) == 0 {
		seats[priceMonth] = 1
	}
	var lines []map[string]any
	for price, n := range seats {
		lines = append(lines, map[string]any{
			"object": "line_item", "type": "subscription", "proration": false, "subscription": sub, "amount": 1000,
			"price": map[string]any{"id": price, "object": "price"}, "quantity": n,
			"period": map[string]any{"start": periodEnd - 30*day, "end": periodEnd},
		})
	}
	inv := map[string]any{
		"id": id, "object": "invoice", "subscription": sub, "billing_reason": reason, "status": "paid",
		"paid": true, "customer": "cus_x", "payment_intent": fulfillertest.NewID("pi_"), "charge": fulfillertest.NewID("ch_"),
		// period_end at the top level is not the service period: a
		// renewal that read it would be wrong.
		"period_end": periodEnd - 30*day,
	}
	b.Stripe.PutObject(stripefake.KindInvoice, id, mergeMap(inv, map[string]any{"lines": lines}))
	inv["lines"] = map[string]any{"object": "list", "data": lines, "has_more": false}
	return id, fulfillertest.Event(t, "invoice.paid", mustJSON(t, inv))
}

func mergeMap(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// disputeEvent moves a dispute of a charge to status in Stripe and
// returns the charge.dispute.* event Stripe sends for it.
func (b *bundle) disputeEvent(t *testing.T, typ, disputeID, chargeID, pi, status string) []byte {
	t.Helper()
	b.putDispute(disputeID, chargeID, pi, status)
	return fulfillertest.Event(t, typ, mustJSON(t, disputeObject(disputeID, chargeID, pi, status)))
}

// putDispute sets what Stripe's API says of a dispute now.
func (b *bundle) putDispute(disputeID, chargeID, pi, status string) {
	b.Stripe.PutObject(stripefake.KindDispute, disputeID, disputeObject(disputeID, chargeID, pi, status))
}

func disputeObject(disputeID, chargeID, pi, status string) map[string]any {
	return map[string]any{
		"id": disputeID, "object": "dispute", "charge": chargeID, "payment_intent": pi,
		"status": status, "reason": "fraudulent", "amount": 1000,
	}
}

// charge registers a charge of 1000 with Stripe (the service follows a
// disputed charge to its invoice).
func (b *bundle) charge(t *testing.T, pi, invoice string) string {
	t.Helper()
	id := fulfillertest.NewID("ch_")
	b.putCharge(id, pi, invoice, 0)
	return id
}

func (b *bundle) putCharge(id, pi, invoice string, refunded int64) map[string]any {
	obj := map[string]any{"id": id, "object": "charge", "payment_intent": pi, "amount": 1000, "paid": true,
		"amount_refunded": refunded, "refunded": refunded >= 1000}
	if invoice != "" {
		obj["invoice"] = invoice
	}
	b.Stripe.PutObject(stripefake.KindCharge, id, obj)
	return obj
}

// refund refunds a charge of 1000 up to refunded in total in Stripe and
// returns the charge.refunded event Stripe sends for it.
func (b *bundle) refund(t *testing.T, chargeID, pi, invoice string, refunded int64) []byte {
	t.Helper()
	return fulfillertest.Event(t, "charge.refunded", mustJSON(t, b.putCharge(chargeID, pi, invoice, refunded)))
}

func (b *bundle) user(t *testing.T, key string) luarmor.User {
	t.Helper()
	u, ok := b.Luarmor.User(project, key)
	require.True(t, ok, "key exists in Luarmor")
	return u
}

// waitKeys waits until the order is in orderStatus with every key in
// keyStatus.
func (b *bundle) waitKeys(t *testing.T, id, orderStatus, keyStatus string) httpapi.OrderJSON {
	t.Helper()
	return b.WaitOrderFor(t, id, "status "+orderStatus+" with every key "+keyStatus, func(o httpapi.OrderJSON) bool {
		if o.Status != orderStatus {
			return false
		}
		for _, k := range o.Keys {
			if k.Status != keyStatus {
				return false
			}
		}
		return true
	})
}

// waitIdle waits until no job is left to run, and names the jobs left
// when some never finish.
func (b *bundle) waitIdle(t *testing.T) {
	t.Helper()
	idle := func() bool {
		return b.Count(t, "SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'cancelled', 'discarded')") == 0
	}
	if fulfillertest.JobsUntil(b.Main.River, fulfillertest.WaitTimeout, idle) {
		return
	}
	rows, err := b.Pool.Query(context.Background(), `SELECT id, kind, state, attempt, args::text, scheduled_at - now(),
		COALESCE(errors[array_length(errors, 1)]->>'error', '') FROM river_job
		WHERE state NOT IN ('completed', 'cancelled', 'discarded') ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		v, err := rows.Values()
		require.NoError(t, err)
		t.Logf("job left: %v", v)
	}
	require.FailNow(t, "jobs still waiting or running after "+fulfillertest.WaitTimeout.String())
}

func TestRenewalExtendsEveryKeyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 2)
	for i, k := range o.Keys {
		require.NoError(t, b.Luarmor.Execute(project, k.UserKey, "hwid-"+string(rune('a'+i))))
	}
	before := b.user(t, o.Keys[0].UserKey).AuthExpire
	periodEnd := time.Now().Unix() + 60*day
	invoiceID, ev := b.invoice(t, s.Subscription, "subscription_cycle", periodEnd)
	b.Luarmor.ResetCalls()

	// The same event twice, the same invoice again as a distinct event,
	// and a second invoice for the same period.
	b.Deliver(t, ev)
	b.Deliver(t, ev)
	b.waitIdle(t)
	b.Deliver(t, fulfillertest.Event(t, "invoice.paid", mustJSON(t, map[string]any{"id": invoiceID, "object": "invoice", "subscription": s.Subscription})))
	b.waitIdle(t)
	_, second := b.invoice(t, s.Subscription, "subscription_cycle", periodEnd)
	b.Deliver(t, second)
	b.waitIdle(t)

	want := periodEnd + day // RENEWAL_GRACE defaults to 24h
	require.Greater(t, want, before)
	for _, k := range o.Keys {
		require.Equal(t, want, b.user(t, k.UserKey).AuthExpire)
	}
	_, got := b.GetOrder(t, s.ID)
	for _, k := range got.Keys {
		require.NotNil(t, k.AuthExpire)
		require.Equal(t, want, *k.AuthExpire)
	}
	require.NotNil(t, got.PaidThrough, "the order API shows the paid-through time")
	require.Equal(t, periodEnd, *got.PaidThrough)
	// Two invoices, two keys: at most two calls per key per renewal.
	require.LessOrEqual(t, b.Luarmor.CallCount(http.MethodGet, "/users")+b.Luarmor.CallCount(http.MethodPatch, "/users"), 2*2*2)
	require.Equal(t, 2, b.Luarmor.CallCount(http.MethodPatch, "/users"), "one PATCH per key; the second invoice found them extended")
	require.Equal(t, 2, b.Count(t, "SELECT count(*) FROM key_grants WHERE source = 'invoice:' || $1", invoiceID),
		"the invoice's period granted to each key once")
}

func TestSubscriptionCreateInvoiceDoesNotExtend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	sub := b.subscription(t, s.Subscription)
	b.Luarmor.ResetCalls()
	// Stripe's first invoice pays the subscription's first period.
	_, ev := b.invoice(t, s.Subscription, "subscription_create", sub.CurrentPeriodEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Empty(t, b.Luarmor.Calls(), "the checkout key already has this period")
	u := b.user(t, o.Keys[0].UserKey)
	require.Equal(t, sub.CurrentPeriodEnd+day, u.AuthExpire)
	require.Zero(t, u.KeyDays)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM orders WHERE paid_through IS NOT NULL"))
}

func TestRenewalNeverShortensAKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	b.Luarmor.ResetCalls()
	// The operator already gave the key a year.
	far := time.Now().Unix() + 365*day
	require.NoError(t, b.Luarmor.Client().
		UpdateUser(context.Background(), project, luarmor.UpdateUserRequest{UserKey: key, AuthExpire: &far}))
	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+30*day)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, far, b.user(t, key).AuthExpire)
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPatch, "/users"), "only the operator's PATCH")
}

func TestRenewalBeforeTheFirstKeyIsAppliedOnDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := stripefake.Session{
		ID: fulfillertest.NewID("cs_test_"), Mode: "subscription", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Subscription: fulfillertest.NewID("sub_"), Invoice: fulfillertest.NewID("in_"),
		Items: []stripefake.Item{{PriceID: priceMonth, Quantity: 1, Recurring: true}},
	}
	b.Stripe.PutSession(s)
	// The renewal arrives first, for a period longer than key_days.
	periodEnd := time.Now().Unix() + 45*day
	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", periodEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)

	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	b.waitIdle(t)
	require.Equal(t, periodEnd+day, b.user(t, o.Keys[0].UserKey).AuthExpire)
}

func TestDisputeBlacklistsThePaymentsKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})

	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	created := b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response")
	b.Deliver(t, created)
	b.Deliver(t, created) // repeated
	o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.Len(t, o.Keys, 2)
	for _, k := range o.Keys {
		u := b.user(t, k.UserKey)
		require.True(t, u.IsBanned())
		require.Equal(t, "Payment disputed", u.BanReason)
		require.Equal(t, luarmor.NeverExpires, u.BanExpire)
	}
	b.waitIdle(t)
	require.Equal(t, 2, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"), "one blacklist per key despite the repeat")
}

func TestDisputeBeforeTheKeyExistsMeansNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, s.PaymentIntent, "needs_response"))
	b.waitIdle(t)

	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)
	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "revoked", o.Status)
	require.Empty(t, o.Keys)
	require.Zero(t, b.luarmorUsersFor(s.ID), "no key was ever created")
}

func TestDisputeWonBeforeTheKeysExistedDeliversThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	b.waitIdle(t)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)
	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "revoked", o.Status)
	require.Zero(t, o.KeysPending, "a revoked order promises no keys")

	// The shop wins: the customer gets what they paid for.
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won"))
	o = b.waitKeys(t, s.ID, "fulfilled", "active")
	require.Len(t, o.Keys, 2)
	for _, k := range o.Keys {
		require.False(t, b.user(t, k.UserKey).IsBanned())
	}
}

func TestDisputeDuringKeyCreationLeavesNoUsableKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Creates take long enough for the dispute to land meanwhile.
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultLatency,
		Latency: 400 * time.Millisecond, Times: 2})
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	// A poll: a create under way ends no job and changes nothing the
	// order notifies, and the dispute must land before it ends.
	require.Eventually(t, func() bool {
		return b.Count(t, "SELECT count(*) FROM order_keys WHERE create_attempts > 0") > 0
	}, 10*time.Second, 5*time.Millisecond)
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, s.PaymentIntent, "needs_response"))
	b.waitIdle(t)

	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "revoked", o.Status)
	for _, u := range b.Luarmor.Users(project) {
		if strings.Contains(u.Note, s.ID) {
			require.True(t, u.IsBanned(), "a key created during the dispute is blacklisted")
		}
	}
	for _, k := range o.Keys {
		require.Equal(t, "blacklisted", k.Status)
	}
}

func TestDisputeWonLiftsTheBans(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")

	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won"))
	o := b.waitKeys(t, s.ID, "fulfilled", "active")
	u := b.user(t, o.Keys[0].UserKey)
	require.False(t, u.IsBanned())
}

func TestDisputeWonKeepWhenConfigured(t *testing.T) {
	t.Parallel()
	p := order.DefaultPolicy()
	p.UnbanWhenDisputeWon = false
	b := setup(t, func(o *options) { o.policy = &p })
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won"))
	b.waitIdle(t)
	require.True(t, b.user(t, o.Keys[0].UserKey).IsBanned())
}

func TestDisputeClosedBeforeCreatedRevokesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	closed := b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won")
	created := b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response")
	b.putDispute(dp, ch, s.PaymentIntent, "won")
	b.Deliver(t, closed)
	b.Deliver(t, created)
	b.waitIdle(t)
	o := b.waitKeys(t, s.ID, "fulfilled", "active")
	require.False(t, b.user(t, o.Keys[0].UserKey).IsBanned())
	require.Zero(t, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"), "both events read the dispute back as won")
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1 AND status = 'lifted'", dp))
}

func TestDisputeOpenedAndClosedAtOnceEndsLifted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 5; i++ {
		s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
		ch := b.charge(t, s.PaymentIntent, "")
		dp := fulfillertest.NewID("dp_")
		created := b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response")
		closed := b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won")
		concurrently(2, func(i int) { b.Deliver(t, [][]byte{created, closed}[i]) })
		b.waitIdle(t)
		o := b.waitKeys(t, s.ID, "fulfilled", "active")
		require.False(t, b.user(t, o.Keys[0].UserKey).IsBanned())
		require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1 AND status = 'lifted'", dp))
	}
}

func TestDisputeOfASubscriptionInvoiceBlacklistsTheSubscriptionsKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.subscriptionOrder(t, 1)
	invoiceID, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+60*day)
	b.Deliver(t, ev)
	b.waitIdle(t)
	// The renewal's payment is disputed: its charge belongs to the
	// invoice, whose subscription owns the key.
	pi := fulfillertest.NewID("pi_")
	ch := b.charge(t, pi, invoiceID)
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, pi, "needs_response"))
	o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, o.Keys[0].UserKey).IsBanned())
}

func TestFullRefundRevokesPerPolicy(t *testing.T) {
	t.Parallel()
	for _, action := range []order.Action{order.ActionBlacklist, order.ActionDelete, order.ActionNone} {
		t.Run(string(action), func(t *testing.T) {
			t.Parallel()
			p := order.DefaultPolicy()
			p.RefundAction = action
			b := setup(t, func(o *options) { o.policy = &p })
			s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
			b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
			o := b.WaitOrder(t, s.ID, "fulfilled")
			key := o.Keys[0].UserKey
			ch := b.charge(t, s.PaymentIntent, "")
			b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
			b.waitIdle(t)
			switch action {
			case order.ActionBlacklist:
				b.waitKeys(t, s.ID, "revoked", "blacklisted")
				u := b.user(t, key)
				require.True(t, u.IsBanned())
				require.Equal(t, "Payment refunded", u.BanReason)
			case order.ActionDelete:
				b.waitKeys(t, s.ID, "revoked", "deleted")
				_, ok := b.Luarmor.User(project, key)
				require.False(t, ok)
			case order.ActionNone:
				b.waitKeys(t, s.ID, "fulfilled", "active")
				require.False(t, b.user(t, key).IsBanned())
			}
		})
	}
}

func TestPartialRefundChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 400))
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "fulfilled", "active")
	require.False(t, b.user(t, o.Keys[0].UserKey).IsBanned())
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events WHERE type = 'charge.refunded'"), "recorded")
}

// A refunded renewal (a goodwill refund, a double charge) takes back the
// period it paid: the subscriber keeps the key and the period paid
// before, the subscription is not cancelled, and the next paid period
// extends the same key.
func TestRefundOfARenewalTakesBackThatPeriodOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	firstEnd := b.user(t, key).AuthExpire
	renewedEnd := time.Now().Unix() + 60*day
	invoiceID, ev := b.invoice(t, s.Subscription, "subscription_cycle", renewedEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, renewedEnd+day, b.user(t, key).AuthExpire)
	pi := fulfillertest.NewID("pi_")
	ch := b.charge(t, pi, invoiceID)
	b.Deliver(t, b.refund(t, ch, pi, invoiceID, 1000))
	b.waitIdle(t)
	got := b.waitKeys(t, s.ID, "fulfilled", "active")
	u := b.user(t, key)
	require.False(t, u.IsBanned(), "a refund of one period is not fraud")
	require.Equal(t, firstEnd, u.AuthExpire, "the refunded period is taken back, the one paid before stays")
	require.Equal(t, firstEnd, *got.Keys[0].AuthExpire)
	require.Zero(t, b.stripeCalls(http.MethodDelete, "/v1/subscriptions/"+s.Subscription), "the subscription goes on")

	// Stripe charges the next period: the same key runs on.
	_, ev = b.invoice(t, s.Subscription, "subscription_cycle", renewedEnd+30*day)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, renewedEnd+30*day+day, b.user(t, key).AuthExpire)
	require.False(t, b.user(t, key).IsBanned())
}

func TestSubscriptionDeletedIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	sub := b.subscription(t, s.Subscription)
	b.Luarmor.ResetCalls()
	b.Stripe.PutSubscription(stripefake.Subscription{ID: s.Subscription, Status: "canceled",
		CurrentPeriodEnd: sub.CurrentPeriodEnd, CanceledAt: time.Now().Unix(), EndedAt: time.Now().Unix(),
		Items: []stripefake.SubscriptionItem{{PriceID: priceMonth, Quantity: 1}}})
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.deleted", mustJSON(t, map[string]any{
		"id": s.Subscription, "object": "subscription", "status": "canceled", "current_period_end": sub.CurrentPeriodEnd,
	})))
	b.waitIdle(t)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM orders WHERE subscription_status = 'canceled'"))
	require.Empty(t, b.Luarmor.Calls(), "the key already ends when the paid period does")
	require.Equal(t, sub.CurrentPeriodEnd+day, b.user(t, o.Keys[0].UserKey).AuthExpire)
	require.False(t, b.user(t, o.Keys[0].UserKey).IsBanned())
}

func TestDiscordIDWithAKeyGetsItExtended(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const discord = "323456789012345678"
	first := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	first.DiscordID = discord
	b.Stripe.PutSession(first)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", first.ID))
	o1 := b.WaitOrder(t, first.ID, "fulfilled")
	key := o1.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	activeUntil := b.user(t, key).AuthExpire

	second := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	second.DiscordID = discord
	second.Customer = first.Customer
	b.Stripe.PutSession(second)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", second.ID))
	b.WaitOrder(t, second.ID, "fulfilled")
	b.waitIdle(t) // the key's writer applies the purchase's days
	_, o2 := b.GetOrder(t, second.ID)
	require.Len(t, o2.Keys, 1)
	require.Equal(t, key, o2.Keys[0].UserKey, "the same customer's key was extended, not a new one made")
	require.Equal(t, "linked", o2.Keys[0].DiscordLink)
	require.Equal(t, activeUntil+30*day, b.user(t, key).AuthExpire)
	require.NotNil(t, o2.Keys[0].AuthExpire)
	require.Equal(t, activeUntil+30*day, *o2.Keys[0].AuthExpire)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM order_keys WHERE extended_existing"))
	require.Equal(t, 1, b.luarmorUsersFor(first.ID))
	require.Zero(t, b.luarmorUsersFor(second.ID))
}
