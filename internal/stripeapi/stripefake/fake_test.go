package stripefake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi/stripefake"
)

const key = "sk_test_fakekey0123456789abcdef"

func serve(t *testing.T, f *stripefake.Fake) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// get sends a GET with the given API key ("" sends no Authorization).
func get(t *testing.T, srv *httptest.Server, apiKey, path string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	return do(t, srv, req)
}

func do(t *testing.T, srv *httptest.Server, req *http.Request) answer {
	t.Helper()
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return answer{status: res.StatusCode, header: res.Header, body: b}
}

type stripeErrorBody struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
}

func decodeError(t *testing.T, a answer) stripeErrorBody {
	t.Helper()
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var e stripeErrorBody
	require.NoError(t, json.Unmarshal(a.body, &e), string(a.body))
	return e
}

func TestSessionDecodesIntoStripeGo(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{
		ID: "cs_test_1", Mode: "subscription", PaymentStatus: "paid", Customer: "cus_1",
		Subscription: "sub_1", Invoice: "in_1", CustomerEmail: "a@example.com", DiscordID: "42",
		Metadata: map[string]string{"source": "test"},
		Items:    []stripefake.Item{{PriceID: "price_m", Recurring: true, Quantity: 3, Description: "Monthly", UnitAmount: 700}},
	})

	a := get(t, srv, key, "/v1/checkout/sessions/cs_test_1")
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.Equal(t, stripefake.APIVersion, a.header.Get("Stripe-Version"))
	require.True(t, strings.HasPrefix(a.header.Get("Request-Id"), "req_"))

	var s stripe.CheckoutSession
	require.NoError(t, json.Unmarshal(a.body, &s))
	require.Equal(t, "cs_test_1", s.ID)
	require.Equal(t, "checkout.session", s.Object)
	require.Equal(t, stripe.CheckoutSessionModeSubscription, s.Mode)
	require.Equal(t, "sub_1", s.Subscription.ID)
	require.Equal(t, "in_1", s.Invoice.ID)
	require.Equal(t, "cus_1", s.Customer.ID)
	require.Nil(t, s.PaymentIntent)
	require.Equal(t, "a@example.com", s.CustomerDetails.Email)
	require.Equal(t, "42", s.CustomFields[0].Text.Value)
	require.EqualValues(t, 2100, s.AmountTotal)

	// The raw object has the fields a webhook consumer reads, with Stripe's
	// nulls.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(a.body, &raw))
	for _, k := range []string{"id", "object", "mode", "payment_status", "status", "customer", "customer_details",
		"customer_email", "payment_intent", "subscription", "invoice", "custom_fields", "metadata", "livemode",
		"created", "currency", "amount_total"} {
		require.Contains(t, raw, k)
	}
	require.Nil(t, raw["payment_intent"])
	require.Equal(t, false, raw["livemode"])
	require.NotContains(t, raw, "line_items")

	// SessionJSON is exactly what the route serves.
	sj, ok := f.SessionJSON("cs_test_1")
	require.True(t, ok)
	require.JSONEq(t, string(a.body), string(sj))
	_, ok = f.SessionJSON("cs_nope")
	require.False(t, ok)

	// Line items decode into stripe-go's list type.
	a = get(t, srv, key, "/v1/checkout/sessions/cs_test_1/line_items")
	require.Equal(t, http.StatusOK, a.status)
	var list stripe.LineItemList
	require.NoError(t, json.Unmarshal(a.body, &list))
	require.False(t, list.HasMore)
	require.Equal(t, "/v1/checkout/sessions/cs_test_1/line_items", list.URL)
	require.Len(t, list.Data, 1)
	li := list.Data[0]
	require.Equal(t, stripefake.LineItemID("cs_test_1", 0), li.ID)
	require.Equal(t, "Monthly", li.Description)
	require.EqualValues(t, 3, li.Quantity)
	require.EqualValues(t, 2100, li.AmountTotal)
	require.Equal(t, "price_m", li.Price.ID)
	require.Equal(t, "price", li.Price.Object)
	require.Equal(t, stripe.PriceTypeRecurring, li.Price.Type)
	require.Equal(t, stripe.PriceRecurringIntervalMonth, li.Price.Recurring.Interval)
	require.EqualValues(t, 700, li.Price.UnitAmount)
	require.InDelta(t, 700, li.Price.UnitAmountDecimal, 0)
	require.Equal(t, "prod_m", li.Price.Product.ID)
}

