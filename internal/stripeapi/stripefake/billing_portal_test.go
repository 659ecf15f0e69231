package stripefake_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/stripeapi/stripespec"
)

// postForm sends a form-encoded POST, as Stripe's libraries do, with an
// optional Idempotency-Key.
func postForm(t *testing.T, srv *httptest.Server, path string, form url.Values, idempotencyKey string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	return do(t, srv, req)
}

// The session the stand-in answers is Stripe's billing_portal.session,
// field for field of Stripe's spec, and decodes into stripe-go's type.
func TestPortalSessionIsStripesObject(t *testing.T) {
	t.Parallel()
	spec := stripespec.Load(t)
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{ID: "cs_test_portal", Mode: "subscription", Customer: "cus_portal", Subscription: "sub_portal",
		Items: []stripefake.Item{{PriceID: "price_month", Quantity: 1, Recurring: true}}})

	for _, form := range []url.Values{
		{"customer": {"cus_portal"}, "return_url": {"https://keys.shop.example/orders/ol_x"}},
		{"customer": {"cus_portal"}}, // return_url null
	} {
		a := postForm(t, srv, "/v1/billing_portal/sessions", form, "")
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		var raw any
		require.NoError(t, json.Unmarshal(a.body, &raw))
		require.Empty(t, spec.Check("billing_portal.session", raw))
		var s stripe.BillingPortalSession
		require.NoError(t, json.Unmarshal(a.body, &s))
		require.Equal(t, "cus_portal", s.Customer)
		require.Equal(t, form.Get("return_url"), s.ReturnURL)
		require.True(t, strings.HasPrefix(s.URL, srv.URL+"/_fake/portal/session/test_"), s.URL)
	}
}

func TestPortalSessionRefusesWhatStripeRefuses(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSubscription(stripefake.Subscription{ID: "sub_1", Customer: "cus_1", Items: []stripefake.SubscriptionItem{{PriceID: "price_a", Quantity: 1}}})
	const path = "/v1/billing_portal/sessions"

	for _, c := range []struct {
		form        url.Values
		code, param string
	}{
		{url.Values{"return_url": {"https://shop.example"}}, "", "customer"},
		{url.Values{"customer": {"cus_nobody"}}, "resource_missing", "customer"},
		{url.Values{"customer": {"cus_1"}, "return_url": {"/relative"}}, "url_invalid", "return_url"},
		{url.Values{"customer": {"cus_1"}, "configuration": {"bpc_other"}}, "resource_missing", "configuration"},
		{url.Values{"customer": {"cus_1"}, "locale": {"fr"}}, "parameter_unknown", "locale"},
	} {
		a := postForm(t, srv, path, c.form, "")
		require.Equal(t, http.StatusBadRequest, a.status, "%v: %s", c.form, a.body)
		e := decodeError(t, a)
		require.Equal(t, "invalid_request_error", e.Error.Type, "%v", c.form)
		require.Equal(t, c.code, e.Error.Code, "%v", c.form)
		require.Equal(t, c.param, e.Error.Param, "%v", c.form)
	}
	a := postForm(t, srv, path+"?customer=cus_1", url.Values{}, "")
	require.Equal(t, http.StatusBadRequest, a.status, "parameters go in the body")

	f.SetBillingPortalConfigured(false)
	a = postForm(t, srv, path, url.Values{"customer": {"cus_1"}}, "")
	require.Equal(t, http.StatusBadRequest, a.status)
	e := decodeError(t, a)
	require.Empty(t, e.Error.Code, "Stripe gives this refusal no code")
	require.True(t, strings.HasPrefix(e.Error.Message, "No configuration provided and your test mode default configuration has not been created."))
	require.Empty(t, f.BillingPortalSessions(), "no refusal opened a session")

	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader("customer=cus_1"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, http.StatusUnauthorized, do(t, srv, req).status, "the API key is required")
}

// A request repeated with its Idempotency-Key (stripe-go's retry of an
// answer lost) gets the first answer again, and opens no second session.
func TestPortalSessionReplaysARepeatedRequest(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSubscription(stripefake.Subscription{ID: "sub_1", Customer: "cus_1", Items: []stripefake.SubscriptionItem{{PriceID: "price_a", Quantity: 1}}})
	form := url.Values{"customer": {"cus_1"}, "return_url": {"https://shop.example/back"}}

	first := postForm(t, srv, "/v1/billing_portal/sessions", form, "idem-1")
	again := postForm(t, srv, "/v1/billing_portal/sessions", form, "idem-1")
	other := postForm(t, srv, "/v1/billing_portal/sessions", form, "idem-2")
	require.Equal(t, http.StatusOK, again.status)
	require.JSONEq(t, string(first.body), string(again.body))
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.NotEqual(t, string(first.body), string(other.body))
	require.Len(t, f.BillingPortalSessions(), 2)

	// A page of a session that does not exist says so.
	require.Equal(t, http.StatusNotFound, get(t, srv, "", "/_fake/portal/session/test_nothing").status)
}
