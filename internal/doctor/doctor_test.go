package doctor_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/catalog"
	"fulfiller/internal/doctor"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/testdb"
)

const (
	stripeKey   = "sk_test_doctorcheck0123456789"
	luarmorKey  = "doctor-luarmor-key"
	projectA    = "proj_alpha"
	projectB    = "proj_beta"
	priceOnce   = "price_once"
	priceMonth  = "price_month"
	productionS = "whsec_production_secret"
)

type bundle struct {
	doctor  *doctor.Doctor
	stripe  *stripefake.Fake
	sandbox *sandbox.Sandbox
	catalog *catalog.Catalog
	// shop is PUBLIC_BASE_URL: the service's own HTTP server, reached
	// directly (no proxy in front).
	shop string
}

// serveShop runs the service's HTTP server on pool, behind the proxies
// given in front of it (each appends X-Forwarded-For, as load balancers
// do), and returns the URL buyers would use.
func serveShop(t *testing.T, pool *pgxpool.Pool, trusted []netip.Prefix, proxies int) string {
	t.Helper()
	api := &httpapi.Server{Pool: pool, Webhook: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler), TrustedProxies: trusted}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	front := srv.URL
	for range proxies {
		target, err := url.Parse(front)
		require.NoError(t, err)
		proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
		t.Cleanup(proxy.Close)
		front = proxy.URL
	}
	return front
}

// setup is a configuration that passes every check: a migrated database,
// a Luarmor account holding the catalog's projects, the catalog's prices
// in Stripe and this service's webhook endpoint.
func setup(t *testing.T) *bundle {
	t.Helper()
	lu := fulfillertest.StartLuarmor(t, sandbox.Options{APIKey: luarmorKey, Projects: []string{projectA, projectB}, Limit: -1})
	st := fulfillertest.StartStripe(t, stripeKey)
	fake := st.Fake

	fake.PutPrice(stripefake.Price{ID: priceOnce, Active: true})
	fake.PutPrice(stripefake.Price{ID: priceMonth, Active: true, Interval: "month"})
	fake.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: "https://elsewhere.example/hook", APIVersion: stripe.APIVersion,
		EnabledEvents: []string{"*"}})
	pool := postgrestest.NewPool(t)
	shop := serveShop(t, pool, nil, 0)
	fake.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: shop + doctor.WebhookPath, APIVersion: stripe.APIVersion,
		EnabledEvents: jobs.HandledTypes()})

	cat := &catalog.Catalog{}
	cat.Put(priceOnce, catalog.Product{ProjectID: projectA, KeyDays: 0, Billing: catalog.BillingOneTime})
	cat.Put(priceMonth, catalog.Product{ProjectID: projectB, KeyDays: 30, Billing: catalog.BillingRecurring})

	d := &doctor.Doctor{
		Pool:           pool,
		Stripe:         st.Client(),
		Luarmor:        lu.Client(),
		Catalog:        cat,
		StripeLive:     false,
		StripeKeyKnown: true,
		WebhookSecrets: []string{productionS},
		PublicBaseURL:  shop,
		Shop:           namedShop,
	}
	return &bundle{doctor: d, stripe: fake, sandbox: lu.Sandbox, catalog: cat, shop: shop}
}

func (b *bundle) run(t *testing.T) []doctor.Result {
	t.Helper()
	return b.doctor.Run(context.Background())
}

// result finds the verdict of one check.
func result(t *testing.T, results []doctor.Result, check string) doctor.Result {
	t.Helper()
	for _, r := range results {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no check %q in %v", check, results)
	return doctor.Result{}
}

// requireOnly requires check to have status with message containing want,
// and every other check to pass, but for the test-mode key's warning.
func requireOnly(t *testing.T, results []doctor.Result, check string, status doctor.Status, want string) {
	t.Helper()
	got := result(t, results, check)
	require.Equal(t, status, got.Status, got.Message)
	require.Contains(t, got.Message, want)
	for _, r := range results {
		if r.Check == check || r.Check == "stripe key" {
			continue
		}
		require.Equal(t, doctor.Pass, r.Status, "%s: %s", r.Check, r.Message)
	}
	require.Equal(t, status == doctor.Fail, doctor.Failed(results))
}

func TestGoodConfigurationPassesEveryCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	results := b.run(t)
	require.Len(t, results, 15, "database, storage, luarmor api/key/projects/capacity, stripe key, two prices, webhook, secret, trusted proxies, shop, shop webhooks, discord channel")
	requireOnly(t, results, "stripe key", doctor.Warn, "test mode")
	require.Contains(t, result(t, results, "price "+priceMonth).Message, "recurring every 1 month")
	require.Contains(t, result(t, results, "price "+priceOnce).Message, "one-off")
	require.Contains(t, result(t, results, "luarmor projects").Message, "all 2 catalog projects")
	require.Contains(t, result(t, results, "luarmor key").Message, "plan premium", "the details' one-letter plan, spelt out")

	// One call per check: the whole run is cheap against the budget.
	var budgeted int
	for _, c := range b.sandbox.Calls() {
		if c.Path != "/status" {
			budgeted++
		}
	}
	require.Equal(t, 2, budgeted, "details and stats")
}

func TestLiveKeyPassesTheKeyCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.StripeLive = true
	results := b.run(t)
	require.Equal(t, doctor.Pass, result(t, results, "stripe key").Status)
	// The stand-in's prices are test-mode objects: a live key could never
	// have read them.
	r := result(t, results, "price "+priceOnce)
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "is a test price but STRIPE_API_KEY is a live key")
}

func TestLuarmorRefusingTheServersIPExplainsTheWhitelist(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sandbox.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTML403, Times: 5, PathContains: "/v3/"})
	results := b.run(t)
	r := result(t, results, "luarmor key")
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "whitelist this server's public IP address")
	require.NotContains(t, r.Message, luarmorKey)
	require.Equal(t, doctor.Fail, result(t, results, "luarmor projects").Status)
	require.True(t, doctor.Failed(results))
}

func TestWrongLuarmorKeyFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Luarmor = luarmor.NewClient("wrong-key", luarmor.WithBaseURL(urlOf(t, b.sandbox)))
	r := result(t, b.run(t), "luarmor key")
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "Luarmor refused LUARMOR_API_KEY")
}

func urlOf(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCatalogProjectTheKeyDoesNotHaveFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.catalog.Put("price_extra", catalog.Product{ProjectID: "proj_typo", KeyDays: 7})
	b.stripe.PutPrice(stripefake.Price{ID: "price_extra", Active: true})
	requireOnly(t, b.run(t), "luarmor projects", doctor.Fail, "proj_typo (prices price_extra)")
}

func TestPriceProblemsFailWithTheirFix(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change func(b *bundle)
		price  string
		want   string
	}{
		"missing in Stripe": {
			change: func(b *bundle) {
				b.catalog.Put("price_gone", catalog.Product{ProjectID: projectA, KeyDays: 1})
			},
			price: "price_gone", want: "does not exist in Stripe's test mode",
		},
		"inactive": {
			change: func(b *bundle) { b.stripe.PutPrice(stripefake.Price{ID: priceOnce, Active: false}) },
			price:  priceOnce, want: "is archived (inactive) in Stripe",
		},
		"one-off where the catalog expects recurring": {
			change: func(b *bundle) { b.stripe.PutPrice(stripefake.Price{ID: priceMonth, Active: true}) },
			price:  priceMonth, want: "is one-off in Stripe but the catalog says billing: recurring",
		},
		"recurring where the catalog expects one-off": {
			change: func(b *bundle) {
				b.stripe.PutPrice(stripefake.Price{ID: priceOnce, Active: true, Interval: "year"})
			},
			price: priceOnce, want: "is recurring every 1 year in Stripe but the catalog says billing: one_time",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tc.change(b)
			requireOnly(t, b.run(t), "price "+tc.price, doctor.Fail, tc.want)
		})
	}
}

func TestPriceWithoutABillingExpectationPassesEitherWay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.catalog.Put(priceMonth, catalog.Product{ProjectID: projectB, KeyDays: 30})
	results := b.run(t)
	require.Equal(t, doctor.Pass, result(t, results, "price "+priceMonth).Status)
}

func TestWebhookEndpointProblemsFail(t *testing.T) {
	t.Parallel()
	all := jobs.HandledTypes()
	for name, tc := range map[string]struct {
		endpoint *stripefake.WebhookEndpoint
		want     string
	}{
		"missing": {
			want: "no test-mode endpoint sends events to {shop}/webhooks/stripe (1 endpoints listed)",
		},
		"wrong API version": {
			endpoint: &stripefake.WebhookEndpoint{APIVersion: "2024-06-20", EnabledEvents: all},
			want:     "its API version is 2024-06-20, not 2023-10-16",
		},
		"account default API version": {
			endpoint: &stripefake.WebhookEndpoint{EnabledEvents: all},
			want:     "its API version is the account's default, not 2023-10-16",
		},
		"missing event types": {
			endpoint: &stripefake.WebhookEndpoint{APIVersion: stripe.APIVersion,
				EnabledEvents: []string{"checkout.session.completed", "invoice.paid"}},
			want: "it does not send charge.dispute.closed, charge.dispute.created",
		},
		"disabled": {
			endpoint: &stripefake.WebhookEndpoint{APIVersion: stripe.APIVersion, EnabledEvents: all, Status: "disabled"},
			want:     "it is disabled",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			st := fulfillertest.StartStripe(t, stripeKey)
			b.stripe, b.doctor.Stripe = st.Fake, st.Client()
			b.stripe.PutPrice(stripefake.Price{ID: priceOnce, Active: true})
			b.stripe.PutPrice(stripefake.Price{ID: priceMonth, Active: true, Interval: "month"})
			b.stripe.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: b.shop + "/old/webhooks/stripe",
				APIVersion: stripe.APIVersion, EnabledEvents: all})
			if tc.endpoint != nil {
				e := *tc.endpoint
				e.URL = b.shop + doctor.WebhookPath
				b.stripe.PutWebhookEndpoint(e)
			}
			requireOnly(t, b.run(t), "stripe webhook", doctor.Fail, strings.ReplaceAll(tc.want, "{shop}", b.shop))
		})
	}
}

func TestWildcardEndpointSendsEveryEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.PublicBaseURL = serveShop(t, b.doctor.Pool, nil, 0)
	b.stripe.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: b.doctor.PublicBaseURL + doctor.WebhookPath,
		APIVersion: stripe.APIVersion, EnabledEvents: []string{"*"}})
	require.Equal(t, doctor.Pass, result(t, b.run(t), "stripe webhook").Status)
}

func TestUnsetPublicBaseURLWarns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.PublicBaseURL = ""
	results := b.run(t)
	for _, check := range []string{"stripe webhook", "trusted proxies"} {
		r := result(t, results, check)
		require.Equal(t, doctor.Warn, r.Status, check)
		require.Contains(t, r.Message, "PUBLIC_BASE_URL is not set", check)
	}
	require.False(t, doctor.Failed(results))
}

// Doctor asks the running service through PUBLIC_BASE_URL, so through the
// proxy buyers go through, how that request's X-Forwarded-For was taken.
func TestTrustedProxiesReportsAProxyMissingFromTheSetting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Contains(t, result(t, b.run(t), "trusted proxies").Message, "carry no X-Forwarded-For", "reached directly")

	// Behind a proxy the service was not told about: every buyer is the
	// proxy to it.
	b.doctor.PublicBaseURL = serveShop(t, b.doctor.Pool, nil, 1)
	r := result(t, b.run(t), "trusted proxies")
	require.Equal(t, doctor.Warn, r.Status, r.Message)
	require.Contains(t, r.Message, "X-Forwarded-For from a peer not in TRUSTED_PROXIES")
	require.Contains(t, r.Message, "add the proxy's address or subnet to TRUSTED_PROXIES")

	b.doctor.PublicBaseURL = serveShop(t, b.doctor.Pool, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 1)
	r = result(t, b.run(t), "trusted proxies")
	require.Equal(t, doctor.Pass, r.Status, r.Message)
	require.Contains(t, r.Message, "is in TRUSTED_PROXIES")

	// A service that does not run there is not checked, and says so.
	stopped := httptest.NewServer(http.NotFoundHandler())
	stopped.Close()
	b.doctor.PublicBaseURL = stopped.URL
	r = result(t, b.run(t), "trusted proxies")
	require.Equal(t, doctor.Warn, r.Status)
	require.Contains(t, r.Message, "not checked: GET "+stopped.URL+"/v1/forwarded-for failed")

	// Nor is another site.
	b.doctor.PublicBaseURL = urlOf(t, http.NotFoundHandler())
	r = result(t, b.run(t), "trusted proxies")
	require.Equal(t, doctor.Warn, r.Status)
	require.Contains(t, r.Message, "answered 404: is PUBLIC_BASE_URL this service")
}

func TestDevelopmentSecretFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.WebhookSecrets = []string{productionS, doctor.DevelopmentWebhookSecret}
	r := result(t, b.run(t), "webhook secret")
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "public development secret")
	require.NotContains(t, r.Message, productionS)
}

func TestRefusedOrMalformedStripeKeyFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Stripe = stripeapi.New("sk_test_notthekey000000000", urlOf(t, b.stripe), nil)
	results := b.run(t)
	r := result(t, results, "stripe key")
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "Stripe refused STRIPE_API_KEY")
	require.Equal(t, doctor.Fail, result(t, results, "price "+priceOnce).Status, "not checked without a key")

	b.doctor.StripeKeyKnown = false
	require.Contains(t, result(t, b.run(t), "stripe key").Message, "neither a secret key")
}

func TestPendingMigrationsFail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Pool = testdb.NewPool(t, nil) // an empty database
	r := result(t, b.run(t), "database")
	require.Equal(t, doctor.Fail, r.Status)
	require.Contains(t, r.Message, "run `fulfiller migrate`")
}

