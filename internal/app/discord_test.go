package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	discordA = "423456789012345678"
	discordB = "523456789012345678"
)

// discordOrder pays for items with a Discord ID at checkout, as customer
// (a new one when ""), and waits until the order is fulfilled.
func (b *bundle) discordOrder(t *testing.T, discordID, customer string, items ...stripefake.Item) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	s := b.paidSession(t, items...)
	s.DiscordID = discordID
	if customer != "" {
		s.Customer = customer
	}
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "fulfilled")
	// A purchase that extended a key the buyer had is applied by the
	// key's writer right after the delivery.
	b.waitIdle(t)
	_, o := b.GetOrder(t, s.ID)
	return s, o
}

// refundOrder fully refunds a one-off order's payment and waits until the
// service has acted on it.
func (b *bundle) refundOrder(t *testing.T, s stripefake.Session) {
	t.Helper()
	b.Deliver(t, b.refund(t, fulfillertest.NewID("ch_"), s.PaymentIntent, "", 1000))
	b.waitIdle(t)
}

func TestStrangerTypingAnothersDiscordIDGetsAKeyOfTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, victim := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	victimKey := victim.Keys[0].UserKey
	require.Equal(t, "linked", victim.Keys[0].DiscordLink)
	require.NoError(t, b.Luarmor.Execute(project, victimKey, "hwid-victim"))
	victimExpiry := b.user(t, victimKey).AuthExpire

	stranger, o := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o.Keys, 1)
	strangerKey := o.Keys[0].UserKey
	require.NotEqual(t, victimKey, strangerKey, "the stranger never sees the victim's key")
	require.Equal(t, "in_use", o.Keys[0].DiscordLink)
	require.Nil(t, o.Keys[0].AuthExpire, "a key of its own, waiting for first use")
	require.Empty(t, b.user(t, strangerKey).DiscordID, "made without the Discord ID")
	require.Equal(t, victimExpiry, b.user(t, victimKey).AuthExpire, "the victim's key is not extended")
	require.Equal(t, discordA, b.user(t, victimKey).DiscordID)
	require.Zero(t, b.Count(t, "SELECT count(*) FROM order_keys WHERE extended_existing"))

	b.refundOrder(t, stranger)
	got := b.waitKeys(t, stranger.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, got.Keys[0].UserKey).IsBanned(), "the stranger's own key is revoked")
	u := b.user(t, victimKey)
	require.False(t, u.IsBanned(), "the victim's key keeps working")
	require.Equal(t, victimExpiry, u.AuthExpire)
	_, v := b.GetOrder(t, victim.CheckoutSessionID)
	require.Equal(t, "fulfilled", v.Status)
	require.Equal(t, "active", v.Keys[0].Status)
}

func TestSameCustomerBuyingAgainExtendsTheirKeyAndARefundTakesTheDaysBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o1.Keys[0].UserKey
	require.Contains(t, b.user(t, key).Note, "cus:"+first.Customer)
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	paidUntil := b.user(t, key).AuthExpire

	second, o2 := b.discordOrder(t, discordA, first.Customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o2.Keys, 1)
	require.Equal(t, key, o2.Keys[0].UserKey, "the customer's own key is extended")
	require.Equal(t, "linked", o2.Keys[0].DiscordLink)
	require.Equal(t, paidUntil+30*day, b.user(t, key).AuthExpire)

	b.refundKeepsSharedKey(t, second, first, key, paidUntil)
}

// refundKeepsSharedKey refunds one of two purchases holding key while the
// other (holder) still stands: the refunded month is taken back (to
// paidUntil) with one PATCH and no ban, the holder's order is untouched,
// and a dispute of the refunded payment afterwards takes nothing more.
func (b *bundle) refundKeepsSharedKey(t *testing.T, refunded, holder stripefake.Session, key string, paidUntil int64) {
	t.Helper()
	b.Luarmor.ResetCalls()
	b.refundOrder(t, refunded)
	got := b.waitKeys(t, refunded.ID, "revoked", "reverted")
	require.NotNil(t, got.Keys[0].AuthExpire)
	require.Equal(t, paidUntil, *got.Keys[0].AuthExpire)
	u := b.user(t, key)
	require.False(t, u.IsBanned(), "the other purchase still holds the key")
	require.Equal(t, paidUntil, u.AuthExpire, "only the refunded purchase's month is taken back")
	require.Zero(t, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
	_, o := b.GetOrder(t, holder.ID)
	require.Equal(t, "fulfilled", o.Status)
	require.Equal(t, "active", o.Keys[0].Status)

	ch := b.charge(t, refunded.PaymentIntent, "")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, refunded.PaymentIntent, "needs_response"))
	b.waitIdle(t)
	require.Equal(t, paidUntil, b.user(t, key).AuthExpire)
	require.False(t, b.user(t, key).IsBanned())
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPatch, "/users"), "one PATCH for the refund, none for the dispute")
}

