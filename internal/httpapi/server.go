// Package httpapi is the service's HTTP surface: Stripe's webhook endpoint,
// the shop's order API and health checks. Domain error codes become HTTP
// statuses in one table (statusOf).
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"fulfiller/internal/discord"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/notify"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/shop"
)

// Server routes the service's HTTP endpoints.
type Server struct {
	Pool *pgxpool.Pool
	// Orders is the order workflow (confirm with Stripe, retry).
	Orders *jobs.Orders
	// Support carries out the /v1/admin operations.
	Support *jobs.Support
	// Stock reads the stock levels the console's overview shows; nil
	// leaves them out.
	Stock   *jobs.StockAdmin
	Webhook http.Handler
	// ShopToken is the storefront's bearer token for the read-only
	// listings (SHOP_API_TOKEN); "" turns them off.
	ShopToken string
	// AdminToken is the admin API's bearer token (ADMIN_API_TOKEN); the
	// admin login (AdminUser, AdminPassword) works too.
	AdminToken string
	// Metrics serves /metrics on the internal listener; nil answers 404.
	Metrics http.Handler
	Logger  *slog.Logger
	// Credentials, when set, makes /readyz fail while a key is refused.
	Credentials interface{ Problems() []string }
	// Checks runs doctor's checks for the console's overview, on demand;
	// nil leaves them out.
	Checks *doctor.Checks
	// Mail sends keys by email; nil means it is off, and so is find my
	// keys.
	Mail *mail.Sender
	// BillingPortal opens Stripe customer portal sessions for "Manage
	// subscription"; PortalOrigin is where Stripe serves the portal
	// (StripePortalOrigin, or the Stripe stand-in), which the pages' forms
	// may be redirected to. PortalReturnURL (BILLING_PORTAL_RETURN_URL) is
	// where the portal sends buyers back; "" is their order page, at
	// PublicBaseURL (PUBLIC_BASE_URL) when set, else at the address their
	// request came to.
	BillingPortal   BillingPortal
	PortalOrigin    string
	PortalReturnURL string
	PublicBaseURL   string
	// Changes wakes requests waiting for an order (?wait=); nil answers
	// them at once.
	Changes *notify.Hub
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// MaxConnections is MAX_CONNECTIONS: requests held waiting (?wait=)
	// take at most half of them, so held requests never take the places
	// webhooks and other requests need. 0 leaves them bounded by Changes
	// alone.
	MaxConnections int
	// AllowedOrigins may read the order API from a browser (ALLOWED_ORIGINS).
	AllowedOrigins []string
	// PendingMigrations, when set, makes /readyz fail while the database
	// lacks a migration of this version.
	PendingMigrations func(ctx context.Context) ([]string, error)
	// RiverUI is served at RiverUIPrefix on the internal listener behind
	// the admin login (AdminUser, AdminPassword); without all three it
	// answers 404.
	RiverUI       http.Handler
	AdminUser     string
	AdminPassword string
	// Shop is the shop as buyers see it on the pages and in the order
	// API (SHOP_*).
	Shop shop.Identity
	// LuarmorRateLimit and LuarmorRateWindow are the fleet's Luarmor
	// budget (LUARMOR_RATE_LIMIT), which paces the making of keys: the
	// order page estimates the wait for the rest of an order's keys from
	// it. Zero is the budget's default.
	LuarmorRateLimit  int
	LuarmorRateWindow time.Duration

	// Unknown session IDs cost a Stripe call each; these bound that cost:
	// a bucket per client under one for the process.
	lookups       *tokenBucket
	clientLookups *clientBuckets
	negatives     *expiringSet
	flight        singleflight.Group
	once          sync.Once

	unavailable logging.Sampled // 503s of an outage, logged once in a while
	// untrustedForward logs X-Forwarded-For from untrusted peers once in
	// a while (untrustedForwardEvery).
	untrustedForward logging.Sampled

	// authFailures counts each client's failed credentials; authLog logs
	// them once in a while per client.
	authFailures *clientBuckets
	// authFailuresAll bounds failed credentials across all clients: a
	// guesser with many addresses is slowed too.
	authFailuresAll *tokenBucket
	authLog         logging.SampledByKey

	// The other per-client limits: find my keys, HWID resets, and requests
	// held for an order not recorded yet.
	keyLookup   *keyLookupAPI
	hwidClients *clientBuckets
	recordHolds *holds
	// Customer portal sessions: per client and for the process, requests
	// from other sites refused, failures logged once in a while each.
	portalClients     *clientBuckets
	portalAll         *tokenBucket
	portalCrossOrigin *http.CrossOriginProtection
	portalLog         *slog.Logger
	// waitHolds bounds the requests held waiting (?wait=), per client and
	// for the process.
	waitHolds *holds

	links orderLinks // the signing key of order links, once read

	// Discord runs the order page's verified Discord link (DISCORD_*);
	// nil turns it off: no button, and its routes answer 404.
	Discord        *discord.Client
	discordFlows   discordFlows   // the sealer of sign-ins, once read
	discordClients *clientBuckets // sign-ins begun per client
}

