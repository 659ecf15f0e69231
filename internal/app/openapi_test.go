package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// contractCheck sends requests to the running service and holds every
// answer to the OpenAPI document: its status must be documented for the
// operation, its body must match the documented schema.
type contractCheck struct {
	b      *lookupBundle
	doc    *openapi3.T
	router routers.Router
	seen   map[string]bool // "METHOD /path/{param}" of every operation answered
}

func init() {
	// The pages' bodies are documented as strings of HTML.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

func newContractCheck(t *testing.T, b *lookupBundle) *contractCheck {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIDocument())
	require.NoError(t, err)
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &contractCheck{b: b, doc: doc, router: router, seen: map[string]bool{}}
}

// do sends one request (client through X-Forwarded-For, "" for none) and
// returns its answer after checking it against the document.
func (c *contractCheck) do(t *testing.T, method, path, body string, header ...string) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	base := c.b.URL
	if internalPath(path) {
		base = c.b.AdminURL
	}
	req, err := http.NewRequest(method, base+path, rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// The operation's own answer, a redirect included, not where it leads.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	// The document's paths have no server prefix: match on the path alone.
	docReq := req.Clone(context.Background())
	docReq.URL.Scheme, docReq.URL.Host, docReq.Host = "", "", ""
	route, params, err := c.router.FindRoute(docReq)
	require.NoError(t, err, "%s %s is a documented operation", method, path)
	c.seen[method+" "+route.Path] = true
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: docReq, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(raw)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
	require.NoError(t, err, "%s %s answered %d as documented: %s", method, path, resp.StatusCode, raw)
	return apiAnswer{resp.StatusCode, resp.Header, raw}
}

// internalPath reports whether path is served by the internal listener.
func internalPath(path string) bool {
	return strings.HasPrefix(path, "/v1/admin/") || strings.HasPrefix(path, httpapi.ConsolePrefix) || path == "/healthz" || path == "/readyz" || path == "/metrics"
}

func (c *contractCheck) requireEveryOperationAnswered(t *testing.T) {
	t.Helper()
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			if !c.seen[method+" "+path] {
				missing = append(missing, method+" "+path)
			}
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "every documented operation was called")
}