func TestRevokedExtensionKeepsDaysAddedSince(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	first, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o1.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	paidUntil := b.user(t, key).AuthExpire
	second, _ := b.discordOrder(t, discordA, first.Customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.discordOrder(t, discordA, first.Customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, paidUntil+60*day, b.user(t, key).AuthExpire)

	b.refundOrder(t, second)
	b.waitKeys(t, second.ID, "revoked", "reverted")
	require.Equal(t, paidUntil+30*day, b.user(t, key).AuthExpire, "only the refunded purchase's days are taken back")
	require.Equal(t, 1.0, b.scrape(t).value("fulfiller_keys_revoked_total", map[string]string{"action": "revert_extension"}),
		"counted as a revocation that kept the key")
}

func TestInvalidDiscordIDStillDeliversTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.discordOrder(t, "buyer#1234", "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o.Keys, 1)
	require.Equal(t, "invalid", o.Keys[0].DiscordLink)
	require.Empty(t, b.user(t, o.Keys[0].UserKey).DiscordID)
	require.Equal(t, 1, b.luarmorUsersFor(s.ID))
	require.Equal(t, 2, b.creates(), "the refused create and the one without the ID")
}

// Luarmor refusing the buyer's Discord ID in words the client knows no
// class for is never taken for an invalid ID: it is logged at warn with the
// message, and a key holding the ID makes it in use, as it is.
func TestDiscordRefusalInUnknownWordsIsDecidedByTheKeyHoldingTheID(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	_, first := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, "linked", first.Keys[0].DiscordLink)

	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRefuse, Message: "Discord ID is taken by another user."})
	_, o := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o.Keys, 1)
	require.NotEqual(t, first.Keys[0].UserKey, o.Keys[0].UserKey)
	require.Equal(t, "in_use", o.Keys[0].DiscordLink, "a key holds the ID: in use, not invalid")
	require.Empty(t, b.user(t, o.Keys[0].UserKey).DiscordID)
	require.Contains(t, logs.String(), `"level":"WARN","msg":"luarmor refused the buyer's Discord ID with a message of no known class`)
	require.Contains(t, logs.String(), `"luarmor_message":"Discord ID is taken by another user."`)

	// No key holds the ID: the refusal can only be about the ID itself,
	// recorded as invalid, with a warning naming the message again.
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRefuse, Message: "Discord ID is taken by another user."})
	_, o = b.discordOrder(t, discordB, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, "invalid", o.Keys[0].DiscordLink)
	require.Empty(t, b.user(t, o.Keys[0].UserKey).DiscordID)
	require.Contains(t, logs.String(), `"msg":"no key holds the refused Discord ID`)
}

func TestInvalidDiscordIDIsNotSentAgainOnRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The first create is refused for its Discord ID; the create without
	// it fails (502, not applied), and the next one is applied but its
	// answer is lost.
	for _, kind := range []sandbox.FaultKind{sandbox.FaultLatency, sandbox.FaultHTML502, sandbox.FaultApplyThenDrop} {
		b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: kind, Latency: time.Millisecond})
	}
	s, o := b.discordOrder(t, "buyer#1234", "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, "invalid", o.Keys[0].DiscordLink)
	require.Equal(t, 1, b.luarmorUsersFor(s.ID), "the lost answer was found by its reference, not minted again")
	var creates, withID int
	for _, c := range b.Luarmor.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/users") {
			creates++
			if strings.Contains(string(c.Body), "discord_id") {
				withID++
			}
		}
	}
	require.Equal(t, 3, creates)
	require.Equal(t, 1, withID, "Luarmor refused the ID once; it was never sent again")
}

func TestDiscordLinkWithoutIDAndForLaterUnits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, none := b.discordOrder(t, "", "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, "none", none.Keys[0].DiscordLink)

	_, two := b.discordOrder(t, discordB, "", stripefake.Item{PriceID: priceMonth, Quantity: 2})
	require.Len(t, two.Keys, 2)
	require.Equal(t, "linked", two.Keys[0].DiscordLink)
	require.Equal(t, discordB, b.user(t, two.Keys[0].UserKey).DiscordID)
	require.Equal(t, "none", two.Keys[1].DiscordLink)
	require.Empty(t, b.user(t, two.Keys[1].UserKey).DiscordID)
}

func TestOrderWithoutCustomerNeverExtends(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	s.DiscordID, s.Customer = discordA, ""
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o2 := b.WaitOrder(t, s.ID, "fulfilled")
	require.NotEqual(t, o1.Keys[0].UserKey, o2.Keys[0].UserKey)
	require.Equal(t, "in_use", o2.Keys[0].DiscordLink)
	var customer string
	require.NoError(t, b.Pool.QueryRow(context.Background(), "SELECT customer_id FROM orders WHERE checkout_session_id = $1", s.ID).Scan(&customer))
	require.Empty(t, customer)
}