// init builds the server's limits once, however many handlers are built
// from it: every route of one server shares them.
func (s *Server) init() {
	s.once.Do(func() {
		s.untrustedForward.Every = untrustedForwardEvery
		s.lookups = newTokenBucket(globalLookupRate, globalLookupBurst)
		s.clientLookups = newClientBuckets(clientLookupRate, clientLookupBurst, maxTrackedClients)
		s.negatives = newExpiringSet(10000, 10*time.Minute)
		s.authFailures = newClientBuckets(1.0/authFailureEvery, authFailureBurst, maxTrackedClients)
		s.authFailuresAll = newTokenBucket(authFailureRateAll, authFailureBurstAll)
		s.keyLookup = newKeyLookupAPI(s)
		s.hwidClients = newClientBuckets(hwidResetRate, hwidResetBurst, maxTrackedClients)
		s.recordHolds = newHolds(maxRecordHoldsPerClient, maxRecordHolds)
		s.portalClients = newClientBuckets(portalClientRate, portalClientBurst, maxTrackedClients)
		s.portalAll = newTokenBucket(portalGlobalRate, portalGlobalBurst)
		s.portalCrossOrigin = http.NewCrossOriginProtection()
		s.portalLog = newPortalLogger(s.Logger)
		s.waitHolds = newHolds(maxWaitHoldsPerClient, maxWaitHolds(s.MaxConnections))
		s.discordClients = newClientBuckets(discordStartRate, discordStartBurst, maxTrackedClients)
	})
}

// Handler returns the public listener's handler (LISTEN_ADDR): Stripe's
// webhook, the buyer's routes and the shop's read-only listings. Nothing
// on it changes an order but the buyer's own self-service.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	// Beside the route table (openapi.json documents the routes only):
	// every path no route matches, as ServeMux picks the most specific.
	mux.Handle("/", s.unrouted(mux, true))
	return s.watchForwarding(s.recoverPages(mux))
}

// AdminHandler returns the internal listener's handler (ADMIN_ADDR):
// metrics, health probes, the admin API and the River UI. It refuses
// cross-site requests that change state (a browser holding the admin
// login would send them for any page it visits), and its answers are never
// framed nor cached.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.adminRoutes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	// The River UI is an application of its own under one prefix (its
	// pages and a JSON API that changes with River's versions), not part
	// of the service's API: it is mounted beside the route table, which
	// stays the documented surface that openapi.json is checked against.
	mux.Handle(RiverUIPrefix, s.riverUI())
	mux.Handle("/", s.unrouted(mux, false))
	return adminHeaders(s.crossOriginProtection().Handler(mux))
}

