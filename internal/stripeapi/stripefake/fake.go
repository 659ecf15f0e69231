// Package stripefake is an in-memory stand-in for the few Stripe API routes
// the fulfiller reads, so tests and local development need no network and no
// Stripe account.
//
// A Fake is an http.Handler; serve it with httptest.NewServer (tests) or
// http.ListenAndServe (local development) and point stripeapi.New at its
// URL. It speaks the wire format stripe-go v76 decodes (API version
// 2023-10-16): objects carry their "object" field, lists come in Stripe's
// list envelope with limit/starting_after/ending_before paging, and errors
// use Stripe's error shape and status codes, so the client's error handling
// (not found, retries, bad key) is exercised for real.
//
// A paid one-off session comes with its payment intent and charge, whose
// receipt_url the service reads by expanding payment_intent.latest_charge;
// expand[] follows dotted paths through whatever objects the fake holds.
//
// Served routes, all requiring Authorization: Bearer <key>:
//
//	GET /v1/checkout/sessions/{id}
//	GET /v1/checkout/sessions/{id}/line_items
//	GET /v1/payment_intents/{id}
//	GET /v1/charges/{id}
//	GET /v1/invoices/{id}
//	GET /v1/invoices/{id}/lines
//	GET /v1/subscriptions/{id}       items embedded, first page
//	GET /v1/subscription_items       subscription=sub_..., paged
//	GET /v1/events                   type or types[], created[gte|gt|lte|lt], paged
//	GET /v1/disputes/{id}
//	GET /v1/subscriptions/{id}
//	DELETE /v1/subscriptions/{id}    cancels; an already cancelled one is 404, as Stripe answers
//	GET /v1/prices/{id}
//	GET /v1/webhook_endpoints        newest first, paged
//	POST /v1/billing_portal/sessions customer (known from a stored object), return_url; see SetBillingPortalConfigured
//
// Test-hook routes, without Stripe authentication, so a separate process
// (a CLI simulating a purchase) can drive a running fake:
//
//	POST /_fake/sessions        body: a Session as JSON; answers the object
//	GET  /_fake/sessions/{id}   the session object as served
//	POST /_fake/objects/{kind}/{id}  body: a JSON object, stored as PutObject does
//	GET  /_fake/portal/session/{token}  a portal session's page (its url), in place of Stripe's portal
//
// The test-hook routes let anyone who can reach the fake create sessions:
// bind a development fake to localhost.
package stripefake

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"fulfiller/internal/stripeapi/stripekey"
)

// APIVersion is the Stripe API version whose wire format the fake serves. It
// equals stripe-go v76's stripe.APIVersion; it is repeated here so the fake
// does not depend on stripe-go.
const APIVersion = "2023-10-16"

// StandInHeader, with the value StandInName, is on every answer of the
// Stripe routes: Stripe never sends it, so a client (`fulfiller doctor`)
// can tell it is talking to this stand-in. They equal stripeapi's
// StandInHeader and StandInName, repeated here for the reason APIVersion
// is.
const (
	StandInHeader = "Fulfiller-Stand-In"
	StandInName   = "stripe"
)

// Object kinds accepted by PutObject.
const (
	KindCheckoutSession = "checkout.session"
	KindPaymentIntent   = "payment_intent"
	KindCharge          = "charge"
	KindInvoice         = "invoice"
	KindDispute         = "dispute"
	KindSubscription    = "subscription"
)

const (
	defaultLimit = 10
	maxLimit     = 100
	// maxFakeBody bounds the body of POST /_fake/sessions.
	maxFakeBody = 1 << 20
)

// kindInfo describes how a kind is routed and rendered.
type kindInfo struct {
	// collection is the URL segment after /v1/.
	collection string
	// childKey is the field of a PutObject map holding the object's list
	// children ("line_items", "lines"); "" if it has none.
	childKey string
	// childPath is the URL segment of the children's list route.
	childPath string
	// childObject is the "object" value given to children that lack one.
	childObject string
	// childIDPrefix prefixes generated child IDs.
	childIDPrefix string
	// embedChildren serves the first page of children inside the object
	// itself, as Stripe does for invoice.lines.
	embedChildren bool
	// childListURL, when set, is the URL of the children's list on a
	// route of its own (subscription items), instead of childPath.
	childListURL func(id string) string
}

