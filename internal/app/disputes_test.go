package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

func withPolicy(change func(*order.Policy)) func(*options) {
	return func(o *options) {
		p := order.DefaultPolicy()
		change(&p)
		o.policy = &p
	}
}

// disputed buys one key and registers its charge with Stripe.
func (b *bundle) disputed(t *testing.T) (s stripefake.Session, key, charge string) {
	t.Helper()
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	return s, o.Keys[0].UserKey, b.charge(t, s.PaymentIntent, "")
}

// requireUntouched waits for every job and requires the order fulfilled,
// its key active and unbanned, and no blacklist ever sent.
func (b *bundle) requireUntouched(t *testing.T, s stripefake.Session, key string) {
	t.Helper()
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "fulfilled", "active")
	require.False(t, b.user(t, key).IsBanned())
	require.Zero(t, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
}

func (b *bundle) stripeCalls(method, path string) int {
	n := 0
	for _, r := range b.Stripe.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func TestInquiryWithActionNoneLeavesKeysActive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key, ch := b.disputed(t)
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "warning_needs_response"))
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.updated", dp, ch, s.PaymentIntent, "warning_under_review"))
	b.requireUntouched(t, s, key)
	require.Equal(t, 2, b.stripeCalls(http.MethodGet, "/v1/disputes/"+dp), "each event read the dispute back")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM revocations"))

	// It closes without a chargeback: still nothing to undo.
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "warning_closed"))
	b.requireUntouched(t, s, key)
}

func TestSuspendedInquiryIsLiftedWhenItCloses(t *testing.T) {
	t.Parallel()
	// A closed inquiry lifts its suspension whatever DISPUTE_WON_ACTION says.
	b := setup(t, withPolicy(func(p *order.Policy) { p.SuspendOnInquiry = true; p.UnbanWhenDisputeWon = false }))
	s, key, ch := b.disputed(t)
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "warning_needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned())

	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "warning_closed"))
	b.waitKeys(t, s.ID, "fulfilled", "active")
	require.False(t, b.user(t, key).IsBanned())
}

func TestInquiryTurnedChargebackBansWhetherStripeUpdatesItOrOpensANewDispute(t *testing.T) {
	t.Parallel()
	t.Run("same dispute updated", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s, key, ch := b.disputed(t)
		dp := fulfillertest.NewID("dp_")
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "warning_needs_response"))
		b.requireUntouched(t, s, key)
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.updated", dp, ch, s.PaymentIntent, "needs_response"))
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		require.True(t, b.user(t, key).IsBanned())
	})
	t.Run("suspended inquiry closed, new chargeback", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withPolicy(func(p *order.Policy) { p.SuspendOnInquiry = true }))
		s, key, ch := b.disputed(t)
		inquiry, chargeback := fulfillertest.NewID("dp_"), fulfillertest.NewID("dp_")
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", inquiry, ch, s.PaymentIntent, "warning_needs_response"))
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", chargeback, ch, s.PaymentIntent, "needs_response"))
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", inquiry, ch, s.PaymentIntent, "warning_closed"))
		b.waitIdle(t)
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		require.True(t, b.user(t, key).IsBanned(), "the chargeback still holds the key")
	})
	t.Run("suspended inquiry escalated, its close read late", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withPolicy(func(p *order.Policy) { p.SuspendOnInquiry = true }))
		s, key, ch := b.disputed(t)
		dp := fulfillertest.NewID("dp_")
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "warning_needs_response"))
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.updated", dp, ch, s.PaymentIntent, "needs_response"))
		b.waitIdle(t)
		b.putDispute(dp, ch, s.PaymentIntent, "warning_closed") // a reading from before the escalation
		b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "warning_closed"))
		b.waitIdle(t)
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		require.True(t, b.user(t, key).IsBanned())
	})
}

func TestChargebackLostKeepsTheBanAndWonLiftsIt(t *testing.T) {
	t.Parallel()
	for status, want := range map[string]bool{"lost": true, "won": false} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s, key, ch := b.disputed(t)
			dp := fulfillertest.NewID("dp_")
			b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
			b.Deliver(t, b.disputeEvent(t, "charge.dispute.updated", dp, ch, s.PaymentIntent, "under_review"))
			b.waitKeys(t, s.ID, "revoked", "blacklisted")
			b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, status))
			b.waitIdle(t)
			if want {
				b.waitKeys(t, s.ID, "revoked", "blacklisted")
			} else {
				b.waitKeys(t, s.ID, "fulfilled", "active")
			}
			require.Equal(t, want, b.user(t, key).IsBanned())
			require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
		})
	}
}

