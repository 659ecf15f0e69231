package httpapi

import (
	"net/http"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Find my keys: POST /v1/key-lookup emails a link to an address that
// bought something; POST /v1/my-keys lists that address's orders for the
// link's token. Both exist only with mail: without it they answer 503
// mail_not_configured, GET /my-keys answers 404, and no page links there.
const (
	// Link requests per client: a few in a row, then one a minute. The
	// limits per address, client and network (jobs.KeyLookupsPerAddress)
	// hold across replicas.
	keyLookupClientRate  = 1.0 / 60
	keyLookupClientBurst = 5
	// All find-my-keys requests of the process: every one writes a row and
	// queues a job, so a client rotating addresses is bounded here.
	keyLookupGlobalRate  = 1
	keyLookupGlobalBurst = 30
	// Token checks per client: a page load each.
	myKeysClientRate  = 1
	myKeysClientBurst = 10
	// MaxMyKeysOrders is how many orders (the newest) a link lists.
	MaxMyKeysOrders = 100
	// maxLookupBody bounds the JSON body of both endpoints.
	maxLookupBody = 4 << 10
)

// keyLookupAPI serves find my keys with its own per-client limits.
type keyLookupAPI struct {
	s       *Server
	lookups *clientBuckets
	global  *tokenBucket
	checks  *clientBuckets
	now     func() time.Time
}

func newKeyLookupAPI(s *Server) *keyLookupAPI {
	return &keyLookupAPI{s: s, now: time.Now,
		lookups: newClientBuckets(keyLookupClientRate, keyLookupClientBurst, maxTrackedClients),
		global:  newTokenBucket(keyLookupGlobalRate, keyLookupGlobalBurst),
		checks:  newClientBuckets(myKeysClientRate, myKeysClientBurst, maxTrackedClients)}
}

// MyKeysJSON is the answer of POST /v1/my-keys.
type MyKeysJSON struct {
	Email     string            `json:"email"`
	ExpiresAt int64             `json:"expires_at"` // unix seconds: when the link stops working
	Orders    []MyKeysOrderJSON `json:"orders"`     // newest first
}

// MyKeysOrderJSON is one order of find my keys: the order API's view, its
// reference, and a short-lived signed link that opens it. Never its
// Checkout Session ID: that would outlive the half hour the email's link
// grants, and support could only revoke it by rotating the order's access.
type MyKeysOrderJSON struct {
	// The order API's view, its order_ref among it.
	OrderJSON
	// LinkToken opens /orders/{link_token} and /v1/orders/{link_token}
	// until LinkExpiresAt (unix seconds).
	LinkToken     string `json:"link_token"`
	LinkExpiresAt int64  `json:"link_expires_at"`
}

// errMailNotConfigured answers find my keys while mail is off: the
// service cannot email links, and keys stay on each order's page.
var errMailNotConfigured = order.Errorf(order.EMAILNOTCONFIGURED,
	"find my keys is not available: it emails a link, and this shop has not configured mail (SMTP_URL, MAIL_FROM, PUBLIC_BASE_URL); "+
		"buyers' keys are on their order pages, and support finds orders by email address")

// requestLink answers 202 for every well-formed address, whether it bought
// anything or not, and whether or not the request is past the limits of
// its address, client and network:
// the same answer, after the same work (one transaction that records the
// request and, within the limit, queues the email job, which finds out
// whether there is anything to send). Only the per-client limit refuses.
func (a *keyLookupAPI) requestLink(w http.ResponseWriter, r *http.Request) {
	if a.s.Mail == nil {
		a.s.writeError(w, r, errMailNotConfigured)
		return
	}
	client := a.s.clientIP(r)
	if !a.lookups.allow(client) {
		w.Header().Set("Retry-After", "60")
		a.s.writeError(w, r, order.Errorf(order.ERATELIMITED, "too many find-my-keys requests from this address; retry in a minute"))
		return
	}
	if !a.global.allow() {
		w.Header().Set("Retry-After", "5")
		a.s.writeError(w, r, order.Errorf(order.ERATELIMITED, "find my keys is busy; retry in a few seconds"))
		return
	}
	var body struct {
		Email string `json:"email"`
	}
	if err := decodeLookupBody(w, r, &body); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	email, err := jobs.NormalizeEmail(body.Email)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if _, err := a.s.Orders.RequestKeyLookup(r.Context(), email, client); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// listMyKeys answers the orders of the address a link's token grants.
func (a *keyLookupAPI) listMyKeys(w http.ResponseWriter, r *http.Request) {
	if a.s.Mail == nil {
		// Without mail no link is sent, so none is listed either.
		a.s.writeError(w, r, errMailNotConfigured)
		return
	}
	if !a.checks.allow(a.s.clientIP(r)) {
		w.Header().Set("Retry-After", "1")
		a.s.writeError(w, r, order.Errorf(order.ERATELIMITED, "too many requests; retry in a second"))
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := decodeLookupBody(w, r, &body); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	email, expiresAt, err := jobs.VerifyKeyLookupToken(r.Context(), a.s.Pool, body.Token, a.now())
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	orders, err := postgres.OrdersOfEmail(r.Context(), a.s.Pool, email, MaxMyKeysOrders)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	links, err := a.s.orderLinks(r)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	linkExpiresAt := a.now().Add(jobs.OrderLookupLinkTTL)
	out := MyKeysJSON{Email: email, ExpiresAt: expiresAt.Unix(), Orders: make([]MyKeysOrderJSON, 0, len(orders))}
	for _, o := range orders {
		out.Orders = append(out.Orders, MyKeysOrderJSON{OrderJSON: a.s.renderOrderFor(o, false), LinkToken: links.Sign(o, linkExpiresAt), LinkExpiresAt: linkExpiresAt.Unix()})
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeLookupBody reads the small JSON body of both endpoints.
func decodeLookupBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONBody(w, r, v, maxLookupBody)
}