// unrouted answers what no route of mux matches, in the service's own
// words rather than ServeMux's bare text: a page address on the public
// listener (pages) gets the not-found page, anything else the JSON error
// of the API. Registered as "/", it would otherwise hide ServeMux's 405
// for a path routed for other methods, so it gives that itself. (ServeMux
// still redirects a subtree's root without its slash before matching.)
func (s *Server) unrouted(mux *http.ServeMux, pages bool) http.Handler {
	routedAs := func(r *http.Request, method, path string) bool {
		probe := r.Clone(r.Context())
		probe.Method, probe.URL.Path, probe.URL.RawPath = method, path, ""
		_, pattern := mux.Handler(probe)
		return pattern != "" && pattern != "/"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if routedAs(r, m, path) {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			if pages && isPageRoute(path) {
				s.renderErrorPage(w, r, http.StatusMethodNotAllowed)
				return
			}
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{
				"error": fmt.Sprintf("%s is not allowed on this path; it answers %s", r.Method, strings.Join(allowed, ", ")),
				"code":  "method_not_allowed"})
			return
		}
		if pages && (r.Method == http.MethodGet || r.Method == http.MethodHead) && isPagePath(path) {
			s.renderPage(w, r, http.StatusNotFound, "not-found.html", pageData{Title: "Page not found", FindKeys: s.Mail != nil})
			return
		}
		listener := "the service"
		if !pages {
			listener = "the internal listener"
		}
		s.writeError(w, r, order.Errorf(order.ENOTFOUND, "%s has no route for %s %s; openapi.json lists its routes", listener, r.Method, path))
	})
}

// isPagePath says path is where a page could be, not the API's, the
// webhook's or the River UI's.
func isPagePath(path string) bool {
	for _, prefix := range []string{"/v1/", "/webhooks/", RiverUIPrefix} {
		if strings.HasPrefix(path+"/", prefix) {
			return false
		}
	}
	return true
}

// route is one endpoint: its ServeMux pattern and its handler. The tables
// are the service's whole HTTP surface; the OpenAPI document is checked
// against them.
type route struct {
	pattern string
	handler http.Handler
}

// routes is the public listener's table.
func (s *Server) routes() []route {
	s.init()
	lookup := s.keyLookup
	return []route{
		{"POST /webhooks/stripe", s.Webhook},
		{"GET /v1/orders/{checkout_session_id}", s.orderAPI(s.getOrder)},
		{"OPTIONS /v1/orders/{checkout_session_id}", s.orderAPI(s.preflight)},
		{"POST /v1/orders/{checkout_session_id}/reset-hwid", s.orderAPI(s.resetHWID)},
		{"POST /v1/key-lookup", s.orderAPI(lookup.requestLink)},
		{"POST /v1/my-keys", s.orderAPI(lookup.listMyKeys)},
		{"GET /v1/customers/{stripe_customer_id}/keys", s.orderAPI(s.requireShopToken(s.listCustomerKeys))},
		{"GET /v1/keys", s.orderAPI(s.requireShopToken(s.refuseEmailKeys))},
		{"POST /v1/keys/search", s.orderAPI(s.requireShopToken(s.searchEmailKeys))},
		{"GET /orders/{checkout_session_id}", http.HandlerFunc(s.orderPage)},
		{"GET /orders/{checkout_session_id}/keys.txt", http.HandlerFunc(s.keysText)},
		{"GET /orders/{checkout_session_id}/keys.csv", http.HandlerFunc(s.keysCSV)},
		{"GET /orders/{checkout_session_id}/discord", http.HandlerFunc(s.discordStart)},
		{"GET " + discord.CallbackPath, http.HandlerFunc(s.discordCallback)},
		{"GET /my-keys", http.HandlerFunc(s.myKeysPage)},
		{"GET /orders/{checkout_session_id}/manage-subscription", http.HandlerFunc(s.manageSubscriptionPage)},
		{"POST /orders/{checkout_session_id}/manage-subscription", http.HandlerFunc(s.manageSubscription)},
		{"GET /assets/{name}", http.HandlerFunc(s.serveAsset)},
		{"GET /openapi.json", http.HandlerFunc(serveOpenAPI)},
		{"GET /v1/forwarded-for", http.HandlerFunc(s.forwardedFor)},
	}
}

