package fulfillertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/app"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

// The credentials of a test service. They are fixed (each test has stand-ins
// of its own) and long enough for the service's checks of their form, those
// of config.FromEnv included: Env's environment runs the CLI's commands.
const (
	StripeAPIKey  = "sk_test_fulfillertest"
	LuarmorAPIKey = "luarmor-test-key"
	WebhookSecret = "whsec_fulfillertest_0123456789abcdef0123456789abcdef"
	ShopAPIToken  = "shop-token-for-tests"
	AdminAPIToken = "admin-token-for-tests-0123456789abcdef"
)

// Options describes the service a test runs. The zero value is a service
// with an empty catalog, a Luarmor sandbox that accepts any project and a
// budget too roomy to matter.
type Options struct {
	// Catalog is the price catalog; nil is an empty one.
	Catalog *catalog.Catalog
	// Luarmor configures the sandbox; an unset Limit is 100000 a minute,
	// since functional tests are not about the budget.
	Luarmor sandbox.Options
	// DatabaseURL is a migrated database; "" makes a fresh one.
	DatabaseURL string
	// WebhookSecrets are the signing secrets the service accepts, newest
	// last; nil is WebhookSecret alone.
	WebhookSecrets []string
	// Configure changes the settings last, before the service starts.
	Configure func(*config.Config)
	// Logger receives the service's log; nil logs warnings to the test.
	Logger *slog.Logger
}

// Service is the whole service running for one test, on loopback ports of
// its own, against the stand-ins.
type Service struct {
	Main    *app.Main
	Luarmor *Luarmor
	Stripe  *Stripe
	Pool    *pgxpool.Pool
	Catalog *catalog.Catalog
	// URL is the public listener, AdminURL the internal one.
	URL, AdminURL string
	// Secret signs the events Deliver sends.
	Secret string
}

// StartService runs the service described by opts until the test ends.
func StartService(t testing.TB, opts Options) *Service {
	t.Helper()
	if opts.Luarmor.Limit == 0 {
		opts.Luarmor.Limit, opts.Luarmor.Window = 100000, time.Minute
	}
	if opts.Luarmor.APIKey == "" {
		opts.Luarmor.APIKey = LuarmorAPIKey
	}
	lu := StartLuarmor(t, opts.Luarmor)
	st := StartStripe(t, StripeAPIKey)
	if opts.Catalog == nil {
		opts.Catalog = &catalog.Catalog{Prices: map[string]catalog.Product{}}
	}
	if opts.DatabaseURL == "" {
		opts.DatabaseURL = postgrestest.NewURL(t)
	}
	opts.DatabaseURL = poolOnDemand(opts.DatabaseURL)
	if opts.WebhookSecrets == nil {
		opts.WebhookSecrets = []string{WebhookSecret}
	}
	if opts.Logger == nil {
		opts.Logger = Logger(t, slog.LevelWarn)
	}
	m := &app.Main{
		Config: config.Config{
			DatabaseURL:    opts.DatabaseURL,
			ListenAddr:     "127.0.0.1:0",
			AdminAddr:      "127.0.0.1:0",
			WebhookSecrets: opts.WebhookSecrets,
			StripeAPIKey:   st.APIKey,
			StripeAPIBase:  st.URL,
			LuarmorAPIKey:  lu.APIKey,
			LuarmorBaseURL: lu.URL,
			// The service's own budget as roomy as the sandbox's.
			LuarmorRateLimit:  100000,
			LuarmorRateWindow: time.Minute,
			ShopAPIToken:      ShopAPIToken,
			AdminAPIToken:     AdminAPIToken,
			MaxUnitsPerOrder:  config.DefaultMaxUnitsPerOrder,
			ShutdownTimeout:   2 * time.Second,
			Policy:            order.DefaultPolicy(),
		},
		Catalog: opts.Catalog,
		Logger:  opts.Logger,
	}
	if opts.Configure != nil {
		opts.Configure(&m.Config)
	}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	return &Service{
		Main: m, Luarmor: lu, Stripe: st, Pool: m.Pool, Catalog: opts.Catalog,
		URL: m.URL(), AdminURL: m.AdminURL(), Secret: opts.WebhookSecrets[len(opts.WebhookSecrets)-1],
	}
}

