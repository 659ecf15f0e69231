package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// The order page tells each state of an order and its keys as the
// entitlement ledger has it, at desktop and phone size; the order API
// answers the same state. A key that does not work is never called ready
// nor offered to copy.

// openOrder opens the order page and waits for its section in state.
func (p *page) openOrder(t *testing.T, sessionID, state string) {
	t.Helper()
	p.open(t, "/orders/"+sessionID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="`+state+`"]`)))
}

// badges are the keys' badges, in the page's order.
func (p *page) badges(t *testing.T) []string {
	t.Helper()
	return eval[[]string](t, p, `[...document.querySelectorAll("li.key h3 .badge")].map(b => b.textContent.trim())`)
}

// copyButtons counts the page's Copy buttons.
func (p *page) copyButtons(t *testing.T) int {
	t.Helper()
	return eval[int](t, p, `document.querySelectorAll("button.copy").length`)
}

// requireState requires the order API to tell the order, and each key in
// turn, in the given states (state, reason).
func requireState(t *testing.T, o httpapi.OrderJSON, state, reason string, keys ...[2]string) {
	t.Helper()
	require.Equal(t, [2]string{state, reason}, [2]string{o.State, o.StateReason}, "the order's state")
	require.Len(t, o.Keys, len(keys))
	for i, want := range keys {
		require.Equal(t, want, [2]string{o.Keys[i].State, o.Keys[i].StateReason}, "key %d", i+1)
	}
}

func TestOrderPageTellsRefundsDisputesAndFraudWarningsApart(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.SuspendOnInquiry = true; p.RevokeOnEarlyFraudWarning = true }))
	p := newPage(t, b)

	t.Run("refunded", func(t *testing.T) {
		s, key, ch := b.disputed(t)
		b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
		o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
		requireState(t, o, "revoked", "refund", [2]string{"revoked", "refund"})
		require.True(t, b.user(t, key).IsBanned())
		p.openOrder(t, s.ID, "revoked")
		require.Equal(t, "This order was refunded", p.text(t, "section.order h2"))
		require.Equal(t, []string{"Refunded"}, p.badges(t))
		require.Contains(t, p.text(t, "li.key .state-note"), "The payment was refunded")
		require.Zero(t, p.copyButtons(t))
		p.screenshots(t, "refunded")
	})
	t.Run("disputed", func(t *testing.T) {
		s, _, ch := b.disputed(t)
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, s.PaymentIntent, "needs_response"))
		o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
		requireState(t, o, "revoked", "dispute", [2]string{"revoked", "dispute"})
		p.openOrder(t, s.ID, "revoked")
		require.Equal(t, "This order's payment was disputed", p.text(t, "section.order h2"))
		require.Contains(t, p.text(t, "section.order p.lead"), "chargeback")
		require.Equal(t, []string{"Disputed"}, p.badges(t))
		require.Zero(t, p.copyButtons(t))
		p.screenshots(t, "disputed")
	})
	t.Run("fraud warning", func(t *testing.T) {
		s, _, ch := b.disputed(t)
		b.Deliver(t, fulfillertest.Event(t, "radar.early_fraud_warning.created", mustJSON(t, map[string]any{
			"id": fulfillertest.NewID("issfr_"), "object": "radar.early_fraud_warning", "charge": ch, "payment_intent": s.PaymentIntent,
			"fraud_type": "made_with_stolen_card", "actionable": true,
		})))
		o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
		requireState(t, o, "revoked", "early_fraud_warning", [2]string{"revoked", "early_fraud_warning"})
		p.openOrder(t, s.ID, "revoked")
		require.Equal(t, "This order's payment was flagged as fraudulent", p.text(t, "section.order h2"))
		require.Equal(t, []string{"Revoked"}, p.badges(t))
		require.Zero(t, p.copyButtons(t))
		p.screenshots(t, "fraud-warning")
	})
	t.Run("dispute inquiry", func(t *testing.T) {
		s, key, ch := b.disputed(t)
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, s.PaymentIntent, "warning_needs_response"))
		o := b.waitKeys(t, s.ID, "revoked", "blacklisted")
		requireState(t, o, "suspended", "dispute_inquiry", [2]string{"suspended", "dispute_inquiry"})
		require.True(t, b.user(t, key).IsBanned(), "suspended in Luarmor")
		p.openOrder(t, s.ID, "suspended")
		require.Equal(t, "Your key is suspended", p.text(t, "section.order h2"))
		require.Contains(t, p.text(t, "section.order p.lead"), "dispute inquiry")
		require.Equal(t, []string{"Suspended"}, p.badges(t))
		require.Zero(t, p.copyButtons(t))
		p.screenshots(t, "dispute-inquiry")
	})
}

// After support reissued one key of a two-key order, the page counts two
// keys, not three: the old key shows as replaced, without its copy
// buttons, and the new one as working.
func TestOrderPageAfterAReissueCountsUnitsAndShowsTheNewKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	old := o.Keys[0].UserKey
	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "reissue", keyBody(old)))
	b.waitIdle(t)
	got := b.WaitOrderFor(t, s.ID, "the old key replaced", func(o httpapi.OrderJSON) bool {
		return o.Status == "fulfilled" && len(o.Keys) == 3 && o.Keys[0].State == "replaced"
	})
	requireState(t, b.orderNow(t, s.ID), "active", "",
		[2]string{"replaced", "reissued"}, [2]string{"active", ""}, [2]string{"active", ""})
	require.Equal(t, 2, b.orderNow(t, s.ID).KeysWorking)
	require.Equal(t, old, got.Keys[0].UserKey)
	require.True(t, b.user(t, old).IsBanned())

	p.openOrder(t, s.ID, "delivered")
	require.Equal(t, "Your 2 keys are ready", p.text(t, "section.order h2"))
	require.Equal(t, []string{"Replaced", "Active", "Active"}, p.badges(t))
	require.Contains(t, p.text(t, "li.key .state-note"), "replaced this key with a new one")
	require.Equal(t, 4, p.copyButtons(t), "a key and a loader line to copy for each working key, none for the old one")
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("li.key:first-child button.copy").length`))
	p.screenshots(t, "reissued")
}