// adminRoutes is the internal listener's table. Support actions need the
// admin token or login (requireAdmin); probes and metrics need none, the
// listener being reachable from inside the deployment only.
func (s *Server) adminRoutes() []route {
	s.init()
	return append([]route{
		{"GET /v1/admin/orders", s.adminAPI(s.adminFindOrders)},
		{"POST /v1/admin/orders/search", s.adminAPI(s.adminSearchOrders)},
		{"GET /v1/admin/orders/{id_or_ref}", s.adminAPI(s.adminGetOrder)},
		{"POST /v1/admin/orders/{id_or_ref}/retry", s.adminAPI(s.adminRetryOrder)},
		{"POST /v1/admin/orders/{id_or_ref}/resend-email", s.adminAPI(s.adminResendEmail)},
		{"POST /v1/admin/orders/{id_or_ref}/revocations/{source_id}/lift", s.adminAPI(s.adminLiftRevocation)},
		{"POST /v1/admin/orders/{id_or_ref}/rotate-link", s.adminAPI(s.adminRotateLink)},
		{"POST /v1/admin/keys/{action}", s.adminAPI(s.adminKeyAction)},
		{"GET /v1/admin/audit", s.adminAPI(s.adminAuditLog)},
		{"GET /v1/admin/progress", s.adminAPI(s.adminProgress)},
		{"GET /v1/admin/webhooks/deliveries", s.adminAPI(s.adminListDeliveries)},
		{"GET /v1/admin/webhooks/deliveries/{id}", s.adminAPI(s.adminGetDelivery)},
		{"POST /v1/admin/webhooks/deliveries/{id}/replay", s.adminAPI(s.adminReplayDelivery)},
		{"GET /metrics", s.metrics()},
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})},
		{"GET /readyz", http.HandlerFunc(s.ready)},
	}, s.consoleRoutes()...)
}

// statusOf is the one table from domain error codes to HTTP statuses.
var statusOf = map[string]int{
	order.ENOTFOUND:     http.StatusNotFound,
	order.EINVALID:      http.StatusBadRequest,
	order.EUNAUTHORIZED: http.StatusUnauthorized,
	order.ETOOMANY:      http.StatusTooManyRequests,
	order.ECONFLICT:     http.StatusConflict,
	order.ECOOLDOWN:     http.StatusTooManyRequests,
	order.ERATELIMITED:  http.StatusTooManyRequests,
	order.EUNAVAILABLE:  http.StatusServiceUnavailable,
	order.EINTERNAL:     http.StatusInternalServerError,
	// Find my keys while mail is off: the route is there only with mail.
	order.EMAILNOTCONFIGURED: http.StatusServiceUnavailable,
}

// retryAfterUnavailable is the Retry-After of a 503, in seconds: about as
// long as PostgreSQL takes to restart or fail over.
const retryAfterUnavailable = "5"

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, message := order.ErrorCode(err), order.ErrorMessage(err)
	if code == order.EINTERNAL && postgres.IsUnavailable(err) {
		code, message = order.EUNAVAILABLE, "the order database is unreachable; retry in a few seconds"
	}
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	switch {
	case code == order.EMAILNOTCONFIGURED:
		// The answer says it; a line per request would only let anyone
		// fill the log.
	case code == order.EUNAVAILABLE:
		// Every request fails alike while a dependency is down: one
		// line every few seconds says so without flooding the log.
		w.Header().Set("Retry-After", retryAfterUnavailable)
		s.unavailable.Log(r.Context(), s.Logger, slog.LevelWarn, "dependency unavailable; answering 503 with Retry-After",
			"route", routeOf(r), "error", logSafe(r, err))
	case status >= 500:
		s.Logger.ErrorContext(r.Context(), "request failed", "route", routeOf(r), "error", logSafe(r, err))
	case code == order.ETOOMANY:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error": message, "code": code})
}

