package stripefake_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/stripeapi/stripespec"
)

// A paid one-off session comes with its payment as Checkout leaves it: a
// payment intent whose latest charge has Stripe's receipt_url, served as
// Stripe serves them (checked against Stripe's spec), also expanded into
// the session along a dotted path.
func TestPaidSessionsHaveAPaymentWithAReceipt(t *testing.T) {
	t.Parallel()
	spec := stripespec.Load(t)
	f := stripefake.New("sk_test_schema")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.PutSession(stripefake.Session{ID: "cs_test_paid", CustomerEmail: "buyer@example.com", Customer: "cus_paid",
		PaymentIntent: "pi_paid", Currency: "jpy", Items: []stripefake.Item{{PriceID: "price_a", Quantity: 2, UnitAmount: 300}}})

	pi := getJSON(t, srv.URL, "/v1/payment_intents/pi_paid").(map[string]any)
	require.Empty(t, spec.Check("payment_intent", pi))
	require.Equal(t, stripefake.ChargeID("pi_paid"), pi["latest_charge"])
	charge := getJSON(t, srv.URL, "/v1/charges/"+stripefake.ChargeID("pi_paid")).(map[string]any)
	require.Empty(t, spec.Check("charge", charge))
	require.Equal(t, stripefake.ReceiptURL("pi_paid"), charge["receipt_url"])
	require.EqualValues(t, 600, charge["amount"])
	require.Equal(t, "jpy", charge["currency"])

	session := getJSON(t, srv.URL, "/v1/checkout/sessions/cs_test_paid?expand[]=payment_intent.latest_charge&expand[]=invoice.charge").(map[string]any)
	require.Empty(t, spec.Check("checkout.session", session))
	expanded := session["payment_intent"].(map[string]any)["latest_charge"].(map[string]any)
	require.Equal(t, stripefake.ReceiptURL("pi_paid"), expanded["receipt_url"])
	require.Nil(t, session["invoice"], "nothing to expand is left alone")
	require.Equal(t, "pi_paid", getJSON(t, srv.URL, "/v1/checkout/sessions/cs_test_paid").(map[string]any)["payment_intent"],
		"expanding changes nothing stored")

	// A test's own payment intent is kept; an unpaid session has no charge.
	f.PutObject(stripefake.KindPaymentIntent, "pi_own", map[string]any{"amount": 1, "currency": "usd", "status": "processing"})
	f.PutSession(stripefake.Session{ID: "cs_test_own", PaymentIntent: "pi_own", Items: []stripefake.Item{{PriceID: "price_a"}}})
	require.Equal(t, "processing", getJSON(t, srv.URL, "/v1/payment_intents/pi_own").(map[string]any)["status"])
	f.PutSession(stripefake.Session{ID: "cs_test_unpaid", PaymentIntent: "pi_unpaid", PaymentStatus: "unpaid", Status: "complete"})
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/payment_intents/pi_unpaid", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_schema")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
