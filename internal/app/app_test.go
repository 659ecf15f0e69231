package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/app"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	project     = "3f98888f9999c9999e99a2"
	project2    = "4a17777e8888b8888d88b3"
	priceMonth  = "price_month30"
	priceOther  = "price_other30" // a month of project2
	priceYear   = "price_year365" // a year of project, the yearly plan of priceMonth
	priceLife   = "price_lifetime"
	stripeKey   = "sk_test_fulfiller"
	luarmorKey  = "luarmor-test-key"
	secretOld   = "whsec_old_secret_for_tests"
	secretNew   = "whsec_new_secret_for_tests"
	defaultMail = "buyer@example.com"
)

type bundle struct {
	main    *app.Main
	sandbox *sandbox.Sandbox
	stripe  *stripefake.Fake
	pool    *pgxpool.Pool
	url     string
	// adminURL is the internal listener: probes, metrics, the admin API.
	adminURL string
	secret   string
	catalog  *catalog.Catalog
}

type options struct {
	luarmorLatency time.Duration
	policy         *order.Policy
	databaseURL    string        // a migrated database; "" makes a fresh one
	reconcileEvery time.Duration // 0: no periodic reconciliation
	configure      func(*config.Config)
	logger         *slog.Logger
	stock          map[string]catalog.Product // stocked prices added to the catalog
}

// withConfig changes the service's settings before it starts.
func withConfig(f func(*config.Config)) func(*options) {
	return func(o *options) { o.configure = f }
}

// withLogger sends the service's log to l.
func withLogger(l *slog.Logger) func(*options) {
	return func(o *options) { o.logger = l }
}

func setup(t *testing.T, opts ...func(*options)) *bundle {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	sb := sandbox.New(sandbox.Options{APIKey: luarmorKey, Projects: []string{project, project2}, Limit: 100000, Window: time.Minute, StrictBody: true})
	if o.luarmorLatency > 0 {
		sb.SetLatency(o.luarmorLatency)
	}
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	sf := stripefake.New(stripeKey)
	sfSrv := httptest.NewServer(sf)
	t.Cleanup(sfSrv.Close)

	cat := &catalog.Catalog{Prices: map[string]catalog.Product{
		priceMonth: {ProjectID: project, KeyDays: 30},
		priceLife:  {ProjectID: project, KeyDays: 0},
		priceOther: {ProjectID: project2, KeyDays: 30},
		priceYear:  {ProjectID: project, KeyDays: 365},
	}}
	for id, p := range o.stock {
		cat.Put(id, p)
	}
	if o.databaseURL == "" {
		o.databaseURL = postgrestest.NewURL(t)
	}
	m := &app.Main{
		Config: config.Config{
			DatabaseURL:    o.databaseURL,
			ListenAddr:     "127.0.0.1:0",
			WebhookSecrets: []string{secretOld, secretNew},
			StripeAPIKey:   stripeKey,
			StripeAPIBase:  sfSrv.URL,
			LuarmorAPIKey:  luarmorKey,
			LuarmorBaseURL: sbSrv.URL,
			// Functional tests are not about the budget: make it roomy.
			LuarmorRateLimit:  100000,
			LuarmorRateWindow: time.Minute,
			ShopAPIToken:      "shop-token",
			AdminAPIToken:     adminToken,
			AdminAddr:         "127.0.0.1:0",
			MaxUnitsPerOrder:  config.DefaultMaxUnitsPerOrder,
			ShutdownTimeout:   2 * time.Second,
		},
		Catalog: cat,
		Logger:  testLogger(t),
	}
	m.Config.Policy = order.DefaultPolicy()
	m.Config.ReconcileInterval = o.reconcileEvery
	if o.policy != nil {
		m.Config.Policy = *o.policy
	}
	if o.configure != nil {
		o.configure(&m.Config)
	}
	if o.logger != nil {
		m.Logger = o.logger
	}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	return &bundle{main: m, sandbox: sb, stripe: sf, pool: m.Pool, url: m.URL(), adminURL: m.AdminURL(), secret: secretNew, catalog: cat}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var seq atomic.Int64

func newID(prefix string) string {
	return fmt.Sprintf("%s%d%07d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// paidSession registers a paid Checkout Session in the Stripe fake.
func (b *bundle) paidSession(t *testing.T, items ...stripefake.Item) stripefake.Session {
	t.Helper()
	s := stripefake.Session{
		ID: newID("cs_test_"), Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Customer: newID("cus_"), PaymentIntent: newID("pi_"), Items: items,
	}
	b.stripe.PutSession(s)
	return s
}

// unpaidSession registers a completed Checkout Session whose delayed
// payment has not settled yet.
func (b *bundle) unpaidSession(t *testing.T, items ...stripefake.Item) stripefake.Session {
	t.Helper()
	s := b.paidSession(t, items...)
	s.PaymentStatus = "unpaid"
	b.stripe.PutSession(s)
	return s
}

// buy pays for items and waits until the order is fulfilled.
func (b *bundle) buy(t *testing.T, items ...stripefake.Item) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	s := b.paidSession(t, items...)
	b.deliver(t, b.sessionEvent(t, "checkout.session.completed", s.ID))
	return s, b.waitOrder(t, s.ID, "fulfilled")
}

// event builds a Stripe event of the service's API version around object.
func event(t *testing.T, typ string, object []byte) []byte {
	t.Helper()
	ev := map[string]any{
		"id": newID("evt_"), "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": typ, "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": json.RawMessage(object)},
	}
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	return body
}

func (b *bundle) sessionEvent(t *testing.T, typ, sessionID string) []byte {
	t.Helper()
	obj, ok := b.stripe.SessionJSON(sessionID)
	require.True(t, ok)
	return event(t, typ, obj)
}

type answer struct {
	status int
	body   []byte
}

func (b *bundle) post(t *testing.T, body []byte, header string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url+"/webhooks/stripe", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if header != "" {
		req.Header.Set("Stripe-Signature", header)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, out}
}

func sign(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}

// deliver sends a correctly signed event and requires a 200.
func (b *bundle) deliver(t *testing.T, body []byte) {
	t.Helper()
	a := b.post(t, body, sign(body, b.secret, time.Now()))
	require.Equal(t, http.StatusOK, a.status, string(a.body))
}

func (b *bundle) getOrder(t *testing.T, id string) (int, httpapi.OrderJSON) {
	t.Helper()
	resp, err := http.Get(b.url + "/v1/orders/" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	var o httpapi.OrderJSON
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&o))
	}
	return resp.StatusCode, o
}