// sharedKey sells a month with a Discord ID, starts the key, and sells the
// same customer a second month that extends it. It returns both sessions,
// the key and its expiry before the second purchase.
func (b *bundle) sharedKey(t *testing.T) (first, second stripefake.Session, key string, paidUntil int64) {
	t.Helper()
	first, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key = o1.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	paidUntil = b.user(t, key).AuthExpire
	second, o2 := b.discordOrder(t, discordA, first.Customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Equal(t, key, o2.Keys[0].UserKey, "the second purchase extends the first key")
	require.Equal(t, paidUntil+30*day, b.user(t, key).AuthExpire)
	return first, second, key, paidUntil
}

func TestRefundOfTheFirstPurchaseKeepsTheKeyForTheLaterOneUntilItIsRefundedToo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, second, key, paidUntil := b.sharedKey(t)

	b.refundKeepsSharedKey(t, first, second, key, paidUntil)

	// The last payment holding the key is refunded: the key goes, and its
	// days are not given back through the second purchase's extend_from.
	b.refundBansSharedKey(t, second, first, key, paidUntil)
}

// refundBansSharedKey refunds the last purchase holding key (the other one
// was refunded before and is reverted): the key is banned, with the
// expiry the first refund left (paidUntil), and no day given back.
func (b *bundle) refundBansSharedKey(t *testing.T, last, reverted stripefake.Session, key string, paidUntil int64) {
	t.Helper()
	b.refundOrder(t, last)
	b.waitKeys(t, last.ID, "revoked", "blacklisted")
	u := b.user(t, key)
	require.True(t, u.IsBanned(), "no payment holds the key any more")
	require.Equal(t, paidUntil, u.AuthExpire)
	_, o := b.GetOrder(t, reverted.ID)
	require.Equal(t, "reverted", o.Keys[0].Status)
}

func TestRefundOfTheLaterPurchaseThenTheFirstBansTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, second, key, paidUntil := b.sharedKey(t)

	b.refundOrder(t, second)
	b.waitKeys(t, second.ID, "revoked", "reverted")
	require.Equal(t, paidUntil, b.user(t, key).AuthExpire)
	require.False(t, b.user(t, key).IsBanned())

	b.refundBansSharedKey(t, first, second, key, paidUntil)
}

func TestBothPurchasesOfAKeyRefundedAtOnceBanIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, second, key, _ := b.sharedKey(t)

	b.Deliver(t, b.refund(t, fulfillertest.NewID("ch_"), first.PaymentIntent, "", 1000))
	b.Deliver(t, b.refund(t, fulfillertest.NewID("ch_"), second.PaymentIntent, "", 1000))
	b.waitIdle(t)
	require.True(t, b.user(t, key).IsBanned(), "however the two revocations interleave, the key does not outlive both payments")
	_, o1 := b.GetOrder(t, first.ID)
	_, o2 := b.GetOrder(t, second.ID)
	require.Equal(t, "revoked", o1.Status)
	require.Equal(t, "revoked", o2.Status)
	statuses := []string{o1.Keys[0].Status, o2.Keys[0].Status}
	require.Contains(t, statuses, "blacklisted", "one of them banned the key")
	for _, s := range statuses {
		require.Contains(t, []string{"reverted", "blacklisted"}, s)
	}
}

func TestDisputeWonOfTheLastPurchaseHoldingAKeyLiftsItsBan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, second, key, paidUntil := b.sharedKey(t)
	b.refundOrder(t, first)
	b.waitKeys(t, first.ID, "revoked", "reverted")

	ch := b.charge(t, second.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, second.PaymentIntent, "needs_response"))
	b.waitKeys(t, second.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned(), "a dispute takes the key like a refund")

	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, second.PaymentIntent, "won"))
	b.waitKeys(t, second.ID, "fulfilled", "active")
	u := b.user(t, key)
	require.False(t, u.IsBanned(), "the won dispute gives the key back")
	require.Equal(t, paidUntil, u.AuthExpire, "with the second purchase's month only: the first was refunded")
}

func TestFirstPurchaseRefundWhoseAnswerIsLostTakesItsDaysOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, _, key, paidUntil := b.sharedKey(t)

	b.Luarmor.ResetCalls()
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPatch, PathContains: "/users", Kind: sandbox.FaultApplyThenDrop, Times: 1})
	b.refundOrder(t, first)
	b.waitKeys(t, first.ID, "revoked", "reverted")
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPatch, "/users"),
		"the retry read the key, found the expiry the lost answer had set, and sent nothing again")
	require.Equal(t, paidUntil, b.user(t, key).AuthExpire, "the month was taken off once")
	require.False(t, b.user(t, key).IsBanned())
}

// An inquiry about the purchase that made a key later purchases extended
// suspends the key and, once it closes, gives it back with every day: it
// takes nothing for good.
func TestInquiryAboutTheFirstPurchaseOfASharedKeySuspendsAndGivesEveryDayBack(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.SuspendOnInquiry = true }))
	first, _, key, paidUntil := b.sharedKey(t)

	ch := b.charge(t, first.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, first.PaymentIntent, "warning_needs_response"))
	b.waitKeys(t, first.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned(), "suspended while the inquiry is open")

	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, first.PaymentIntent, "warning_closed"))
	b.waitKeys(t, first.ID, "fulfilled", "active")
	u := b.user(t, key)
	require.False(t, u.IsBanned())
	require.Equal(t, paidUntil+30*day, u.AuthExpire, "no day was taken")
}