func TestSessionDefaultsAndReplace(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	f.PutSession(stripefake.Session{ID: "cs_test_d", PaymentIntent: "pi_1"})
	var raw map[string]any
	sj, _ := f.SessionJSON("cs_test_d")
	require.NoError(t, json.Unmarshal(sj, &raw))
	require.Equal(t, "payment", raw["mode"])
	require.Equal(t, "paid", raw["payment_status"])
	require.Equal(t, "complete", raw["status"])
	require.Equal(t, []any{}, raw["custom_fields"])
	require.Equal(t, map[string]any{}, raw["metadata"])

	f.PutSession(stripefake.Session{ID: "cs_test_d", PaymentStatus: "unpaid"})
	sj, _ = f.SessionJSON("cs_test_d")
	require.NoError(t, json.Unmarshal(sj, &raw))
	require.Equal(t, "unpaid", raw["payment_status"])
	require.Nil(t, raw["payment_intent"])

	require.Panics(t, func() { f.PutSession(stripefake.Session{}) })
	require.Panics(t, func() { f.PutSession(stripefake.Session{ID: "cs_x", Mode: "bogus"}) })
	require.Panics(t, func() { f.PutSession(stripefake.Session{ID: "cs_x", Items: []stripefake.Item{{}}}) })
}

func TestAuth(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{ID: "cs_test_a"})

	a := get(t, srv, "", "/v1/checkout/sessions/cs_test_a")
	require.Equal(t, http.StatusUnauthorized, a.status)
	require.Contains(t, decodeError(t, a).Error.Message, "You did not provide an API key")

	const wrong = "sk_test_wrongwrongwrong987654321"
	a = get(t, srv, wrong, "/v1/checkout/sessions/cs_test_a")
	require.Equal(t, http.StatusUnauthorized, a.status)
	e := decodeError(t, a)
	require.Equal(t, "invalid_request_error", e.Error.Type)
	require.True(t, strings.HasPrefix(e.Error.Message, "Invalid API Key provided: sk_test_*"), e.Error.Message)
	require.True(t, strings.HasSuffix(e.Error.Message, "4321"))
	require.NotContains(t, string(a.body), wrong)

	// Basic auth with the key as user name, as curl -u sends it.
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/checkout/sessions/cs_test_a", nil)
	require.NoError(t, err)
	req.SetBasicAuth(key, "")
	require.Equal(t, http.StatusOK, do(t, srv, req).status)

	// The test-hook routes need no key.
	require.Equal(t, http.StatusOK, get(t, srv, "", "/_fake/sessions/cs_test_a").status)
}

func TestAuthAnyTestKey(t *testing.T) {
	t.Parallel()
	f := stripefake.New("")
	srv := serve(t, f)
	f.PutSession(stripefake.Session{ID: "cs_test_any"})

	for _, k := range []string{"sk_test_anything123", "rk_test_restricted456"} {
		require.Equal(t, http.StatusOK, get(t, srv, k, "/v1/checkout/sessions/cs_test_any").status, k)
	}
	for _, k := range []string{"sk_live_0123456789abcdef", "pk_test_publishable", "sk_test_", "whatever"} {
		a := get(t, srv, k, "/v1/checkout/sessions/cs_test_any")
		require.Equal(t, http.StatusUnauthorized, a.status, k)
		if len(k) > 12 {
			require.NotContains(t, string(a.body), k)
		}
	}
}

func TestNotFoundShapes(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)

	cases := map[string]string{
		"/v1/checkout/sessions/cs_x":            "No such checkout.session: 'cs_x'",
		"/v1/checkout/sessions/cs_x/line_items": "No such checkout.session: 'cs_x'",
		"/v1/payment_intents/pi_x":              "No such payment_intent: 'pi_x'",
		"/v1/charges/ch_x":                      "No such charge: 'ch_x'",
		"/v1/invoices/in_x":                     "No such invoice: 'in_x'",
		"/v1/invoices/in_x/lines":               "No such invoice: 'in_x'",
	}
	for path, msg := range cases {
		a := get(t, srv, key, path)
		require.Equal(t, http.StatusNotFound, a.status, path)
		e := decodeError(t, a)
		require.Equal(t, "invalid_request_error", e.Error.Type)
		require.Equal(t, "resource_missing", e.Error.Code)
		require.Equal(t, "id", e.Error.Param)
		require.Equal(t, msg, e.Error.Message)
	}

	a := get(t, srv, key, "/v1/customers/cus_1")
	require.Equal(t, http.StatusNotFound, a.status)
	e := decodeError(t, a)
	require.Empty(t, e.Error.Code, "an unknown route is not a missing object")
	require.Contains(t, e.Error.Message, "Unrecognized request URL (GET: /v1/customers/cus_1)")
}