var kinds = map[string]kindInfo{
	KindCheckoutSession: {
		collection: "checkout/sessions", childKey: "line_items", childPath: "line_items",
		childObject: "item", childIDPrefix: "li_",
	},
	KindPaymentIntent: {collection: "payment_intents"},
	KindCharge:        {collection: "charges"},
	KindInvoice: {
		collection: "invoices", childKey: "lines", childPath: "lines",
		childObject: "line_item", childIDPrefix: "il_", embedChildren: true,
	},
	KindDispute:      {collection: "disputes"},
	KindSubscription: subscriptionKind,
	KindPrice:        {collection: "prices"},
}

// Request is one request the fake received on a Stripe route (test-hook
// routes are not recorded). Query is the raw, still-encoded query string;
// parse it with url.ParseQuery.
type Request struct {
	Method string
	Path   string
	Query  string
}

// Fake is an in-memory Stripe API. Its methods are safe for concurrent use,
// including while it serves requests.
type Fake struct {
	apiKey string
	mux    *http.ServeMux
	now    func() time.Time

	mu sync.Mutex
	// objects holds kind -> id -> object, normalised through a JSON round
	// trip and never mutated once stored, so a handler may keep using one
	// after releasing mu.
	objects map[string]map[string]map[string]any
	// children holds kind -> id -> list children, same rules as objects.
	children    map[string]map[string][]map[string]any
	events      []storedEvent    // in the order they were put
	endpoints   []map[string]any // webhook endpoints, in the order they were put
	requests    []Request
	latency     time.Duration
	failures    map[string]*failure
	maxPageSize int
	requestSeq  int
	portal      portalState
}

type failure struct {
	status    int
	remaining int
}

// New returns an empty Fake that accepts requests authenticated with apiKey.
// An empty apiKey accepts any test-mode secret or restricted key (sk_test_...
// or rk_test_...) and still refuses live keys, so a misconfigured local setup
// cannot pass a live key around unnoticed.
func New(apiKey string) *Fake {
	f := &Fake{
		apiKey:   apiKey,
		now:      time.Now,
		objects:  map[string]map[string]map[string]any{},
		children: map[string]map[string][]map[string]any{},
		failures: map[string]*failure{},
	}
	mux := http.NewServeMux()
	for kind, info := range kinds {
		mux.HandleFunc("GET /v1/"+info.collection+"/{id}", f.retrieve(kind))
		if info.childPath != "" {
			mux.HandleFunc("GET /v1/"+info.collection+"/{id}/"+info.childPath, f.listChildren(kind))
		}
	}
	mux.HandleFunc("GET /v1/events", f.listEvents)
	mux.HandleFunc("GET /v1/subscription_items", f.listSubscriptionItems)
	mux.HandleFunc("DELETE /v1/subscriptions/{id}", f.cancelSubscription)
	mux.HandleFunc("GET /v1/webhook_endpoints", f.listWebhookEndpoints)
	mux.HandleFunc("POST /v1/billing_portal/sessions", f.createPortalSession)
	mux.HandleFunc("GET "+portalPagePrefix+"{token}", f.portalPage)
	mux.HandleFunc("POST /_fake/sessions", f.fakePutSession)
	mux.HandleFunc("POST /_fake/objects/{kind}/{id}", f.fakePutObject)
	mux.HandleFunc("GET /_fake/sessions/{id}", f.fakeGetSession)
	mux.HandleFunc("/", unrecognized)
	f.mux = mux
	return f
}

