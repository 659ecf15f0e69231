package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/app"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/webhook"
)

// The service's test doubles are configured like the end-to-end tests'.
const (
	benchProject    = "3f98888f9999c9999e99a2"
	benchPrice      = "price_month30"
	benchStripeKey  = "sk_test_fulfiller_bench"
	benchLuarmorKey = "luarmor-bench-key"
	benchSecret     = "whsec_fulfiller_bench_secret"
	benchEmail      = "buyer@example.com"
)

// benchItems is what every purchase buys: one 30-day key.
var benchItems = []stripefake.Item{{PriceID: benchPrice, Quantity: 1}}

// serveLoopback serves h on 127.0.0.1 on a free port.
func serveLoopback(h http.Handler) (baseURL string, closeFn func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// service is the real service (app.Main) with its Luarmor sandbox and
// Stripe fake, each on its own loopback port as in the end-to-end tests.
type service struct {
	main    *app.Main
	sandbox *sandbox.Sandbox
	stripe  *stripefake.Fake
	closers []func()
	// What restart needs to start app.Main again on the same fakes.
	dbURL, sandboxURL, stripeURL string
	logger                       *slog.Logger
}

// serviceOptions shapes a service; the zero value is an unthrottled
// service with the default MAX_UNITS_PER_ORDER.
type serviceOptions struct {
	// rateCount per rateWindow is the Luarmor budget: the sandbox enforces
	// it (sliding, answering 429 past it) and the service's fleet-wide
	// budget spends it (LUARMOR_RATE_LIMIT). Zero leaves both unthrottled.
	rateCount  int
	rateWindow time.Duration
	// maxUnits is MAX_UNITS_PER_ORDER; zero keeps the default.
	maxUnits int
	// stock is the catalog's `stock: N` of benchPrice; zero stocks nothing.
	stock int
	// behindProxy trusts X-Forwarded-For from loopback (TRUSTED_PROXIES
	// 127.0.0.1/32), as a deployment behind its reverse proxy does, so
	// buyers sending distinct addresses count as distinct clients.
	behindProxy bool
	// configure, when set, changes the configuration last (the admin
	// listener, tokens, mail).
	configure func(*config.Config)
}

// startService runs app.Main on 127.0.0.1:0 against dbURL, which must hold
// the migrated schema.
func startService(ctx context.Context, dbURL string, logger *slog.Logger, opts serviceOptions) (*service, error) {
	// Unthrottled, the sandbox's request budget is disabled (a negative
	// limit; the real API allows about 60 a minute) and the service's own
	// fleet-wide budget is set far above what a run spends: the intake and
	// latency phases make well under a million Luarmor calls a minute, so
	// no call ever waits for a slot and they measure the service, not
	// Luarmor's rate limit.
	sandboxLimit, rateWindow := sandboxBudget(opts)
	s := &service{
		sandbox: sandbox.New(sandbox.Options{APIKey: benchLuarmorKey, Projects: []string{benchProject},
			Limit: sandboxLimit, Window: rateWindow}),
		stripe: stripefake.New(benchStripeKey),
		dbURL:  dbURL,
		logger: logger,
	}
	var closeSB, closeSF func()
	var err error
	if s.sandboxURL, closeSB, err = serveLoopback(s.sandbox); err != nil {
		return nil, fmt.Errorf("starting the Luarmor sandbox: %w", err)
	}
	s.closers = append(s.closers, closeSB)
	if s.stripeURL, closeSF, err = serveLoopback(s.stripe); err != nil {
		s.close()
		return nil, fmt.Errorf("starting the Stripe fake: %w", err)
	}
	s.closers = append(s.closers, closeSF)
	if err := s.startMain(ctx, opts); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// sandboxBudget is the sandbox's limit and window for opts: the service's
// budget, or none when unthrottled.
func sandboxBudget(opts serviceOptions) (limit int, window time.Duration) {
	if opts.rateCount > 0 {
		return opts.rateCount, opts.rateWindow
	}
	return -1, time.Minute
}

// startMain runs app.Main against the service's database and fakes.
func (s *service) startMain(ctx context.Context, opts serviceOptions) error {
	rateCount, rateWindow := 1_000_000, time.Minute
	if opts.rateCount > 0 {
		rateCount, rateWindow = opts.rateCount, opts.rateWindow
	}
	s.main = &app.Main{
		Config: config.Config{
			DatabaseURL:       s.dbURL,
			ListenAddr:        "127.0.0.1:0",
			WebhookSecrets:    []string{benchSecret},
			StripeAPIKey:      benchStripeKey,
			StripeAPIBase:     s.stripeURL,
			LuarmorAPIKey:     benchLuarmorKey,
			LuarmorBaseURL:    s.sandboxURL,
			LuarmorRateLimit:  rateCount,
			LuarmorRateWindow: rateWindow,
			MaxUnitsPerOrder:  opts.maxUnits,
			TrustedProxies:    trustedProxies(opts),
			// A run ends with its database dropped: jobs still waiting for
			// a budget slot then are cut off at once, not after the 30 s
			// grace a deploy gives them.
			ShutdownTimeout: time.Second,
		},
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
			benchPrice: {ProjectID: benchProject, KeyDays: 30, Stock: opts.stock},
		}},
		Logger: s.logger,
	}
	if opts.configure != nil {
		opts.configure(&s.main.Config)
	}
	if err := s.main.Run(ctx); err != nil {
		s.main = nil
		return fmt.Errorf("starting the service: %w", err)
	}
	return nil
}