func TestPaging(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	items := make([]stripefake.Item, 25)
	for i := range items {
		items[i] = stripefake.Item{PriceID: fmt.Sprintf("price_%d", i)}
	}
	f.PutSession(stripefake.Session{ID: "cs_test_p", Items: items})
	base := "/v1/checkout/sessions/cs_test_p/line_items"
	id := func(i int) string { return stripefake.LineItemID("cs_test_p", i) }

	type page struct {
		Object  string           `json:"object"`
		URL     string           `json:"url"`
		HasMore bool             `json:"has_more"`
		Data    []map[string]any `json:"data"`
	}
	fetch := func(query string) page {
		a := get(t, srv, key, base+query)
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		var p page
		require.NoError(t, json.Unmarshal(a.body, &p))
		require.Equal(t, "list", p.Object)
		require.Equal(t, base, p.URL)
		return p
	}
	ids := func(p page) []string {
		var out []string
		for _, d := range p.Data {
			out = append(out, d["id"].(string))
		}
		return out
	}

	p := fetch("")
	require.Len(t, p.Data, 10, "default limit")
	require.True(t, p.HasMore)

	p = fetch("?limit=100")
	require.Len(t, p.Data, 25)
	require.False(t, p.HasMore)

	p = fetch("?limit=7&starting_after=" + id(19))
	require.Equal(t, []string{id(20), id(21), id(22), id(23), id(24)}, ids(p))
	require.False(t, p.HasMore)

	p = fetch("?limit=3&starting_after=" + id(4))
	require.Equal(t, []string{id(5), id(6), id(7)}, ids(p))
	require.True(t, p.HasMore)

	p = fetch("?limit=3&ending_before=" + id(5))
	require.Equal(t, []string{id(2), id(3), id(4)}, ids(p))
	require.True(t, p.HasMore)

	p = fetch("?limit=10&ending_before=" + id(2))
	require.Equal(t, []string{id(0), id(1)}, ids(p))
	require.False(t, p.HasMore)

	// expand[] is accepted in stripe-go's spelling and curl's.
	require.Len(t, fetch("?expand[0]=data.price.product").Data, 10)
	require.Len(t, fetch("?expand[]=data.price.product").Data, 10)

	f.SetMaxPageSize(4)
	p = fetch("?limit=100")
	require.Len(t, p.Data, 4)
	require.True(t, p.HasMore)
	f.SetMaxPageSize(0)

	for query, param := range map[string]string{
		"?limit=0":                          "limit",
		"?limit=101":                        "limit",
		"?limit=ten":                        "limit",
		"?starting_after=li_nope":           "starting_after",
		"?starting_after=a&ending_before=b": "starting_after",
		"?colour=blue":                      "colour",
	} {
		a := get(t, srv, key, base+query)
		require.Equal(t, http.StatusBadRequest, a.status, query)
		require.Equal(t, param, decodeError(t, a).Error.Param, query)
	}
	// Retrieve routes take no paging parameters.
	a := get(t, srv, key, "/v1/checkout/sessions/cs_test_p?limit=3")
	require.Equal(t, http.StatusBadRequest, a.status)
	require.Equal(t, "parameter_unknown", decodeError(t, a).Error.Code)
}

func TestExpand(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{
		ID: "cs_test_e", PaymentIntent: "pi_e",
		Items: []stripefake.Item{{PriceID: "price_1"}, {PriceID: "price_2"}},
	})
	f.PutObject(stripefake.KindPaymentIntent, "pi_e", map[string]any{"amount": 2000, "status": "succeeded"})

	a := get(t, srv, key, "/v1/checkout/sessions/cs_test_e?expand[0]=line_items&expand[1]=payment_intent&expand[2]=customer")
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var s stripe.CheckoutSession
	require.NoError(t, json.Unmarshal(a.body, &s))
	require.NotNil(t, s.LineItems)
	require.Len(t, s.LineItems.Data, 2)
	require.Equal(t, "price_2", s.LineItems.Data[1].Price.ID)
	require.Equal(t, "pi_e", s.PaymentIntent.ID)
	require.EqualValues(t, 2000, s.PaymentIntent.Amount, "payment_intent expanded from the stored object")
	require.Nil(t, s.Customer, "nothing to expand")
}