// routeOf names the request's route without its path values: a Checkout
// Session ID is a capability and stays out of the log.
func routeOf(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return r.Method + " (unrouted)"
}

// logSafe is err's text with the request's Checkout Session ID replaced by its order reference:
// errors name the order they were about.
func logSafe(r *http.Request, err error) string {
	text := err.Error()
	if id := r.PathValue("checkout_session_id"); id != "" {
		text = strings.ReplaceAll(text, id, logging.OrderRef(id))
	}
	return text
}

// sessionIDPattern accepts Stripe's Checkout Session IDs only, so junk never
// reaches Stripe.
var sessionIDPattern = regexp.MustCompile(`^cs_(test|live)_[A-Za-z0-9]{8,250}$`)

// OrderJSON is the order API's answer.
type OrderJSON struct {
	// CheckoutSessionID is answered to whoever named the order by it (and
	// to the shop and support), never to the holder of a signed link.
	CheckoutSessionID string    `json:"checkout_session_id,omitempty"`
	Status            string    `json:"status"`
	CustomerEmail     string    `json:"customer_email"`
	Keys              []KeyJSON `json:"keys"`
	// KeysPending counts purchased units whose key is not delivered yet.
	KeysPending int `json:"keys_pending"`
	// PaidThrough is the end of the latest paid subscription period (unix
	// seconds); absent for one-off purchases and before the first renewal.
	PaidThrough *int64 `json:"paid_through,omitempty"`
	PurchaseJSON
	// Discord is the Discord account the buyer verified from the order
	// page, and what became of it; absent when none was.
	Discord *DiscordJSON `json:"discord,omitempty"`
	OrderStateJSON
}

// DiscordJSON is a verified Discord account of an order.
type DiscordJSON struct {
	Username string `json:"username"`
	// Status: "linking", "linked", "in_use", "invalid" or "no_keys" (see
	// order.DiscordVerification).
	Status string `json:"status"`
}

// KeyJSON is one delivered key.
type KeyJSON struct {
	UserKey    string `json:"user_key"`
	ProjectID  string `json:"project_id"`
	PriceID    string `json:"price_id"`
	Status     string `json:"status"`
	KeyDays    int    `json:"key_days"`
	AuthExpire *int64 `json:"auth_expire"`
	// Ending: the key left its subscription (a seat removed, a plan
	// changed, the subscription ended) and runs out at auth_expire.
	Ending bool `json:"ending,omitempty"`
	// Suspended: the key is blacklisted until its subscription's unpaid
	// renewal is paid; it does not work meanwhile.
	Suspended bool `json:"suspended,omitempty"`
	// DiscordLink is what became of the buyer's Discord ID on this key:
	// "linked", "in_use" (the ID has another customer's key; claim this
	// one with Luarmor's Redeem button), "invalid" (Luarmor refused the
	// ID) or "none".
	DiscordLink string `json:"discord_link"`
	// DiscordVerified: the key carries the Discord account the buyer
	// verified (the order's discord).
	DiscordVerified bool `json:"discord_verified,omitempty"`
	// HWIDReset is the key's latest self-service HWID reset.
	HWIDReset HWIDResetJSON `json:"hwid_reset"`

	// ProductName is what the key was sold as: the catalog's name of its
	// price, Stripe's product name, or else its price ID.
	ProductName string `json:"product_name"`
	KeyStateJSON
}

