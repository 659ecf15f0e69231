package stripeapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

func TestDisputeIsReadBackAsStripeHasIt(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindDispute, "dp_1", map[string]any{
		"charge": "ch_1", "payment_intent": "pi_1", "status": "warning_needs_response", "reason": "fraudulent",
		"amount": 1000, "currency": "usd",
	})
	d, err := c.Dispute(context.Background(), "dp_1")
	require.NoError(t, err)
	require.Equal(t, "dp_1", d.ID)
	require.Equal(t, stripe.DisputeStatusWarningNeedsResponse, d.Status)
	require.NotNil(t, d.Charge)
	require.Equal(t, "ch_1", d.Charge.ID)
	require.NotNil(t, d.PaymentIntent)
	require.Equal(t, "pi_1", d.PaymentIntent.ID)

	// Stripe's answer changes as the dispute moves on.
	fake.PutObject(stripefake.KindDispute, "dp_1", map[string]any{"charge": "ch_1", "status": "won"})
	d, err = c.Dispute(context.Background(), "dp_1")
	require.NoError(t, err)
	require.Equal(t, stripe.DisputeStatusWon, d.Status)

	_, err = c.Dispute(context.Background(), "dp_unknown")
	require.True(t, stripeapi.IsNotFound(err), "%v", err)
	require.ErrorContains(t, err, "retrieving dispute dp_unknown")
}

func TestChargeReadBackCarriesTheRefundedShare(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindCharge, "ch_r", map[string]any{
		"payment_intent": "pi_r", "amount": 1000, "amount_refunded": 600, "refunded": false,
	})
	ch, err := c.Charge(context.Background(), "ch_r")
	require.NoError(t, err)
	require.EqualValues(t, 1000, ch.Amount)
	require.EqualValues(t, 600, ch.AmountRefunded)
	require.False(t, ch.Refunded)
}

func TestCancelSubscriptionOnceThenStripeNoLongerKnowsIt(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindSubscription, "sub_1", map[string]any{"status": "active", "customer": "cus_1"})

	s, err := c.CancelSubscription(context.Background(), "sub_1")
	require.NoError(t, err)
	require.Equal(t, "sub_1", s.ID)
	require.Equal(t, stripe.SubscriptionStatusCanceled, s.Status)
	require.NotZero(t, s.CanceledAt)

	got, err := c.CancelSubscription(context.Background(), "sub_1")
	require.Nil(t, got)
	require.True(t, stripeapi.IsNotFound(err), "an already cancelled subscription is answered as unknown: %v", err)
	require.ErrorContains(t, err, "cancelling subscription sub_1")

	_, err = c.CancelSubscription(context.Background(), "sub_never")
	require.True(t, stripeapi.IsNotFound(err), "%v", err)

	var deletes int
	for _, r := range fake.Requests() {
		if r.Method == http.MethodDelete {
			require.Contains(t, []string{"/v1/subscriptions/sub_1", "/v1/subscriptions/sub_never"}, r.Path)
			deletes++
		}
	}
	require.Equal(t, 3, deletes, "stripe-go does not retry a 404")
}

func TestCancelSubscriptionServerErrorIsRetryable(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindSubscription, "sub_2", map[string]any{"status": "active"})
	fake.FailNext("/v1/subscriptions/sub_2", http.StatusInternalServerError, 10)
	_, err := c.CancelSubscription(context.Background(), "sub_2")
	require.Error(t, err)
	require.True(t, stripeapi.IsRetryable(err), "%v", err)
	require.False(t, stripeapi.IsNotFound(err))
}

// Stripe answers a cancel with the whole subscription, its items
// included, as GET does: the stand-in too, so what the service (or
// `simulate cancel`, which forwards the answer as the event's object)
// reads of a cancelled subscription is what Stripe sends.
func TestCancelAnswersTheWholeSubscriptionItemsIncluded(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSubscription(stripefake.Subscription{ID: "sub_items", Customer: "cus_1", CurrentPeriodStart: 1_800_000_000,
		CurrentPeriodEnd: 1_802_592_000, Items: []stripefake.SubscriptionItem{{PriceID: "price_a", Quantity: 2}}})
	before, err := c.Subscription(context.Background(), "sub_items")
	require.NoError(t, err)

	s, err := c.CancelSubscription(context.Background(), "sub_items")
	require.NoError(t, err)
	require.Equal(t, stripe.SubscriptionStatusCanceled, s.Status)
	require.NotNil(t, s.Items)
	require.Len(t, s.Items.Data, 1)
	require.Equal(t, "price_a", s.Items.Data[0].Price.ID)
	require.EqualValues(t, 2, s.Items.Data[0].Quantity)
	require.Equal(t, before.CurrentPeriodEnd, s.CurrentPeriodEnd)

	after, err := c.Subscription(context.Background(), "sub_items")
	require.NoError(t, err)
	require.Equal(t, s.Items.Data[0].ID, after.Items.Data[0].ID, "the answer and a read agree")
}