// ServeHTTP serves the Stripe routes and the test-hook routes.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/_fake/") {
		w.Header().Set("Request-Id", f.record(r))
		w.Header().Set("Stripe-Version", APIVersion)
		w.Header().Set(StandInHeader, StandInName)
		if !f.delay(r.Context()) {
			// The client has gone; nobody reads an answer.
			return
		}
		if e := f.authorize(r); e != nil {
			e.write(w)
			return
		}
		if e := f.injectedFailure(r.URL.Path); e != nil {
			e.write(w)
			return
		}
	}
	f.mux.ServeHTTP(w, r)
}

// PutSession adds or replaces the Checkout Session s, rendered as Stripe
// would (see Session for defaults) with line items "li_..." given by
// LineItemID. A subscription-mode session also starts its subscription, as
// Stripe's Checkout does, unless one with that ID is stored already. It panics if s is invalid (no ID, an unknown mode or status,
// an item without a price): that is a mistake in the test.
func (f *Fake) PutSession(s Session) {
	if err := s.validate(); err != nil {
		panic("stripefake: PutSession: " + err.Error())
	}
	session, items := sessionObjects(s, f.now())
	f.put(KindCheckoutSession, s.ID, session, items)
	f.startSubscription(s)
	f.startPayment(s, session)
}

// SessionJSON returns the checkout.session object id exactly as GET
// /v1/checkout/sessions/{id} serves it without expansion, which is also what
// a checkout.session.* webhook event carries as data.object.
func (f *Fake) SessionJSON(id string) ([]byte, bool) {
	f.mu.Lock()
	obj, ok := f.objects[KindCheckoutSession][id]
	f.mu.Unlock()
	if !ok {
		return nil, false
	}
	b, err := json.Marshal(obj)
	if err != nil {
		// Stored objects went through a JSON round trip already.
		panic("stripefake: encoding stored session: " + err.Error())
	}
	return b, true
}

// PutObject adds or replaces the object id of the given kind (KindCharge,
// KindPaymentIntent, KindInvoice, KindCheckoutSession, KindDispute,
// KindSubscription or KindPrice) as a free-form map, so a test can serve any shape,
// including ones the helpers never produce.
// "id" is set to id and "object" defaults to kind. A charge gets the fields
// Stripe always serves when the map leaves them out: captured (true),
// amount_captured (its amount, or 0 when captured is false) and
// amount_refunded (0).
//
// An invoice's optional "lines" and a session's optional "line_items" may be
// a []map[string]any, a []any of maps, or a Stripe list object
// ({"data": [...]}); they are served paged by the list route, and for an
// invoice the first page is also embedded in the object, as Stripe does.
// Children without "id" or "object" get generated ones.
//
// Numbers survive as written (the map goes through a JSON round trip). Fields
// stripe-go decodes with ",string", such as invoice line
// unit_amount_excluding_tax and price unit_amount_decimal, must be JSON
// strings, as Stripe sends them.
//
// PutObject panics on an unknown kind, an empty id or a value that cannot be
// encoded as JSON: those are mistakes in the test.
func (f *Fake) PutObject(kind, id string, obj map[string]any) {
	info, ok := kinds[kind]
	if !ok {
		panic(fmt.Sprintf("stripefake: PutObject: unknown kind %q", kind))
	}
	if id == "" {
		panic("stripefake: PutObject: empty id")
	}
	top := make(map[string]any, len(obj)+2)
	var children []map[string]any
	for k, v := range obj {
		if info.childKey != "" && k == info.childKey {
			var err error
			if children, err = childList(v); err != nil {
				panic(fmt.Sprintf("stripefake: PutObject %s %s: %s: %v", kind, id, k, err))
			}
			continue
		}
		top[k] = v
	}
	top["id"] = id
	if _, ok := top["object"]; !ok {
		top["object"] = kind
	}
	if _, ok := top["livemode"]; !ok {
		top["livemode"] = false
	}
	if kind == KindCharge {
		chargeDefaults(top)
	}
	for i, c := range children {
		c = copyMap(c)
		if _, ok := c["id"]; !ok {
			c["id"] = fmt.Sprintf("%s%s_%d", info.childIDPrefix, id, i+1)
		}
		if _, ok := c["object"]; !ok {
			c["object"] = info.childObject
		}
		if kind == KindInvoice {
			if _, ok := c["invoice"]; !ok {
				c["invoice"] = id
			}
		}
		children[i] = c
	}
	f.put(kind, id, top, children)
}