func TestReplayedWonEventUnbansNothingStripeSaysLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key, ch := b.disputed(t)
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "lost"))
	b.waitIdle(t)

	// A closed event whose body says won, while Stripe says lost.
	b.Deliver(t, fulfillertest.Event(t, "charge.dispute.closed", mustJSON(t, disputeObject(dp, ch, s.PaymentIntent, "won"))))
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned())
	require.Zero(t, b.Luarmor.CallCount(http.MethodGet, "/users/unban"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM revocations WHERE status = 'lifted'"))
}

func TestCreatedEventOfADisputeStripeSaysWonRevokesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key, ch := b.disputed(t)
	dp := fulfillertest.NewID("dp_")
	b.putDispute(dp, ch, s.PaymentIntent, "won")
	b.Deliver(t, fulfillertest.Event(t, "charge.dispute.created", mustJSON(t, disputeObject(dp, ch, s.PaymentIntent, "needs_response"))))
	b.requireUntouched(t, s, key)
	require.Equal(t, 1, b.stripeCalls(http.MethodGet, "/v1/disputes/"+dp))
}

func TestDisputeStripeDoesNotKnowIsSkippedAndAFailedReadRetried(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	s, key, ch := b.disputed(t)

	unknown := fulfillertest.NewID("dp_")
	b.Deliver(t, fulfillertest.Event(t, "charge.dispute.created", mustJSON(t, disputeObject(unknown, ch, s.PaymentIntent, "needs_response"))))
	b.requireUntouched(t, s, key)
	require.Contains(t, logs.String(), `"level":"ERROR","msg":"an event named a dispute this Stripe account does not know`)
	read := rivertest.RequireInserted(t.Context(), t, b.jobsDB(), jobs.ApplyDisputeArgs{},
		&rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted})
	require.Equal(t, unknown, read.Args.DisputeID)

	// Stripe failing outlasts stripe-go's own two retries: the job retries.
	dp := fulfillertest.NewID("dp_")
	b.Stripe.FailNext("/v1/disputes/"+dp, http.StatusInternalServerError, 4)
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	reads := rivertest.RequireManyInserted(t.Context(), t, b.jobsDB(), []rivertest.ExpectedJob{
		{Args: jobs.ApplyDisputeArgs{}}, {Args: jobs.ApplyDisputeArgs{}, Opts: &rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted}},
	})
	require.Equal(t, 2, reads[1].Attempt, "the read of the known dispute completed on its second attempt")
}

func TestRefundsRevokeOnceTheyReachTheShare(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.RefundRevokePercent = 50 }))

	// Below the share: recorded, nothing changes.
	s, key, ch := b.disputed(t)
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 300))
	b.requireUntouched(t, s, key)
	require.Equal(t, 1, b.stripeCalls(http.MethodGet, "/v1/charges/"+ch), "the charge was read back")

	// A second partial refund brings the total to 60%.
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 600))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned())

	// Above the share at once.
	s2, key2, ch2 := b.disputed(t)
	b.Deliver(t, b.refund(t, ch2, s2.PaymentIntent, "", 500))
	b.waitKeys(t, s2.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key2).IsBanned())
}

func TestRefundShareIsReadFromStripeNotTheEvent(t *testing.T) {
	t.Parallel()
	b := setup(t) // REFUND_REVOKE_PERCENT 100
	s, key, ch := b.disputed(t)
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 999))
	b.requireUntouched(t, s, key)

	// An event claiming a full refund of a charge Stripe says is refunded
	// 999 of 1000 revokes nothing.
	b.Deliver(t, fulfillertest.Event(t, "charge.refunded", mustJSON(t, map[string]any{
		"id": ch, "object": "charge", "payment_intent": s.PaymentIntent, "amount": 1000, "amount_refunded": 1000, "refunded": true,
	})))
	b.requireUntouched(t, s, key)
}

// The share refunded is of what the charge captured: a charge that
// captured nothing (its authorisation released, which Stripe reports as a
// refund of the whole amount) revokes nothing, and a refund of everything
// a partial capture took revokes.
func TestRefundShareIsOfTheCapturedAmount(t *testing.T) {
	t.Parallel()
	b := setup(t) // REFUND_REVOKE_PERCENT 100
	refunded := func(t *testing.T, ch, pi string, captured bool, amountCaptured, amountRefunded int64) []byte {
		obj := map[string]any{"id": ch, "object": "charge", "payment_intent": pi, "paid": true, "captured": captured,
			"amount": 1000, "amount_captured": amountCaptured, "amount_refunded": amountRefunded, "refunded": true}
		b.Stripe.PutObject(stripefake.KindCharge, ch, obj)
		return fulfillertest.Event(t, "charge.refunded", mustJSON(t, obj))
	}

	s, key, ch := b.disputed(t)
	b.Deliver(t, refunded(t, ch, s.PaymentIntent, false, 0, 1000))
	b.requireUntouched(t, s, key)
	require.Equal(t, 1, b.stripeCalls(http.MethodGet, "/v1/charges/"+ch), "the charge was read back")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1", ch))

	s2, key2, ch2 := b.disputed(t)
	b.Deliver(t, refunded(t, ch2, s2.PaymentIntent, true, 600, 600))
	b.waitKeys(t, s2.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key2).IsBanned())
	require.Equal(t, "Payment refunded", b.user(t, key2).BanReason)
}