// trustedProxies is TRUSTED_PROXIES for opts.
func trustedProxies(opts serviceOptions) []netip.Prefix {
	if !opts.behindProxy {
		return nil
	}
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
}

// restart stops app.Main and starts it again with opts on the same
// database, Luarmor sandbox (its keys and call log kept, its limit set to
// the new budget) and Stripe fake, as an operator redeploys with a new
// configuration. The service's URL changes.
func (s *service) restart(ctx context.Context, opts serviceOptions) error {
	if err := s.main.Close(); err != nil {
		return fmt.Errorf("stopping the service for its restart: %w", err)
	}
	s.main = nil
	s.sandbox.SetLimit(sandboxBudget(opts))
	return s.startMain(ctx, opts)
}

func (s *service) webhookURL() string { return s.main.URL() + "/webhooks/stripe" }

// poolSize is the service's PostgreSQL pool size, which the baseline copies.
func (s *service) poolSize() int32 { return s.main.Pool.Config().MaxConns }

// close stops the service and its fakes; closing again does nothing.
func (s *service) close() {
	if s.main != nil {
		_ = s.main.Close()
		s.main = nil
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// baseline is the yardstick for webhook intake: the least a handler that
// durably records a webhook can do. It reads the body and stores it raw in
// one INSERT (one round trip, autocommit), with no signature check, no JSON
// decoding and no job. Whatever the service spends beyond this is the price
// of verifying, decoding and recording an order with its job atomically.
type baseline struct {
	pool     *pgxpool.Pool
	url      string
	closeSrv func()
}

const baselineTable = `CREATE TABLE baseline_events (
	id bigserial PRIMARY KEY,
	body jsonb NOT NULL,
	received_at timestamptz DEFAULT now())`

// startBaseline serves the baseline on 127.0.0.1:0 against the empty
// database dbURL, with a pool of maxConns connections (the service's size,
// so neither side has more database concurrency than the other).
func startBaseline(ctx context.Context, dbURL string, maxConns int32) (*baseline, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("baseline: parsing the database URL: %w", err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("baseline: connecting to PostgreSQL: %w", err)
	}
	if _, err := pool.Exec(ctx, baselineTable); err != nil {
		pool.Close()
		return nil, fmt.Errorf("baseline: creating baseline_events: %w", err)
	}
	b := &baseline{pool: pool}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/stripe", b.serveWebhook)
	if b.url, b.closeSrv, err = serveLoopback(mux); err != nil {
		pool.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return b, nil
}

func (b *baseline) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.MaxBodyBytes))
	if err != nil {
		http.Error(w, `{"error":"could not read body"}`, http.StatusBadRequest)
		return
	}
	if _, err := b.pool.Exec(r.Context(), "INSERT INTO baseline_events (body) VALUES ($1)", body); err != nil {
		http.Error(w, `{"error":"not recorded"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"received":true}`+"\n")
}

func (b *baseline) webhookURL() string { return b.url + "/webhooks/stripe" }

func (b *baseline) close() {
	b.closeSrv()
	b.pool.Close()
}

// newSender is the load generator's HTTP client, shared by every phase. It
// keeps more idle connections per host than there are senders, so after the
// first request each sender reuses its connection and no request pays for a
// TCP handshake (net/http's default keeps only two per host).
func newSender(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * concurrency
	t.MaxIdleConnsPerHost = 2 * concurrency
	t.DisableCompression = true
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// post sends one signed webhook and returns the status, draining the answer
// so the connection is reused.
func post(ctx context.Context, client *http.Client, url string, body []byte, signature string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signature)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, nil
}