func TestLuarmorCapacityAgainstADayOfSales(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		maxUsers, keys, perDay int
		status                 doctor.Status
		want                   string
	}{
		"room for a day":      {maxUsers: 10, keys: 3, perDay: 7, status: doctor.Pass, want: "7 free places (3 of 10 keys used); a day of sales is 7"},
		"less than a day":     {maxUsers: 10, keys: 4, perDay: 7, status: doctor.Warn, want: "6 free places (4 of 10 keys used), fewer than a day of sales (7"},
		"full":                {maxUsers: 3, keys: 3, perDay: 0, status: doctor.Fail, want: "the Luarmor plan is full (3 of 3 keys)"},
		"estimate from sales": {maxUsers: 10, keys: 9, perDay: -1, status: doctor.Warn, want: "1 free places (9 of 10 keys used), fewer than a day of sales (2 keys delivered in the last 24 hours)"},
		// Stats without default.users: never read as a limit of zero.
		"limit unknown": {maxUsers: -1, keys: 2, perDay: 7, status: doctor.Warn, want: "2 keys exist; plan limit unknown"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			lu := fulfillertest.StartLuarmor(t, sandbox.Options{APIKey: luarmorKey, Projects: []string{projectA, projectB}, Limit: -1, MaxUsers: tc.maxUsers})
			b.sandbox, b.doctor.Luarmor = lu.Sandbox, lu.Client()
			for i := 0; i < tc.keys; i++ {
				_, err := b.doctor.Luarmor.(*luarmor.Client).CreateUser(context.Background(), projectA, luarmor.CreateUserRequest{})
				require.NoError(t, err)
			}
			if tc.perDay >= 0 {
				b.doctor.Demand = func(context.Context) (int, string, error) { return tc.perDay, "a fixed estimate", nil }
			} else {
				deliver(t, b.doctor.Pool, "1 hour", "3 hours", "25 hours", "3 days")
			}
			requireOnly(t, b.run(t), "luarmor capacity", tc.status, tc.want)
		})
	}
}

// answeredStats is the sandbox's Luarmor with the stats answer replaced by
// a body as the real API may send it.
type answeredStats struct {
	doctor.Luarmor
	body []byte
}

func (a answeredStats) KeyStats(context.Context, bool) (*luarmor.KeyStats, error) {
	var st luarmor.KeyStats
	if err := json.Unmarshal(a.body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// The capacity check reads the fields the public clients model: the
// fixtures written from them, and answers that do not tell the limit.
func TestLuarmorCapacityFromTheClientsStatsShape(t *testing.T) {
	t.Parallel()
	fixture := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "luarmor", "testdata", name))
		require.NoError(t, err)
		return b
	}
	for name, tc := range map[string]struct {
		body   []byte
		status doctor.Status
		want   string
	}{
		"fixture":           {fixture("key_stats.json"), doctor.Pass, "45790 free places (4210 of 50000 keys used)"},
		"flat luarmor-ts":   {fixture("key_stats_flat.json"), doctor.Pass, "45790 free places (4210 of 50000 keys used)"},
		"without users":     {fixture("key_stats_no_users.json"), doctor.Warn, "did not say how many keys exist"},
		"zero limit":        {[]byte(`{"stats":{"users":12,"default":{"users":0}}}`), doctor.Warn, "12 keys exist; plan limit unknown"},
		"no default":        {[]byte(`{"stats":{"users":12}}`), doctor.Warn, "12 keys exist; plan limit unknown"},
		"limit as a string": {[]byte(`{"stats":{"users":3,"default":{"users":"10"}}}`), doctor.Pass, "7 free places (3 of 10 keys used)"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.doctor.Luarmor = answeredStats{Luarmor: b.doctor.Luarmor, body: tc.body}
			b.doctor.Demand = func(context.Context) (int, string, error) { return 5, "a fixed estimate", nil }
			requireOnly(t, b.run(t), "luarmor capacity", tc.status, tc.want)
		})
	}
}

// deliver records one order with a key delivered each given interval ago.
func deliver(t *testing.T, pool *pgxpool.Pool, agos ...string) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO orders (checkout_session_id, status) VALUES ('cs_test_sold', 'fulfilled')`)
	require.NoError(t, err)
	for i, ago := range agos {
		_, err := pool.Exec(ctx, `INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id,
			key_days, reference, status, user_key, delivered_at)
			VALUES ('cs_test_sold', 'li_1', $1::int, 'price_once', 'proj_alpha', 0, 'ref-' || $1::text, 'active', 'key-' || $1::text, now() - $2::interval)`,
			i+1, ago)
		require.NoError(t, err)
	}
}

func TestResultLineNamesStatusCheckAndAdvice(t *testing.T) {
	t.Parallel()
	line := doctor.Result{Check: "webhook secret", Status: doctor.Fail, Message: "do this"}.String()
	require.True(t, strings.HasPrefix(line, "FAIL  webhook secret"), line)
	require.True(t, strings.HasSuffix(line, "do this"), line)
}