// orderNow is the order as the order API answers it now.
func (b *bundle) orderNow(t *testing.T, sessionID string) httpapi.OrderJSON {
	t.Helper()
	code, o := b.GetOrder(t, sessionID)
	require.Equal(t, http.StatusOK, code)
	return o
}

// A purchase that extended a key of the buyer's earlier purchase says so
// and names it; once refunded, the key still works for the earlier one,
// and the page says that instead of "revoked".
func TestOrderPageTellsAKeySharedWithAnotherPurchase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	const discord = "423456789012345678"
	first := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	first.DiscordID = discord
	b.Stripe.PutSession(first)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", first.ID))
	o1 := b.WaitOrder(t, first.ID, "fulfilled")
	key := o1.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	second := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	second.DiscordID, second.Customer = discord, first.Customer
	b.Stripe.PutSession(second)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", second.ID))
	b.WaitOrder(t, second.ID, "fulfilled")
	b.waitIdle(t)

	o2 := b.orderNow(t, second.ID)
	require.Equal(t, key, o2.Keys[0].UserKey)
	require.Equal(t, "extends", o2.Keys[0].Shared)
	require.Equal(t, o1.OrderRef, o2.Keys[0].SharedWithOrder, "the buyer's own earlier order is named")
	o1 = b.orderNow(t, first.ID)
	require.Equal(t, "extended", o1.Keys[0].Shared)
	require.Equal(t, o2.OrderRef, o1.Keys[0].SharedWithOrder)
	p.openOrder(t, second.ID, "delivered")
	require.Contains(t, p.text(t, "li.key .state-note"), "added its time to a key you already had (your order "+o1.OrderRef+")")
	p.screenshots(t, "shared")

	ch := b.charge(t, second.PaymentIntent, "")
	b.Deliver(t, b.refund(t, ch, second.PaymentIntent, "", 1000))
	b.waitIdle(t)
	o2 = b.waitKeys(t, second.ID, "revoked", "reverted")
	requireState(t, o2, "reverted", "refund", [2]string{"reverted", "refund"})
	require.False(t, b.user(t, key).IsBanned(), "the key still works for the first purchase")
	requireState(t, b.orderNow(t, first.ID), "active", "", [2]string{"active", ""})
	p.openOrder(t, second.ID, "reverted")
	require.Equal(t, "This purchase was taken back", p.text(t, "section.order h2"))
	note := p.text(t, "li.key .state-note")
	require.Contains(t, note, "a refund took those days back")
	require.Contains(t, note, "still works for your order "+o1.OrderRef)
	require.Equal(t, []string{"Refunded"}, p.badges(t))
	require.Zero(t, p.copyButtons(t))
	p.screenshots(t, "shared-refunded")
}