// waitOrder polls the order API until the order reaches status.
func (b *bundle) waitOrder(t *testing.T, id, status string) httpapi.OrderJSON {
	t.Helper()
	var last httpapi.OrderJSON
	require.Eventually(t, func() bool {
		code, o := b.getOrder(t, id)
		last = o
		return code == http.StatusOK && o.Status == status
	}, 20*time.Second, 20*time.Millisecond, "order %s never reached %s; last seen %+v", id, status, &last)
	return last
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// luarmorUsersFor lists the sandbox's keys whose note names the session.
func (b *bundle) luarmorUsersFor(sessionID string) int {
	n := 0
	for _, u := range b.sandbox.Users(project) {
		if strings.Contains(u.Note, sessionID) {
			n++
		}
	}
	return n
}

func (b *bundle) creates() int {
	n := 0
	for _, c := range b.sandbox.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/users") {
			n++
		}
	}
	return n
}

func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

// An operator's request for an order by its Checkout Session ID that fails
// inside the database was logged with the error's text, which names the
// order by that ID (postgres.GetOrder: "reading order cs_..."): the route's
// own path scrubbing knows checkout_session_id only. The service's log
// filter turns the ID into the order's reference, whatever logger the
// service was given.
func TestAFailedRequestLogsTheOrderReferenceNotTheSessionID(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `ALTER TABLE orders RENAME TO orders_hidden_by_test`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.pool.Exec(ctx, `ALTER TABLE orders_hidden_by_test RENAME TO orders`) })

	status, body := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, http.StatusInternalServerError, status, "%v", body)
	out := logs.String()
	require.Contains(t, out, `"msg":"request failed"`)
	require.Contains(t, out, "reading order "+logging.OrderRef(s.ID), "the error names the order by its reference")
	require.NotContains(t, out, s.ID)
}
