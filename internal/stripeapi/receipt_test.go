package stripeapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// The receipt comes with the session, in the one request that reads it:
// the session's payment intent and its latest charge are expanded.
func TestCheckoutSessionWithReceiptReadsTheChargesReceiptInOneRequest(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_receipt", CustomerEmail: "buyer@example.com", PaymentIntent: "pi_receipt",
		Currency: "eur", Items: []stripefake.Item{{PriceID: "price_a", Quantity: 3, UnitAmount: 500}}})

	s, err := c.CheckoutSessionWithReceipt(context.Background(), "cs_test_receipt")
	require.NoError(t, err)
	require.Equal(t, "pi_receipt", s.PaymentIntent.ID)
	require.Equal(t, stripefake.ReceiptURL("pi_receipt"), stripeapi.ReceiptURL(s))
	require.Equal(t, int64(1500), s.AmountTotal)
	require.Equal(t, stripe.Currency("eur"), s.Currency)

	reqs := fake.Requests()
	require.Len(t, reqs, 1, "no request of its own for the receipt")
	q, err := url.ParseQuery(reqs[0].Query)
	require.NoError(t, err)
	var expanded []string
	for k, v := range q {
		if strings.HasPrefix(k, "expand") {
			expanded = append(expanded, v...)
		}
	}
	require.ElementsMatch(t, []string{"payment_intent.latest_charge", "invoice.charge"}, expanded)

	// Read without expanding, a session has no receipt to offer.
	plain, err := c.CheckoutSession(context.Background(), "cs_test_receipt")
	require.NoError(t, err)
	require.Empty(t, stripeapi.ReceiptURL(plain))
}

// A restricted key that may read sessions but not the payment's charge is
// refused the expanded read (403): the session is read again without it,
// so fulfilment never depends on the receipt.
func TestCheckoutSessionWithReceiptFallsBackWhenTheKeyMayNotReadCharges(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_restricted", PaymentIntent: "pi_restricted",
		Items: []stripefake.Item{{PriceID: "price_a"}}})
	fake.FailNext("/v1/checkout/sessions/cs_test_restricted", http.StatusForbidden, 1)

	s, err := c.CheckoutSessionWithReceipt(context.Background(), "cs_test_restricted")
	require.NoError(t, err)
	require.Equal(t, "cs_test_restricted", s.ID)
	require.Empty(t, stripeapi.ReceiptURL(s), "no receipt without the charge")
	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	require.Contains(t, reqs[0].Query, "expand")
	require.Empty(t, reqs[1].Query, "read again without expanding")

	// A session Stripe does not know is still not found.
	_, err = c.CheckoutSessionWithReceipt(context.Background(), "cs_test_unknown")
	require.True(t, stripeapi.IsNotFound(err), "%v", err)
}

// Only an https receipt becomes a link on the buyer's page.
func TestReceiptURLTakesHTTPSOnly(t *testing.T) {
	t.Parallel()
	session := func(receipt string) *stripe.CheckoutSession {
		return &stripe.CheckoutSession{PaymentIntent: &stripe.PaymentIntent{ID: "pi_1",
			LatestCharge: &stripe.Charge{ID: "ch_1", ReceiptURL: receipt}}}
	}
	require.Equal(t, "https://pay.stripe.com/receipts/x", stripeapi.ReceiptURL(session("https://pay.stripe.com/receipts/x")))
	require.Empty(t, stripeapi.ReceiptURL(session("javascript:alert(1)")))
	require.Empty(t, stripeapi.ReceiptURL(session("http://pay.stripe.com/receipts/x")))
	require.Equal(t, "https://pay.stripe.com/receipts/inv", stripeapi.ReceiptURL(&stripe.CheckoutSession{
		Invoice: &stripe.Invoice{ID: "in_1", Charge: &stripe.Charge{ReceiptURL: "https://pay.stripe.com/receipts/inv"}}}),
		"a subscription's first invoice's charge")
	require.Empty(t, stripeapi.ReceiptURL(&stripe.CheckoutSession{}))
}