func TestOrderPageTellsACancelledSubscriptionAndAKeySuspendedForNonPayment(t *testing.T) {
	t.Parallel()
	b := setup(t, pastDuePolicy(true))
	p := newPage(t, b)

	t.Run("cancelled", func(t *testing.T) {
		sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
		s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
		key := o.Keys[0].UserKey
		sub.CancelAtPeriodEnd = true
		b.changeSubscription(t, sub)
		got := b.orderNow(t, s.ID)
		requireState(t, got, "ending", "cancelled", [2]string{"ending", "cancelled"})
		require.Equal(t, "fulfilled", got.Status)
		require.False(t, b.user(t, key).IsBanned(), "it runs until the period's end")
		require.Equal(t, sub.CurrentPeriodEnd+3600, b.user(t, key).AuthExpire)

		p.openOrder(t, s.ID, "ending")
		require.Equal(t, "Your subscription was cancelled", p.text(t, "section.order h2"))
		require.Contains(t, p.text(t, "section.order p.lead"), "not renewed")
		require.Equal(t, []string{"Cancelled"}, p.badges(t))
		require.Contains(t, p.text(t, "li.key .state-note"), "runs until "+time.Unix(sub.CurrentPeriodEnd+3600, 0).UTC().Format("2 January 2006 15:04 MST")+", with no renewal")
		require.Equal(t, 2, p.copyButtons(t), "it still works")
		require.Equal(t, "Manage subscription", p.text(t, "form.manage-subscription button"))
		p.screenshots(t, "cancelled")

		// The buyer changes their mind in the portal: renewed again.
		sub.CancelAtPeriodEnd = false
		b.changeSubscription(t, sub)
		requireState(t, b.orderNow(t, s.ID), "active", "", [2]string{"active", ""})
	})
	t.Run("suspended for non-payment", func(t *testing.T) {
		sub, key := b.lapsedSubscription(t)
		sub.Status = "past_due"
		b.changeSubscription(t, sub)
		id := b.orderOf(t, sub.ID)
		requireState(t, b.orderNow(t, id), "suspended", "past_due", [2]string{"suspended", "past_due"})
		require.True(t, b.user(t, key).IsBanned())

		p.openOrder(t, id, "suspended")
		require.Equal(t, "Your key is suspended", p.text(t, "section.order h2"))
		lead := p.text(t, "section.order p.lead")
		require.Contains(t, lead, "Pay the open invoice or update your payment method with Manage subscription below")
		require.Equal(t, []string{"Suspended"}, p.badges(t))
		require.Zero(t, p.copyButtons(t))
		require.Zero(t, eval[int](t, p, `document.querySelectorAll("button.reset-hwid").length`))
		require.Equal(t, "Manage subscription", p.text(t, "form.manage-subscription button"))
		p.screenshots(t, "suspended")
	})
}