// refundUpdated sets what Stripe's API says the charge of a refund (1000,
// all captured) has refunded in total now, and returns the
// charge.refund.updated event of the refund with status.
func (b *bundle) refundUpdated(t *testing.T, refundID, chargeID, pi string, refunded int64, status string) []byte {
	t.Helper()
	b.putCharge(chargeID, pi, "", refunded)
	obj := map[string]any{"id": refundID, "object": "refund", "amount": 1000, "charge": chargeID, "payment_intent": pi,
		"currency": "usd", "status": status, "failure_reason": nil}
	if status == "failed" {
		obj["failure_reason"] = "expired_or_canceled_card"
	}
	return fulfillertest.Event(t, "charge.refund.updated", mustJSON(t, obj))
}

// A refund that fails after charge.refunded (the card was closed) gives the
// money back to the shop: Stripe lowers the charge's amount_refunded, and
// the keys the refund revoked are active again, whatever DISPUTE_WON_ACTION
// says. A replay of the old charge.refunded then changes nothing, and a new
// refund revokes them again.
func TestFailedRefundRestoresTheKeys(t *testing.T) {
	t.Parallel()
	for name, keepDisputeBans := range map[string]bool{"default": false, "dispute won keeps bans": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, withPolicy(func(p *order.Policy) { p.UnbanWhenDisputeWon = !keepDisputeBans }))
			s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
			ch := b.charge(t, s.PaymentIntent, "")
			re := fulfillertest.NewID("re_")
			refunded := b.refund(t, ch, s.PaymentIntent, "", 1000)
			b.Deliver(t, refunded)
			b.waitKeys(t, s.ID, "revoked", "blacklisted")
			for _, k := range o.Keys {
				require.True(t, b.user(t, k.UserKey).IsBanned())
			}

			b.Deliver(t, b.refundUpdated(t, re, ch, s.PaymentIntent, 0, "failed"))
			got := b.waitKeys(t, s.ID, "fulfilled", "active")
			require.Len(t, got.Keys, 2)
			for _, k := range got.Keys {
				require.False(t, b.user(t, k.UserKey).IsBanned(), "the key works again")
			}
			b.waitIdle(t)
			require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1 AND status = 'lifted'", ch))
			require.Equal(t, 2, b.Luarmor.CallCount(http.MethodGet, "/users/unban"), "one unban per key")

			// The old charge.refunded again: Stripe says nothing is refunded.
			b.Deliver(t, refunded)
			b.waitIdle(t)
			b.waitKeys(t, s.ID, "fulfilled", "active")
			require.Equal(t, 2, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"), "no ban since the first")

			// The shop refunds again, and this refund goes through.
			b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
			b.waitKeys(t, s.ID, "revoked", "blacklisted")
			for _, k := range o.Keys {
				require.True(t, b.user(t, k.UserKey).IsBanned())
			}
			require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1 AND status = 'active'", ch))
		})
	}
}

// charge.refund.updated, repeated or stale (its body says the refund
// failed), restores nothing while Stripe's charge still shows the refund.
func TestRefundUpdateOfARefundStripeStillCountsChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key, ch := b.disputed(t)
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)

	re := fulfillertest.NewID("re_")
	succeeded := b.refundUpdated(t, re, ch, s.PaymentIntent, 1000, "succeeded")
	b.Deliver(t, succeeded)
	// The same event again (recorded once), and a second event for the
	// same change.
	b.Deliver(t, succeeded)
	b.Deliver(t, b.refundUpdated(t, re, ch, s.PaymentIntent, 1000, "succeeded"))
	stale := fulfillertest.Event(t, "charge.refund.updated", mustJSON(t, map[string]any{
		"id": re, "object": "refund", "amount": 1000, "charge": ch, "payment_intent": s.PaymentIntent,
		"status": "failed", "failure_reason": "lost_or_stolen_card",
	}))
	b.Deliver(t, stale)
	b.waitIdle(t)

	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.True(t, b.user(t, key).IsBanned())
	require.Zero(t, b.Luarmor.CallCount(http.MethodGet, "/users/unban"))
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM revocations WHERE source_id = $1 AND status = 'active'", ch))
	require.Equal(t, 4, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'apply_refund' AND state = 'completed'"),
		"each distinct event read the charge back")
}