// TestAnswersMatchTheOpenAPIDocument calls every documented operation of
// the running service, on its good path and its refusals, and holds each
// answer to the document.
func TestAnswersMatchTheOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setupLookup(t, withPolicy(func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true }), withAdminLogin())
	c := newContractCheck(t, b)
	const bearer, admin = "Bearer " + shopToken, "Bearer " + adminToken
	email, customer := "contract@example.com", fulfillertest.NewID("cus_")
	o := b.buyAs(t, email, customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	id, key := o.CheckoutSessionID, o.Keys[0].UserKey
	unknown := "cs_test_" + strings.Repeat("x", 24)

	// The order API.
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/orders/"+id, "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/orders/"+id+"?wait=1", "").status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/orders/"+id+"?wait=31", "").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/v1/orders/"+unknown, "").status)
	require.Equal(t, http.StatusForbidden, c.do(t, "OPTIONS", "/v1/orders/"+id, "", "Origin", "https://elsewhere.example").status)

	// Support's order operations.
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", "/v1/admin/orders/"+id+"/retry", "").status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", "/v1/admin/orders/"+id+"/retry", "", "Authorization", bearer).status,
		"the shop's token reads listings and nothing else")
	retried := c.do(t, "POST", "/v1/admin/orders/"+id+"/retry", "", "Authorization", admin)
	require.NotEqual(t, http.StatusAccepted, retried.status, "a fulfilled order is not retried")
	require.Equal(t, http.StatusAccepted, c.do(t, "POST", "/v1/admin/orders/"+id+"/resend-email", "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/v1/admin/orders/"+unknown+"/resend-email", "", "Authorization", admin).status)

	// HWID reset: accepted, then within its cooldown; refusals.
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/orders/"+id+"/reset-hwid", `{"user_key":`).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/v1/orders/"+unknown+"/reset-hwid", keyBody(key)).status)
	require.Equal(t, http.StatusAccepted, c.do(t, "POST", "/v1/orders/"+id+"/reset-hwid", keyBody(key)).status)
	cooldown := c.do(t, "POST", "/v1/orders/"+id+"/reset-hwid", keyBody(key))
	require.Equal(t, http.StatusTooManyRequests, cooldown.status)
	require.Equal(t, "cooldown", cooldown.code(t))

	// Find my keys: the request, the emailed link, a bad link.
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/key-lookup", `{"email":"not an address"}`).status)
	require.Equal(t, http.StatusAccepted, c.do(t, "POST", "/v1/key-lookup", `{"email":"`+email+`"}`).status)
	msgs := b.waitLookupMessages(t, 1)
	token := linkToken(t, msgs[0])
	mine := c.do(t, "POST", "/v1/my-keys", `{"token":"`+token+`"}`)
	require.Equal(t, http.StatusOK, mine.status)
	require.Contains(t, string(mine.body), key)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", "/v1/my-keys", `{"token":"`+token+`x"}`).status)
	var listing httpapi.MyKeysJSON
	mine.decode(t, &listing)
	require.Len(t, listing.Orders, 1)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/orders/"+listing.Orders[0].LinkToken, "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/orders/"+listing.Orders[0].LinkToken, "").status)
	// The Discord link is off here (discord_link_test.go runs it on).
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/orders/"+listing.Orders[0].LinkToken+"/discord", "").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/discord/callback", "").status)

	// The shop's listings.
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/customers/"+customer+"/keys", "", "Authorization", bearer).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/customers/not-a-customer/keys", "", "Authorization", bearer).status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "GET", "/v1/customers/"+customer+"/keys", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "POST", "/v1/keys/search", `{"email":"`+email+`"}`, "Authorization", bearer).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/keys/search", `{"email":"not an address"}`, "Authorization", bearer).status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", "/v1/keys/search", `{"email":"`+email+`"}`).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/keys?email="+email, "", "Authorization", bearer).status)

	// Support.
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/orders/"+id, "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/v1/admin/orders/ord_000000000000", "", "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/orders/nonsense", "", "Authorization", admin).status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "GET", "/v1/admin/orders/"+id, "").status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/admin/orders/"+id+"/retry", "", "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/orders?email="+email, "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/orders?discord=123456789012345678", "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "POST", "/v1/admin/orders/search", `{"email":"`+email+`"}`, "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/orders?key="+key, "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "POST", "/v1/admin/orders/search", keyBody(key), "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/admin/orders/search", `{}`, "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/v1/admin/keys/blacklist", keyBody("NoSuchKey0123456789"), "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/admin/keys/set-discord", keyBody(key), "Authorization", admin).status)
	require.Equal(t, http.StatusAccepted, c.do(t, "POST", "/v1/admin/keys/set-discord",
		`{"user_key":"`+key+`","discord_id":"123456789012345678"}`, "Authorization", admin).status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", "/v1/admin/keys/revoke", keyBody(key)).status)

	// Support lifts an early fraud warning's revocation (of another order).
	warned := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", warned.ID))
	b.WaitOrder(t, warned.ID, "fulfilled")
	efw := fulfillertest.NewID("issfr_")
	b.Deliver(t, fulfillertest.Event(t, "radar.early_fraud_warning.created", mustJSON(t, map[string]any{
		"id": efw, "object": "radar.early_fraud_warning", "charge": b.charge(t, warned.PaymentIntent, ""),
		"payment_intent": warned.PaymentIntent, "fraud_type": "made_with_stolen_card", "actionable": true,
	})))
	b.waitKeys(t, warned.ID, "revoked", "blacklisted")
	liftPath := "/v1/admin/orders/" + warned.ID + "/revocations/"
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", liftPath+efw+"/lift", "").status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", liftPath+"not-a-source/lift", "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", liftPath+"issfr_nosuchwarning/lift", "", "Authorization", admin).status)
	require.Equal(t, http.StatusAccepted, c.do(t, "POST", liftPath+efw+"/lift", "", "Authorization", admin).status)
	require.Equal(t, http.StatusConflict, c.do(t, "POST", liftPath+efw+"/lift", "", "Authorization", admin).status)

	// The audit log of what support did above.
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/audit?order="+warned.ID, "", "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/audit?limit=0", "", "Authorization", admin).status)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "GET", "/v1/admin/audit", "", "Authorization", bearer).status)

	// The delivery log of events out (none here: TestRefusedOutboundWebhookStopsUntilReplayed
	// holds a delivery's answers to the document).
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/webhooks/deliveries", "", "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/webhooks/deliveries?limit=0", "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/v1/admin/webhooks/deliveries/999999", "", "Authorization", admin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/v1/admin/webhooks/deliveries/abc", "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/v1/admin/webhooks/deliveries/999999/replay", "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/progress", "", "Authorization", admin).status)

	// Support rotates an order's access (that order's, last).
	rotatePath := "/v1/admin/orders/" + warned.ID + "/rotate-link"
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", rotatePath, "").status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/v1/admin/orders/nonsense/rotate-link", "", "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/v1/admin/orders/ord_000000000000/rotate-link", "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "POST", rotatePath, `{"reason":"leaked"}`, "Authorization", admin).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/v1/orders/"+warned.ID, "").status)

	// The pages and their assets.
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/orders/"+id, "").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/orders/not-a-session", "").status)
	for _, ext := range []string{"txt", "csv"} {
		require.Equal(t, http.StatusOK, c.do(t, "GET", "/orders/"+id+"/keys."+ext, "").status)
		// From a client of its own: the test's earlier unknown IDs spent
		// its lookups.
		require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/orders/not-a-session/keys."+ext, "", "X-Forwarded-For", "203.0.113.43").status)
	}
	sub, _ := b.subscriptionOrder(t, 1)
	manage := "/orders/" + sub.ID + "/manage-subscription"
	require.Equal(t, http.StatusOK, c.do(t, "GET", manage, "").status)
	require.Equal(t, http.StatusConflict, c.do(t, "GET", "/orders/"+id+"/manage-subscription", "").status)
	require.Equal(t, http.StatusSeeOther, c.do(t, "POST", manage, "", "Sec-Fetch-Site", "same-origin").status)
	require.Equal(t, http.StatusForbidden, c.do(t, "POST", manage, "", "Sec-Fetch-Site", "cross-site").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/orders/not-a-session/manage-subscription", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/my-keys", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/assets/page.js", "").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/assets/nothing.js", "").status)

	// The operator console, its forms posted from itself.
	console := "Basic " + base64.StdEncoding.EncodeToString([]byte(adminUser+":"+adminPassword))
	formType, sameOrigin := "application/x-www-form-urlencoded", "same-origin"
	consoleOrder := "/console/orders/" + logging.OrderRef(id)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/console/", "", "Authorization", console).status)
	// From a client of its own: the test's earlier refusals spent its failed credentials.
	require.Equal(t, http.StatusUnauthorized, c.do(t, "GET", "/console/", "", "X-Forwarded-For", "203.0.113.44").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/console/orders", "", "Authorization", console).status)
	require.Equal(t, http.StatusOK, c.do(t, "POST", "/console/orders", "q="+url.QueryEscape(email),
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/console/orders", "q=ab",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", consoleOrder, "", "Authorization", console).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/console/orders/ord_000000000000", "", "Authorization", console).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", consoleOrder+"/actions/resend-email", "confirm=yes",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusSeeOther, c.do(t, "POST", consoleOrder+"/actions/resend-email", "confirm=yes&reason=lost+the+email",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusForbidden, c.do(t, "POST", consoleOrder+"/actions/resend-email", "confirm=yes&reason=lost+the+email",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", "cross-site").status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", consoleOrder+"/keys/0/actions", "action=revoke&confirm=yes&reason=test",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusSeeOther, c.do(t, "POST", "/console/checks", "",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/console/stock", "", "Authorization", console).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/console/stock/actions/reconcile", "confirm=yes",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/console/deliveries?status=failed&destination=webhook&type=order.fulfilled", "",
		"Authorization", console).status)
	require.Equal(t, http.StatusBadRequest, c.do(t, "GET", "/console/deliveries?status=lost", "", "Authorization", console).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/console/deliveries/999999", "", "Authorization", console).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "POST", "/console/deliveries/999999/replay", "confirm=yes&reason=resend",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", sameOrigin).status)
	require.Equal(t, http.StatusForbidden, c.do(t, "POST", "/console/deliveries/999999/replay", "confirm=yes&reason=resend",
		"Authorization", console, "Content-Type", formType, "Sec-Fetch-Site", "cross-site").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/console/assets/console.js", "", "Authorization", console).status)
	require.Equal(t, http.StatusNotFound, c.do(t, "GET", "/console/assets/nothing.js", "", "Authorization", console).status)

	// Webhooks, operations, this document.
	require.Equal(t, http.StatusBadRequest, c.do(t, "POST", "/webhooks/stripe", `{"id":"evt_1"}`,
		"Stripe-Signature", fulfillertest.Sign([]byte(`{"id":"evt_2"}`), b.Secret, time.Now())).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/healthz", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/readyz", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/metrics", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/openapi.json", "").status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/forwarded-for", "", "X-Forwarded-For", "203.0.113.9").status)

	c.requireEveryOperationAnswered(t)
}
