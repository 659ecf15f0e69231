package stripefake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/stripeapi/stripespec"
)

func getJSON(t *testing.T, base, path string) any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_schema")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var v any
	require.NoError(t, json.Unmarshal(body, &v))
	return v
}

// TestStandInObjectsAreStripesObjects checks the objects the Stripe
// stand-in serves against Stripe's own OpenAPI spec of 2023-10-16: every
// field it sends is one Stripe sends, of Stripe's type. A field the
// service reads that Stripe does not send, or types differently, would
// pass every test against the stand-in and fail against Stripe.
func TestStandInObjectsAreStripesObjects(t *testing.T) {
	t.Parallel()
	spec := stripespec.Load(t)
	f := stripefake.New("sk_test_schema")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	f.PutSession(stripefake.Session{ID: "cs_test_schema", Mode: "subscription", CustomerEmail: "buyer@example.com",
		Customer: "cus_schema", Subscription: "sub_schema", Invoice: "in_first", DiscordID: "123456789012345678",
		Items: []stripefake.Item{{PriceID: "price_month", Quantity: 2, Recurring: true}, {PriceID: "price_once", Quantity: 1}}})
	f.PutSubscription(stripefake.Subscription{ID: "sub_paused", Customer: "cus_schema", CurrentPeriodStart: 1_800_000_000,
		CurrentPeriodEnd: 1_802_592_000, PauseCollection: "void", PauseResumesAt: 1_803_000_000,
		Items: []stripefake.SubscriptionItem{{PriceID: "price_month", Quantity: 1}}})

	for _, c := range []struct{ path, schema string }{
		{"/v1/checkout/sessions/cs_test_schema", "checkout.session"},
		{"/v1/subscriptions/sub_schema", "subscription"},
		{"/v1/subscriptions/sub_paused", "subscription"},
	} {
		got := getJSON(t, srv.URL, c.path)
		require.Empty(t, spec.Check(c.schema, got), "%s", c.path)
	}
	// The objects the service's tests register, as they register them.
	f.PutObject(stripefake.KindCharge, "ch_schema", map[string]any{"object": "charge", "payment_intent": "pi_schema",
		"invoice": "in_renewal", "amount": 1000, "paid": true, "amount_refunded": 1000, "refunded": true})
	f.PutObject(stripefake.KindDispute, "dp_schema", map[string]any{"object": "dispute", "charge": "ch_schema",
		"payment_intent": "pi_schema", "status": "needs_response", "reason": "fraudulent", "amount": 1000})
	f.PutObject(stripefake.KindInvoice, "in_renewal", map[string]any{"object": "invoice", "subscription": "sub_schema",
		"billing_reason": "subscription_cycle", "status": "paid", "paid": true, "customer": "cus_schema",
		"payment_intent": "pi_schema", "charge": "ch_schema",
		"lines": []any{map[string]any{"object": "line_item", "type": "subscription", "proration": false,
			"subscription": "sub_schema", "amount": 1000, "quantity": 2,
			"price":  map[string]any{"id": "price_month", "object": "price"},
			"period": map[string]any{"start": 1_802_592_000, "end": 1_805_184_000}}}})
	for _, c := range []struct{ path, schema string }{
		{"/v1/charges/ch_schema", "charge"},
		{"/v1/disputes/dp_schema", "dispute"},
		{"/v1/invoices/in_renewal", "invoice"},
	} {
		got := getJSON(t, srv.URL, c.path)
		require.Empty(t, spec.Check(c.schema, got), "%s", c.path)
	}
	items := getJSON(t, srv.URL, "/v1/checkout/sessions/cs_test_schema/line_items").(map[string]any)["data"].([]any)
	require.NotEmpty(t, items)
	for _, it := range items {
		require.Empty(t, spec.Check("item", it))
	}
}