// chargeDefaults fills in the fields Stripe serves on every charge that a
// test may leave out: captured (true), amount_captured (the amount of a
// captured charge, 0 of an uncaptured one) and amount_refunded (0). The
// share of a payment refunded is amount_refunded / amount_captured, so a
// charge served without amount_captured would read as never paid.
func chargeDefaults(c map[string]any) {
	if _, ok := c["captured"]; !ok {
		c["captured"] = true
	}
	if _, ok := c["amount_captured"]; !ok {
		c["amount_captured"] = 0
		if c["captured"] != false && c["amount"] != nil {
			c["amount_captured"] = c["amount"]
		}
	}
	if _, ok := c["amount_refunded"]; !ok {
		c["amount_refunded"] = 0
	}
}

// Requests returns a copy of the log of requests received on Stripe routes,
// in arrival order, including rejected ones.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// SetLatency delays every answer on Stripe routes by d (0 turns it off). The
// delay ends early when the client gives up, so context-cancellation tests
// finish promptly.
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// SetMaxPageSize caps the page size of list routes at n whatever limit the
// client asks for (n <= 0 removes the cap), so a test can force a client
// that asks for 100 items per page through several pages.
func (f *Fake) SetMaxPageSize(n int) {
	f.mu.Lock()
	f.maxPageSize = n
	f.mu.Unlock()
}

// FailNext makes the next times requests whose URL path is exactly path
// (e.g. "/v1/checkout/sessions/cs_test_1", no query) fail with status and
// a Stripe error body: 429 answers code rate_limit, 5xx answers type
// api_error, anything else a plain invalid_request_error. Authentication is
// checked first, as Stripe does. times <= 0 cancels pending failures for
// path.
func (f *Fake) FailNext(path string, status int, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if times <= 0 {
		delete(f.failures, path)
		return
	}
	f.failures[path] = &failure{status: status, remaining: times}
}

func (f *Fake) put(kind, id string, obj map[string]any, children []map[string]any) {
	obj = normalize(obj)
	for i, c := range children {
		children[i] = normalize(c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objects[kind] == nil {
		f.objects[kind] = map[string]map[string]any{}
		f.children[kind] = map[string][]map[string]any{}
	}
	f.objects[kind][id] = obj
	f.children[kind][id] = children
}

func (f *Fake) lookup(kind, id string) (map[string]any, []map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	obj, ok := f.objects[kind][id]
	return obj, f.children[kind][id], ok
}

// expand returns obj with the ID at path (field names, outermost first)
// replaced by the object it names, expanding each step's ID on the way as
// Stripe does. Stored objects are never changed: every map along the path
// is a copy.
func (f *Fake) expand(obj map[string]any, path []string) map[string]any {
	if len(path) == 0 {
		return obj
	}
	var next map[string]any
	switch v := obj[path[0]].(type) {
	case string:
		target, found := f.findAny(v)
		if !found {
			return obj
		}
		next = target
	case map[string]any:
		next = v
	default:
		return obj
	}
	out := copyMap(obj)
	out[path[0]] = f.expand(copyMap(next), path[1:])
	return out
}

// findAny finds a stored object by ID whatever its kind, for expansion.
func (f *Fake) findAny(id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, byID := range f.objects {
		if obj, ok := byID[id]; ok {
			return obj, true
		}
	}
	return nil, false
}

func (f *Fake) record(r *http.Request) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery})
	f.requestSeq++
	return "req_fake_" + strconv.Itoa(f.requestSeq)
}