func TestOrderPageTellsARenewedKeyWhoseFirstPaymentWasRefunded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, o := b.subscriptionOrder(t, 1)
	require.NoError(t, b.Luarmor.Execute(project, o.Keys[0].UserKey, "hwid-1"))
	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+60*day)
	b.Deliver(t, ev)
	b.waitIdle(t)
	b.refundFirstInvoice(t, s)
	requireState(t, b.waitKeys(t, s.ID, "fulfilled", "active"), "active", "first_payment_refunded", [2]string{"active", "first_payment_refunded"})

	p.openOrder(t, s.ID, "delivered")
	require.Equal(t, "Your key is ready", p.text(t, "section.order h2"))
	require.Contains(t, p.text(t, "section.order p.lead"), "Your first payment was refunded")
	require.Contains(t, p.text(t, "li.key .state-note"), "works for the period your renewal paid")
	require.Equal(t, []string{"Active"}, p.badges(t))
	require.Equal(t, 2, p.copyButtons(t))
	p.screenshots(t, "first-payment-refunded")
}

// The Reset HWID button is offered for a key the service saw bound to a
// machine; a key it saw unbound says there is nothing to reset. Both are
// learnt from reads the service makes anyway (the key's writer, the
// periodic refresh, a reset), never from the page's view; a key never read
// keeps the button, and the reset finds out.
func TestOrderPageOffersTheHWIDResetOnlyForABoundKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	b.waitIdle(t)
	require.Nil(t, b.orderNow(t, s.ID).Keys[0].HWIDBound, "made as it should be, the key was not read back: its binding is not known")
	p.openOrder(t, s.ID, "delivered")
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`li.key button.reset-hwid`)))

	b.readKeysAgain(t) // never run, so unbound
	getUsers := b.Luarmor.CallCount(http.MethodGet, "/users")
	require.Equal(t, new(false), b.orderNow(t, s.ID).Keys[0].HWIDBound)

	p.openOrder(t, s.ID, "delivered")
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("button.reset-hwid").length`))
	require.Contains(t, p.text(t, "li.key .hwid"), "Not bound to a computer yet: nothing to reset.")
	require.Equal(t, 2, p.copyButtons(t), "the key itself works")
	p.screenshots(t, "hwid-not-bound")
	require.Equal(t, getUsers, b.Luarmor.CallCount(http.MethodGet, "/users"), "a page view reads nothing from Luarmor")

	require.NoError(t, b.Luarmor.Execute(project, key, "pc-1"))
	b.readKeysAgain(t)
	require.Equal(t, new(true), b.orderNow(t, s.ID).Keys[0].HWIDBound)
	p.openOrder(t, s.ID, "delivered")
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`li.key button.reset-hwid`)))
	require.False(t, eval[bool](t, p, resetButton+`.disabled`))
	require.NotContains(t, p.text(t, "li.key .hwid"), "Not bound")
	p.screenshots(t, "hwid-bound")

	// A reset unbinds the key, and the next computer binds it unseen: the
	// binding is unknown again, and the button stays (after the cooldown).
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	b.waitReset(t, s.ID, key, "done")
	require.Nil(t, b.orderNow(t, s.ID).Keys[0].HWIDBound)
}

// Support banned one key of a two-key order: the heading counts what
// works, and only the working key can be copied.
func TestOrderPageCountsTheKeysThatWork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "blacklist", keyBody(o.Keys[0].UserKey)))
	b.waitIdle(t)
	got := b.orderNow(t, s.ID)
	requireState(t, got, "active", "some_keys", [2]string{"revoked", "support"}, [2]string{"active", ""})
	require.Equal(t, 1, got.KeysWorking)

	p.openOrder(t, s.ID, "some")
	require.Equal(t, "1 of your 2 keys works", p.text(t, "section.order h2"))
	require.Equal(t, []string{"Revoked", "Active"}, p.badges(t))
	require.Contains(t, p.text(t, "li.key .state-note"), "The shop revoked this key")
	require.Equal(t, 2, p.copyButtons(t), "the working key and its loader line")
	p.screenshots(t, "some-keys")
}