func TestPutObjectShapes(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	// A list object pasted from a real Stripe response, children without IDs.
	f.PutObject(stripefake.KindInvoice, "in_s", map[string]any{
		"id":           "in_ignored",
		"subscription": "sub_1",
		"created":      int64(1712345678901),
		"lines": map[string]any{
			"object": "list",
			"data": []any{
				map[string]any{"amount": 100, "unit_amount_excluding_tax": "100"},
				map[string]any{"amount": 200},
			},
		},
	})

	a := get(t, srv, key, "/v1/invoices/in_s")
	require.Equal(t, http.StatusOK, a.status)
	var in stripe.Invoice
	require.NoError(t, json.Unmarshal(a.body, &in))
	require.Equal(t, "in_s", in.ID, "the id argument wins")
	require.Equal(t, "invoice", in.Object)
	require.EqualValues(t, 1712345678901, in.Created, "64-bit numbers survive")
	require.Len(t, in.Lines.Data, 2)
	require.False(t, in.Lines.HasMore)
	require.Equal(t, "/v1/invoices/in_s/lines", in.Lines.URL)
	require.Equal(t, "il_in_s_1", in.Lines.Data[0].ID)
	require.Equal(t, "line_item", in.Lines.Data[0].Object)
	require.Equal(t, "in_s", in.Lines.Data[1].Invoice)

	// The caller's map is copied, not kept.
	obj := map[string]any{"amount": 1}
	f.PutObject(stripefake.KindCharge, "ch_c", obj)
	obj["amount"] = 999
	var ch stripe.Charge
	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/charges/ch_c").body, &ch))
	require.EqualValues(t, 1, ch.Amount)

	// A raw session with raw line items.
	f.PutObject(stripefake.KindCheckoutSession, "cs_raw", map[string]any{
		"mode": "payment", "payment_status": "paid",
		"line_items": []map[string]any{{"quantity": 2, "price": map[string]any{"id": "price_r", "object": "price"}}},
	})
	var items stripe.LineItemList
	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/checkout/sessions/cs_raw/line_items").body, &items))
	require.Len(t, items.Data, 1)
	require.Equal(t, "li_cs_raw_1", items.Data[0].ID)
	require.Equal(t, "item", items.Data[0].Object)
	require.Equal(t, "price_r", items.Data[0].Price.ID)

	require.Panics(t, func() { f.PutObject("customer", "cus_1", map[string]any{}) })
	require.Panics(t, func() { f.PutObject(stripefake.KindCharge, "", map[string]any{}) })
	require.Panics(t, func() { f.PutObject(stripefake.KindInvoice, "in_bad", map[string]any{"lines": "nope"}) })
	require.Panics(t, func() { f.PutObject(stripefake.KindCharge, "ch_bad", map[string]any{"f": func() {}}) })
}

// Stripe serves amount_captured on every charge; the fake fills it in when
// a test leaves it out, and serves what a test sets.
func TestChargeServesItsCapturedAmount(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	charge := func(id string) stripe.Charge {
		t.Helper()
		a := get(t, srv, key, "/v1/charges/"+id)
		require.Equal(t, http.StatusOK, a.status)
		var ch stripe.Charge
		require.NoError(t, json.Unmarshal(a.body, &ch))
		return ch
	}

	f.PutObject(stripefake.KindCharge, "ch_full", map[string]any{"amount": 1000})
	ch := charge("ch_full")
	require.True(t, ch.Captured)
	require.EqualValues(t, 1000, ch.AmountCaptured, "a captured charge's whole amount")
	require.Zero(t, ch.AmountRefunded)

	f.PutObject(stripefake.KindCharge, "ch_uncaptured", map[string]any{"amount": 1000, "captured": false})
	ch = charge("ch_uncaptured")
	require.False(t, ch.Captured)
	require.Zero(t, ch.AmountCaptured, "nothing of an uncaptured charge")

	f.PutObject(stripefake.KindCharge, "ch_partial", map[string]any{"amount": 1000, "amount_captured": 600, "amount_refunded": 600})
	ch = charge("ch_partial")
	require.EqualValues(t, 600, ch.AmountCaptured, "as set")
	require.EqualValues(t, 600, ch.AmountRefunded)
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutObject(stripefake.KindCharge, "ch_1", map[string]any{})
	f.PutObject(stripefake.KindCharge, "ch_2", map[string]any{})

	f.FailNext("/v1/charges/ch_1", http.StatusServiceUnavailable, 2)
	f.FailNext("/v1/charges/ch_2", http.StatusTooManyRequests, 1)

	for range 2 {
		a := get(t, srv, key, "/v1/charges/ch_1")
		require.Equal(t, http.StatusServiceUnavailable, a.status)
		require.Equal(t, "api_error", decodeError(t, a).Error.Type)
	}
	require.Equal(t, http.StatusOK, get(t, srv, key, "/v1/charges/ch_1").status)

	// Authentication is checked before injected failures.
	require.Equal(t, http.StatusUnauthorized, get(t, srv, "sk_test_wrong000000000", "/v1/charges/ch_2").status)
	a := get(t, srv, key, "/v1/charges/ch_2")
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, "rate_limit", decodeError(t, a).Error.Code)
	require.Equal(t, http.StatusOK, get(t, srv, key, "/v1/charges/ch_2").status)

	f.FailNext("/v1/charges/ch_1", http.StatusInternalServerError, 5)
	f.FailNext("/v1/charges/ch_1", http.StatusInternalServerError, 0)
	require.Equal(t, http.StatusOK, get(t, srv, key, "/v1/charges/ch_1").status)
}