// delay waits for the configured latency; it reports false if ctx ended
// first.
func (f *Fake) delay(ctx context.Context) bool {
	f.mu.Lock()
	d := f.latency
	f.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *Fake) authorize(r *http.Request) *apiError {
	key, ok := bearerKey(r)
	if !ok || key == "" {
		return &apiError{
			status: http.StatusUnauthorized,
			Type:   "invalid_request_error",
			Message: "You did not provide an API key. You need to provide your API key in the " +
				"Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
		}
	}
	var valid bool
	if f.apiKey == "" {
		valid = len(key) > len("sk_test_") &&
			(strings.HasPrefix(key, "sk_test_") || strings.HasPrefix(key, "rk_test_"))
	} else {
		valid = subtle.ConstantTimeCompare([]byte(key), []byte(f.apiKey)) == 1
	}
	if valid {
		return nil
	}
	return &apiError{
		status:  http.StatusUnauthorized,
		Type:    "invalid_request_error",
		Message: "Invalid API Key provided: " + stripekey.Mask(key),
	}
}

// bearerKey extracts the API key from Authorization. Stripe also accepts
// the key as the Basic auth user name (curl -u sk_test_...:), so the fake
// does too.
func bearerKey(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if key, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(key), true
	}
	if user, _, ok := r.BasicAuth(); ok {
		return user, true
	}
	return "", false
}

func (f *Fake) injectedFailure(path string) *apiError {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.failures[path]
	if !ok {
		return nil
	}
	fl.remaining--
	if fl.remaining <= 0 {
		delete(f.failures, path)
	}
	e := &apiError{status: fl.status, Type: "invalid_request_error",
		Message: fmt.Sprintf("Injected failure (HTTP %d) by stripefake.", fl.status)}
	switch {
	case fl.status == http.StatusTooManyRequests:
		e.Code = "rate_limit"
		e.Message = "Request rate limit exceeded. (Injected by stripefake.)"
	case fl.status >= 500:
		e.Type = "api_error"
	}
	return e
}