func renderOrder(o *order.Order) OrderJSON {
	now := time.Now()
	out := OrderJSON{CheckoutSessionID: o.CheckoutSessionID, Status: string(o.Status), CustomerEmail: o.CustomerEmail,
		Keys: []KeyJSON{}, PaidThrough: o.PaidThrough, PurchaseJSON: renderPurchase(o), OrderStateJSON: renderOrderState(o, now)}
	if o.Discord != nil {
		out.Discord = &DiscordJSON{Username: o.Discord.Username, Status: string(o.Discord.Status)}
	}
	for _, k := range o.Keys {
		if !k.Delivered() {
			// A revoked order's undelivered units will not be delivered.
			if k.Status == order.KeyPending && o.Status != order.StatusRevoked {
				out.KeysPending++
			}
			continue
		}
		out.Keys = append(out.Keys, KeyJSON{UserKey: k.UserKey, ProductName: o.ProductName(k), ProjectID: k.ProjectID, PriceID: k.PriceID,
			Status: string(k.Status), KeyDays: k.KeyDays, AuthExpire: k.AuthExpire, Ending: k.Ending,
			Suspended:   k.Suspended && k.Status == order.KeyActive,
			DiscordLink: string(k.DiscordLink), DiscordVerified: k.DiscordVerified,
			HWIDReset: renderHWIDReset(k.HWIDReset, now), KeyStateJSON: renderKeyState(o, k, now)})
	}
	return out
}

// requireShopToken lets through requests with the shop's bearer token,
// which reads listings and nothing else. With SHOP_API_TOKEN unset the
// endpoints do not exist (404); a wrong or
// missing token is a 401 with WWW-Authenticate, and a client past its
// failed attempts gets 429 without its token being looked at.
func (s *Server) requireShopToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.ShopToken == "" {
			s.writeError(w, r, order.Errorf(order.ENOTFOUND, "no such endpoint: the shop endpoints are off until SHOP_API_TOKEN is set"))
			return
		}
		if s.authThrottled(w, r) {
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !secretEqual(got, s.ShopToken) {
			s.authFailed(r, "shop API bearer token refused")
			w.Header().Set("WWW-Authenticate", `Bearer realm="fulfiller"`)
			s.writeError(w, r, order.Errorf(order.EUNAUTHORIZED, "missing or wrong bearer token (SHOP_API_TOKEN)"))
			return
		}
		next(w, r)
	}
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Pool.Ping(ctx); err != nil {
		// Whatever the cause, a replica without its database is not ready.
		s.writeError(w, r, fmt.Errorf("%w: %w", &order.Error{Code: order.EUNAVAILABLE, Message: "database unreachable; retry in a few seconds"}, err))
		return
	}
	if s.PendingMigrations != nil {
		pending, err := s.PendingMigrations(ctx)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("%w: %w", &order.Error{Code: order.EUNAVAILABLE, Message: "could not read the applied migrations; retry in a few seconds"}, err))
			return
		}
		if len(pending) > 0 {
			// Code of this version on an older schema fails in ways no
			// retry fixes: stay out of the load balancer until migrated.
			w.Header().Set("Retry-After", "10")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"code": order.EUNAVAILABLE,
				"error": fmt.Sprintf("the database lacks %d migration(s) of this version, first %s: run `fulfiller migrate`", len(pending), pending[0])})
			return
		}
	}
	if s.Credentials != nil {
		if problems := s.Credentials.Problems(); len(problems) > 0 {
			w.Header().Set("Retry-After", "60")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": strings.Join(problems, "; "), "code": order.EUNAVAILABLE})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// tokenBucket is a small rate limiter: rate tokens a second, up to burst.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (b *tokenBucket) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// available reports whether a token is there, without taking it.
func (b *tokenBucket) available() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return min(b.burst, b.tokens+time.Since(b.last).Seconds()*b.rate) >= 1
}

// expiringSet remembers up to max keys for ttl each.
type expiringSet struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	items map[string]time.Time
}

func newExpiringSet(max int, ttl time.Duration) *expiringSet {
	return &expiringSet{max: max, ttl: ttl, items: map[string]time.Time{}}
}

func (s *expiringSet) contains(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.items[k]
	return ok && time.Now().Before(exp)
}

func (s *expiringSet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.items) >= s.max {
		for key, exp := range s.items {
			if now.After(exp) {
				delete(s.items, key)
			}
		}
		if len(s.items) >= s.max {
			return // full of live entries: the token bucket still bounds the cost
		}
	}
	s.items[k] = now.Add(s.ttl)
}