func TestEarlyFraudWarning(t *testing.T) {
	t.Parallel()
	warning := func(t *testing.T, ch, pi string) []byte {
		return fulfillertest.Event(t, "radar.early_fraud_warning.created", mustJSON(t, map[string]any{
			"id": fulfillertest.NewID("issfr_"), "object": "radar.early_fraud_warning", "charge": ch, "payment_intent": pi,
			"fraud_type": "made_with_stolen_card", "actionable": true,
		}))
	}
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		var logs logtest.Buffer
		b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		s, key, ch := b.disputed(t)
		b.Deliver(t, warning(t, ch, s.PaymentIntent))
		b.requireUntouched(t, s, key)
		require.Contains(t, logs.String(), `"level":"WARN","msg":"early fraud warning; keys untouched`)
		require.Contains(t, logs.String(), `"fraud_type":"made_with_stolen_card"`)
		require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events WHERE type = 'radar.early_fraud_warning.created'"))
	})
	t.Run("revoke", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withPolicy(func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true }))
		s, key, ch := b.disputed(t)
		b.Deliver(t, warning(t, ch, s.PaymentIntent))
		b.waitKeys(t, s.ID, "revoked", "blacklisted")
		u := b.user(t, key)
		require.True(t, u.IsBanned())
		require.Equal(t, order.FraudWarningBanReason, u.BanReason)
	})
}

// subscriptionPayment buys a subscription key, registers the subscription
// with Stripe and pays a renewal; it returns the renewal's payment intent,
// invoice and charge.
func (b *bundle) subscriptionPayment(t *testing.T) (s stripefake.Session, pi, invoice, charge string) {
	t.Helper()
	s, o := b.subscriptionOrder(t, 1)
	b.Stripe.PutObject(stripefake.KindSubscription, s.Subscription, map[string]any{"status": "active", "customer": s.Customer})
	invoiceID, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+60*day)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Len(t, o.Keys, 1)
	pi = fulfillertest.NewID("pi_")
	return s, pi, invoiceID, b.charge(t, pi, invoiceID)
}

func TestRevokedSubscriptionIsCancelledInStripeOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.CancelSubscriptionOnRevoke = true; p.SuspendOnInquiry = true }))
	s, pi, inv, ch := b.subscriptionPayment(t)
	deletes := func() int { return b.stripeCalls(http.MethodDelete, "/v1/subscriptions/"+s.Subscription) }

	// A suspended inquiry takes no money: the subscription stays.
	inquiry := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", inquiry, ch, pi, "warning_needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	require.Zero(t, deletes())

	// A chargeback, its event delivered twice and updated, then a full
	// refund of the same subscription.
	dp := fulfillertest.NewID("dp_")
	created := b.disputeEvent(t, "charge.dispute.created", dp, ch, pi, "needs_response")
	b.Deliver(t, created)
	b.Deliver(t, created)
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.updated", dp, ch, pi, "under_review"))
	b.waitIdle(t)
	b.Deliver(t, b.refund(t, ch, pi, inv, 1000))
	b.waitIdle(t)

	// The job run again.
	_, err := b.Main.River.Insert(context.Background(), jobs.CancelSubscriptionArgs{SubscriptionID: s.Subscription}, nil)
	require.NoError(t, err)
	b.waitIdle(t)

	require.Equal(t, 1, deletes())
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM subscription_cancellations WHERE subscription_id = $1 AND outcome = 'cancelled'",
		s.Subscription))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
}

func TestAlreadyCancelledSubscriptionIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.CancelSubscriptionOnRevoke = true }))
	s, pi, _, ch := b.subscriptionPayment(t)
	b.Stripe.PutObject(stripefake.KindSubscription, s.Subscription, map[string]any{"status": "canceled"})
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, pi, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	require.Equal(t, 1, b.stripeCalls(http.MethodDelete, "/v1/subscriptions/"+s.Subscription))
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM subscription_cancellations
		WHERE subscription_id = $1 AND outcome = 'already_cancelled' AND cancelled_at IS NOT NULL`, s.Subscription))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'cancel_subscription' AND state <> 'completed'"))
}

func TestSubscriptionStaysWhenCancelOnRevokeIsOff(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.CancelSubscriptionOnRevoke = false }))
	s, pi, _, ch := b.subscriptionPayment(t)
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, pi, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	for _, r := range b.Stripe.Requests() {
		require.NotEqual(t, http.MethodDelete, r.Method, "nothing is cancelled: %+v", r)
	}
}