// retrieve serves GET /v1/{collection}/{id}.
func (f *Fake) retrieve(kind string) http.HandlerFunc {
	info := kinds[kind]
	return func(w http.ResponseWriter, r *http.Request) {
		q, e := parseQuery(r, false)
		if e != nil {
			e.write(w)
			return
		}
		id := r.PathValue("id")
		obj, children, ok := f.lookup(kind, id)
		if !ok {
			notFound(kind, id).write(w)
			return
		}
		out := copyMap(obj)
		expand := expandPaths(q)
		if info.embedChildren || (info.childKey != "" && expand[info.childKey]) {
			// Stripe's lists of 2023-10-16 carry no total_count.
			out[info.childKey] = listEnvelope(children[:min(len(children), defaultLimit)],
				len(children) > defaultLimit, childURL(info, id), 0)
		}
		for path := range expand {
			if path == info.childKey {
				continue
			}
			// IDs are expanded from whatever the fake holds, along dotted
			// paths (payment_intent.latest_charge) as Stripe does; a path
			// naming no ID the fake holds is accepted and left alone,
			// which is harmless for stripe-go because it decodes an ID and
			// an expanded object into the same struct.
			out = f.expand(out, strings.Split(path, "."))
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// listChildren serves GET /v1/{collection}/{id}/{childPath}.
func (f *Fake) listChildren(kind string) http.HandlerFunc {
	info := kinds[kind]
	return func(w http.ResponseWriter, r *http.Request) {
		q, e := parseQuery(r, true)
		if e != nil {
			e.write(w)
			return
		}
		id := r.PathValue("id")
		// Stripe's InvoiceLinesList of 2023-10-16 carries no total_count.
		f.servePageOfChildren(w, q, kind, id, childURL(info, id), false)
	}
}

// servePageOfChildren answers with the page q asks for of the children
// (line items, invoice lines, subscription items) of object id.
func (f *Fake) servePageOfChildren(w http.ResponseWriter, q url.Values, kind, id, listURL string, withTotal bool) {
	_, children, ok := f.lookup(kind, id)
	if !ok {
		notFound(kind, id).write(w)
		return
	}
	f.mu.Lock()
	maxPage := f.maxPageSize
	f.mu.Unlock()
	data, hasMore, e := page(children, objectID, q, maxPage)
	if e != nil {
		e.write(w)
		return
	}
	var total int
	if withTotal {
		total = len(children)
	}
	writeJSON(w, http.StatusOK, listEnvelope(data, hasMore, listURL, total))
}

func childURL(info kindInfo, id string) string {
	if info.childListURL != nil {
		return info.childListURL(id)
	}
	return "/v1/" + info.collection + "/" + id + "/" + info.childPath
}

// listEnvelope builds Stripe's list object. totalCount is included only
// when positive.
func listEnvelope(data []map[string]any, hasMore bool, u string, totalCount int) map[string]any {
	items := make([]any, len(data))
	for i, d := range data {
		items[i] = d
	}
	env := map[string]any{
		"object":   "list",
		"data":     items,
		"has_more": hasMore,
		"url":      u,
	}
	if totalCount > 0 {
		env["total_count"] = totalCount
	}
	return env
}

// page applies limit, starting_after and ending_before to items, whose IDs
// idOf gives.
func page[T any](items []T, idOf func(T) string, q url.Values, maxPage int) ([]T, bool, *apiError) {
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, false, badParam("limit", "Invalid integer: "+v)
		}
		if n < 1 || n > maxLimit {
			return nil, false, badParam("limit",
				fmt.Sprintf("This value must be between 1 and %d (it currently is '%d').", maxLimit, n))
		}
		limit = n
	}
	if maxPage > 0 && limit > maxPage {
		limit = maxPage
	}
	after, before := q.Get("starting_after"), q.Get("ending_before")
	if after != "" && before != "" {
		return nil, false, badParam("starting_after",
			"You may only specify one of these parameters: starting_after, ending_before.")
	}
	indexOf := func(id string) int {
		for i, it := range items {
			if idOf(it) == id {
				return i
			}
		}
		return -1
	}
	switch {
	case after != "":
		i := indexOf(after)
		if i < 0 {
			return nil, false, noSuchCursor("starting_after", after)
		}
		rest := items[i+1:]
		n := min(limit, len(rest))
		return rest[:n], len(rest) > n, nil
	case before != "":
		i := indexOf(before)
		if i < 0 {
			return nil, false, noSuchCursor("ending_before", before)
		}
		start := max(0, i-limit)
		return items[start:i], start > 0, nil
	default:
		n := min(limit, len(items))
		return items[:n], len(items) > n, nil
	}
}

func objectID(obj map[string]any) string {
	id, _ := obj["id"].(string)
	return id
}

// parseQuery rejects parameters Stripe would reject, so a client that sends
// a misspelt parameter fails against the fake as it would against Stripe.
// expand is accepted in every spelling stripe-go and curl use (expand[],
// expand[0], expand).
func parseQuery(r *http.Request, list bool) (url.Values, *apiError) {
	return parseQueryWith(r, list, nil)
}

// parseQueryWith is parseQuery for a route that also takes the parameters
// accepted reports true for.
func parseQueryWith(r *http.Request, list bool, accepted func(key string) bool) (url.Values, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badParam("", "Invalid query string: "+err.Error())
	}
	for k := range q {
		if isExpandKey(k) {
			continue
		}
		if list && (k == "limit" || k == "starting_after" || k == "ending_before") {
			continue
		}
		if accepted != nil && accepted(k) {
			continue
		}
		return nil, &apiError{
			status:  http.StatusBadRequest,
			Type:    "invalid_request_error",
			Code:    "parameter_unknown",
			Param:   k,
			Message: "Received unknown parameter: " + k,
		}
	}
	return q, nil
}

func isExpandKey(k string) bool {
	if k == "expand" {
		return true
	}
	rest, ok := strings.CutPrefix(k, "expand[")
	return ok && strings.HasSuffix(rest, "]")
}