func TestRequestsLog(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{ID: "cs_test_log"})

	get(t, srv, key, "/v1/checkout/sessions/cs_test_log?expand[0]=line_items")
	get(t, srv, "", "/v1/charges/ch_1")
	get(t, srv, key, "/_fake/sessions/cs_test_log")

	require.Equal(t, []stripefake.Request{
		{Method: http.MethodGet, Path: "/v1/checkout/sessions/cs_test_log", Query: "expand[0]=line_items"},
		{Method: http.MethodGet, Path: "/v1/charges/ch_1"},
	}, f.Requests(), "rejected requests are logged, test-hook requests are not")
}

func TestLatencyEndsWithClient(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutSession(stripefake.Session{ID: "cs_test_lat"})

	f.SetLatency(50 * time.Millisecond)
	start := time.Now()
	require.Equal(t, http.StatusOK, get(t, srv, key, "/v1/checkout/sessions/cs_test_lat").status)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	f.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/checkout/sessions/cs_test_lat", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	_, err = srv.Client().Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// srv.Close in cleanup waits for the handler: the test would hang for an
	// hour if the handler ignored the client going away.
}

func TestFakeRoutes(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)

	body := `{"id":"cs_test_cli","mode":"payment","customer_email":"cli@example.com","payment_intent":"pi_cli",
		"discord_id":"99","metadata":{"a":"b"},"items":[{"price_id":"price_cli","quantity":2}]}`
	res, err := srv.Client().Post(srv.URL+"/_fake/sessions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	created, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusCreated, res.StatusCode, string(created))
	var s stripe.CheckoutSession
	require.NoError(t, json.Unmarshal(created, &s))
	require.Equal(t, "cs_test_cli", s.ID)
	require.Equal(t, "pi_cli", s.PaymentIntent.ID)
	require.Equal(t, "99", s.CustomFields[0].Text.Value)

	a := get(t, srv, "", "/_fake/sessions/cs_test_cli")
	require.Equal(t, http.StatusOK, a.status)
	require.JSONEq(t, string(created), string(a.body))

	// The registered session is served on the Stripe routes too.
	a = get(t, srv, key, "/v1/checkout/sessions/cs_test_cli/line_items")
	require.Equal(t, http.StatusOK, a.status)
	var items stripe.LineItemList
	require.NoError(t, json.Unmarshal(a.body, &items))
	require.Len(t, items.Data, 1)
	require.EqualValues(t, 2, items.Data[0].Quantity)

	require.Equal(t, http.StatusNotFound, get(t, srv, "", "/_fake/sessions/cs_nope").status)

	for _, bad := range []string{
		`{"mode":"payment"}`,
		`{"id":"cs_1","mode":"nope"}`,
		`{"id":"cs_1","paymentstatus":"paid"}`,
		`{"id":"cs_1","items":[{"quantity":1}]}`,
		`not json`,
		`{"id":"cs_1"} {"id":"cs_2"}`,
	} {
		res, err := srv.Client().Post(srv.URL+"/_fake/sessions", "application/json", strings.NewReader(bad))
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusBadRequest, res.StatusCode, bad)
		var e stripeErrorBody
		require.NoError(t, json.Unmarshal(b, &e))
		require.NotEmpty(t, e.Error.Message, bad)
	}
	_, ok := f.SessionJSON("cs_1")
	require.False(t, ok)
}