// Env is the environment the CLI's commands read to reach this service's
// database and stand-ins.
func (s *Service) Env() map[string]string {
	c := s.Main.Config
	return map[string]string{
		"DATABASE_URL": c.DatabaseURL, "STRIPE_API_KEY": c.StripeAPIKey, "STRIPE_API_BASE": c.StripeAPIBase,
		"STRIPE_WEBHOOK_SECRET": s.Secret, "LUARMOR_API_KEY": c.LuarmorAPIKey, "LUARMOR_BASE_URL": c.LuarmorBaseURL,
	}
}

// SessionEvent is an event of type typ around the Checkout Session as the
// Stripe fake has it now.
func (s *Service) SessionEvent(t testing.TB, typ, sessionID string) []byte {
	t.Helper()
	obj, ok := s.Stripe.SessionJSON(sessionID)
	require.True(t, ok, "the Stripe fake has no session %s", sessionID)
	return Event(t, typ, obj)
}

// Answer is an HTTP answer's status and body.
type Answer struct {
	Status int
	Body   []byte
}

// PostWebhook sends body to the webhook endpoint with the given
// Stripe-Signature header ("" sends none).
func (s *Service) PostWebhook(t testing.TB, body []byte, signature string) Answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/webhooks/stripe", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set("Stripe-Signature", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return Answer{resp.StatusCode, out}
}

// Deliver sends a correctly signed event and requires the service to take
// it (200).
func (s *Service) Deliver(t testing.TB, body []byte) {
	t.Helper()
	a := s.PostWebhook(t, body, Sign(body, s.Secret, time.Now()))
	require.Equal(t, http.StatusOK, a.Status, string(a.Body))
}

// Buy pays for items, delivers the checkout event and waits until the
// order is fulfilled.
func (s *Service) Buy(t testing.TB, email string, items ...stripefake.Item) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	sess := s.Stripe.PaidSession(email, items...)
	s.Deliver(t, s.SessionEvent(t, "checkout.session.completed", sess.ID))
	return sess, s.WaitOrder(t, sess.ID, "fulfilled")
}

// GetOrder reads an order through the public order API.
func (s *Service) GetOrder(t testing.TB, sessionID string) (int, httpapi.OrderJSON) {
	t.Helper()
	resp, err := http.Get(s.URL + "/v1/orders/" + sessionID)
	require.NoError(t, err)
	defer resp.Body.Close()
	var o httpapi.OrderJSON
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&o))
	}
	return resp.StatusCode, o
}

// WaitOrder waits until the order API shows the order in status and
// returns it. It is woken by the service's own order notifications (a
// change to the order or its keys), and reads again at most every
// recheckEvery in case what it waits for changed elsewhere.
func (s *Service) WaitOrder(t testing.TB, sessionID, status string) httpapi.OrderJSON {
	t.Helper()
	return s.WaitOrderFor(t, sessionID, "status "+status, func(o httpapi.OrderJSON) bool { return o.Status == status })
}

// recheckEvery bounds a wait between two reads when no notification
// comes: what makes an order's answer change is mostly, not only, rows
// that notify (a key's ledger, for one, is read from other tables).
const recheckEvery = 250 * time.Millisecond

// WaitOrderFor waits until the order API shows an order for which done is
// true, described by what in the failure.
func (s *Service) WaitOrderFor(t testing.TB, sessionID, what string, done func(httpapi.OrderJSON) bool) httpapi.OrderJSON {
	t.Helper()
	sub, err := s.Main.Changes.Subscribe(sessionID)
	require.NoError(t, err)
	defer sub.Close()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	var last httpapi.OrderJSON
	lastCode := 0
	for {
		lastCode, last = s.GetOrder(t, sessionID)
		if lastCode == http.StatusOK && done(last) {
			return last
		}
		select {
		case <-sub.C:
		case <-time.After(recheckEvery):
		case <-deadline.C:
			t.Fatalf("order %s never reached %s in %s; last answer %d %+v", sessionID, what, WaitTimeout, lastCode, last)
			return last
		}
	}
}

// Count runs a query that counts (SELECT count(*) ...) and returns the
// count.
func (s *Service) Count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, s.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// poolOnDemand has the service's pool open its connections as they are
// needed, unless url sizes the pool's minimum itself. A service keeps its
// pool open by default (app.Main: for a burst after a quiet spell), which
// is a score of PostgreSQL backends started with every service; a test run
// starts hundreds of services, few of which use more than a handful.
func poolOnDemand(url string) string {
	if strings.Contains(url, "pool_min_conns") {
		return url
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "pool_min_conns=0"
}