func expandPaths(q url.Values) map[string]bool {
	paths := map[string]bool{}
	for k, vs := range q {
		if !isExpandKey(k) {
			continue
		}
		for _, v := range vs {
			if v != "" {
				paths[v] = true
			}
		}
	}
	return paths
}

// fakePutSession serves POST /_fake/sessions.
func (f *Fake) fakePutSession(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFakeBody))
	dec.DisallowUnknownFields()
	var s Session
	if err := dec.Decode(&s); err != nil {
		badParam("", "Invalid session JSON: "+err.Error()).write(w)
		return
	}
	if dec.More() {
		badParam("", "Invalid session JSON: more than one value").write(w)
		return
	}
	if err := s.validate(); err != nil {
		badParam("", err.Error()).write(w)
		return
	}
	f.PutSession(s)
	b, _ := f.SessionJSON(s.ID)
	writeRaw(w, http.StatusCreated, b)
}

// fakeGetSession serves GET /_fake/sessions/{id}.
func (f *Fake) fakeGetSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, ok := f.SessionJSON(id)
	if !ok {
		notFound(KindCheckoutSession, id).write(w)
		return
	}
	writeRaw(w, http.StatusOK, b)
}

func unrecognized(w http.ResponseWriter, r *http.Request) {
	(&apiError{
		status: http.StatusNotFound,
		Type:   "invalid_request_error",
		Message: fmt.Sprintf("Unrecognized request URL (%s: %s). This fake serves only the "+
			"routes listed in package stripefake's documentation.", r.Method, r.URL.Path),
	}).write(w)
}

// apiError is Stripe's error object; write wraps it in {"error": ...}.
type apiError struct {
	status  int
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func (e *apiError) write(w http.ResponseWriter) {
	b, err := json.Marshal(map[string]any{"error": e})
	if err != nil {
		panic("stripefake: encoding error body: " + err.Error())
	}
	writeRaw(w, e.status, b)
}

func notFound(kind, id string) *apiError {
	return &apiError{
		status:  http.StatusNotFound,
		Type:    "invalid_request_error",
		Code:    "resource_missing",
		Param:   "id",
		Message: fmt.Sprintf("No such %s: '%s'", kind, id),
	}
}

// noSuchCursor answers a paging cursor that names no item of the list. It
// is a 400, not a 404, so a bad cursor is never mistaken for a missing
// parent object.
func noSuchCursor(param, id string) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		Type:    "invalid_request_error",
		Code:    "resource_missing",
		Param:   param,
		Message: fmt.Sprintf("No such object in this list: '%s'", id),
	}
}

func badParam(param, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		(&apiError{status: http.StatusInternalServerError, Type: "api_error",
			Message: "stripefake: encoding response: " + err.Error()}).write(w)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	// A failed write means the client has gone; there is nobody to tell.
	_, _ = w.Write(b)
}

// normalize deep-copies v through JSON, which detaches it from the caller's
// maps and slices and gives every stored object the same representation
// (numbers as json.Number, so 64-bit values survive exactly).
func normalize(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic("stripefake: object is not JSON-encodable: " + err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		panic("stripefake: re-decoding object: " + err.Error())
	}
	return out
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// childList accepts the shapes PutObject documents for children.
func childList(v any) ([]map[string]any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []map[string]any:
		return append([]map[string]any(nil), t...), nil
	case []any:
		out := make([]map[string]any, len(t))
		for i, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("element %d is %T, want map[string]any", i, e)
			}
			out[i] = m
		}
		return out, nil
	case map[string]any:
		data, ok := t["data"]
		if !ok {
			return nil, fmt.Errorf("list object without data")
		}
		if _, nested := data.(map[string]any); nested {
			return nil, fmt.Errorf("data is a map, want a list")
		}
		return childList(data)
	default:
		return nil, fmt.Errorf("%T, want []map[string]any, []any or a list object", v)
	}
}
