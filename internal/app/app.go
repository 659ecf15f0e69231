// Package app wires the service together: configuration, PostgreSQL, the
// River client and its workers, and the HTTP server. cmd/fulfiller runs it;
// end-to-end tests and benchmarks start it on port 0.
package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/discord"
	"fulfiller/internal/health"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/mail"
	"fulfiller/internal/metrics"
	"fulfiller/internal/notify"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/webhook"
)

// Main is one running service process.
type Main struct {
	Config  config.Config
	Logger  *slog.Logger
	Migrate bool // apply migrations before starting
	// Catalog overrides Config.CatalogFile when set (tests).
	Catalog *catalog.Catalog
	// HTTPClient is used for Stripe and Luarmor; nil means a default one.
	HTTPClient *http.Client
	// Workers sizes the default job queue; 0 means 10.
	Workers int

	Pool        *pgxpool.Pool
	River       *river.Client[pgx.Tx]
	Budget      *budget.Budget
	Credentials *health.Credentials
	Replica     *jobs.Replica
	Changes     *notify.Hub
	Metrics     *metrics.Metrics
	stopBudget  context.CancelFunc
	webhook     *webhook.Handler
	listener    net.Listener
	server      *http.Server
	// adminListener and adminServer are the internal listener
	// (ADMIN_ADDR): metrics, probes, the admin API and the River UI.
	adminListener net.Listener
	adminServer   *http.Server
}

// Run starts the service and returns once it accepts requests and works
// jobs. Close stops it.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	// Lines logged within a job name the job (its ID and kind), and no
	// line carries a Checkout Session ID, a key or a secret, whatever
	// logger the caller gave.
	m.Logger = slog.New(logging.ServiceHandler(m.Logger.Handler()))
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()
	if m.Catalog == nil {
		if m.Catalog, err = catalog.Load(m.Config.CatalogFile); err != nil {
			return err
		}
	}
	m.warnUnnamedPrices()
	poolCfg, err := pgxpool.ParseConfig(m.Config.DatabaseURL)
	if err != nil {
		return &config.Error{Name: "DATABASE_URL", Reason: "is not a valid PostgreSQL connection string"}
	}
	if poolCfg.MaxConns < 20 {
		poolCfg.MaxConns = 20
	}
	keepPoolOpen(poolCfg, m.Config.DatabaseURL)
	boundDatabaseWaits(poolCfg)
	postgres.ConfigureSession(poolCfg.ConnConfig)
	if m.Pool, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = m.Pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL (DATABASE_URL): %w", err)
	}
	if m.Migrate {
		if err := postgres.Migrate(ctx, m.Pool, m.Logger); err != nil {
			return err
		}
	}

	httpClient := m.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	stripeClient := stripeapi.New(m.Config.StripeAPIKey, m.Config.StripeAPIBase, httpClient)
	m.Metrics = newMetrics(m.Catalog.Stocked())
	name := replicaName()
	m.Budget = budget.New(m.Pool, budget.Config{
		Count:   m.Config.LuarmorRateLimit,
		Window:  m.Config.LuarmorRateWindow,
		Replica: name,
		Logger:  m.Logger,
		Metrics: m.Metrics,
	})
	budgetCtx, stopBudget := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBudget = stopBudget
	go m.Budget.Run(budgetCtx)
	luarmorClient := &budget.Client{Budget: m.Budget, Luarmor: luarmor.NewClient(m.Config.LuarmorAPIKey,
		luarmor.WithBaseURL(m.Config.LuarmorBaseURL), luarmor.WithHTTPClient(httpClient),
		luarmor.WithObserver(m.Metrics.LuarmorRequest)),
		Calls: &budget.CallLog{Pool: m.Pool, Logger: m.Logger}}

	m.Credentials = &health.Credentials{Stripe: stripeClient, Luarmor: luarmorClient, Logger: m.Logger}
	go m.Credentials.Run(budgetCtx)

	jobsConfig := jobs.Config{Workers: m.Workers, ID: name}
	m.reconciliation(&jobsConfig, stripeClient)
	m.River, err = jobs.NewClient(jobs.Deps{
		Pool: m.Pool, Stripe: stripeClient, Luarmor: luarmorClient, Catalog: m.Catalog, Logger: m.Logger,
		RateLimitWindow: m.Config.LuarmorRateWindow, Policy: m.Config.Policy, MaxUnitsPerOrder: m.Config.MaxUnitsPerOrder,
		StripeLivemode: jobs.LiveKey(m.Config.StripeAPIKey), Mail: m.mailSender(), Metrics: m.Metrics,
		Outbound: m.outbound(), Retention: m.Config.Retention,
	}, jobsConfig)
	if err != nil {
		return err
	}
	// The heartbeat is recorded before any job is fetched, so no other
	// replica ever takes this one's running jobs for a dead replica's.
	m.Replica = &jobs.Replica{Pool: m.Pool, Name: name, Logger: m.Logger}
	if err := m.Replica.Join(ctx); err != nil {
		return fmt.Errorf("registering this replica (did you run `fulfiller migrate`?): %w", err)
	}
	go m.Replica.Run(budgetCtx)
	if err := m.River.Start(ctx); err != nil {
		return fmt.Errorf("starting job workers (did you run `fulfiller migrate`?): %w", err)
	}
	orders := &jobs.Orders{Pool: m.Pool, River: m.River, Stripe: stripeClient, Logger: m.Logger,
		HWIDResetCooldown: m.Config.HWIDResetCooldown}
	if err := m.retryCatalogFailures(ctx, orders); err != nil {
		return err
	}

	m.webhook = webhook.New(webhook.Config{Secrets: m.Config.WebhookSecrets, Pool: m.Pool, River: m.River, Logger: m.Logger, Metrics: m.Metrics})
	// Requests waiting for an order are woken by PostgreSQL notifications,
	// whichever replica changed the order.
	m.Changes = notify.New(m.Pool.Config().ConnConfig, notify.DefaultMaxWaiters, m.Logger)
	go m.Changes.Run(budgetCtx)
	support := &jobs.Support{Pool: m.Pool, River: m.River, Orders: orders, Logger: m.Logger,
		HWIDResetCooldown: m.Config.HWIDResetCooldown, Mail: m.mailSender(), Policy: m.Config.Policy}
	m.watchMetrics()
	api := &httpapi.Server{
		Pool: m.Pool, Orders: orders, Support: support, Stock: &jobs.StockAdmin{Pool: m.Pool, River: m.River, Catalog: m.Catalog, Logger: m.Logger},
		ShopToken: m.Config.ShopAPIToken, AdminToken: m.Config.AdminAPIToken,
		Metrics: m.Metrics.Handler(), Logger: m.Logger,
		Webhook: m.webhook, Credentials: m.Credentials, Mail: m.mailSender(), Changes: m.Changes,
		TrustedProxies: m.Config.TrustedProxies, AllowedOrigins: m.Config.AllowedOrigins, Shop: m.Config.Shop,
		LuarmorRateLimit: m.Config.LuarmorRateLimit, LuarmorRateWindow: m.Config.LuarmorRateWindow,
		BillingPortal: stripeClient, PortalOrigin: portalOrigin(m.Config.StripeAPIBase),
		PortalReturnURL: m.Config.BillingPortalReturnURL, PublicBaseURL: cmp.Or(m.Config.PublicBaseURL, m.Config.Mail.PublicBaseURL),
		PendingMigrations: func(ctx context.Context) ([]string, error) { return postgres.PendingMigrations(ctx, m.Pool) },
		Checks:            m.consoleChecks(stripeClient, luarmorClient, httpClient),
	}
	if m.Config.Discord.Enabled() {
		api.Discord = discord.NewClient(m.Config.Discord, httpClient)
	}
	if err := m.riverUI(budgetCtx, api); err != nil {
		return err
	}
	listener, err := net.Listen("tcp", m.Config.ListenAddr)
	if err != nil {
		return fmt.Errorf("listening on LISTEN_ADDR %s: %w", m.Config.ListenAddr, err)
	}
	limits := m.connLimits()
	limiter := httpapi.LimitConns(listener, limits)
	m.listener = limiter
	api.MaxConnections = limits.Max
	m.server = newServer(api.Handler())
	m.server.ConnState = limiter.ConnState
	m.serve(m.server, m.listener, "http server stopped")
	if err := m.serveAdmin(api); err != nil {
		return err
	}
	m.Logger.Info("fulfiller serving", "addr", m.Addr(), "admin_addr", m.AdminAddr(), "prices", m.Catalog.Len(),
		"luarmor", m.Config.LuarmorBaseURL, "stripe_api", stripeBase(m.Config.StripeAPIBase))
	return nil
}

// serveAdmin serves the internal listener on ADMIN_ADDR, apart from the
// public one so that nothing on it is reachable from the internet; ""
// leaves it off.
func (m *Main) serveAdmin(api *httpapi.Server) error {
	if m.Config.AdminAddr == "" {
		return nil
	}
	var err error
	if m.adminListener, err = net.Listen("tcp", m.Config.AdminAddr); err != nil {
		return fmt.Errorf("listening on ADMIN_ADDR %s (or set it to off): %w", m.Config.AdminAddr, err)
	}
	m.adminServer = newServer(api.AdminHandler())
	m.serve(m.adminServer, m.adminListener, "internal listener stopped")
	return nil
}

// newServer is an HTTP server of the service: headers bounded, and every
// read, write and idle wait timed out, so no client holds a connection by
// being slow.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    httpapi.MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// serve serves srv on l until it is shut down, logging why it stopped
// otherwise.
func (m *Main) serve(srv *http.Server, l net.Listener, stopped string) {
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error(stopped, "error", err)
		}
	}()
}

// AdminAddr is the internal listener's address, or "" when off.
func (m *Main) AdminAddr() string { return addrOf(m.adminListener) }

// AdminURL is the internal listener's base URL.
func (m *Main) AdminURL() string { return "http://" + m.AdminAddr() }

// connLimits are MAX_CONNECTIONS and MAX_CONNECTIONS_PER_CLIENT, their
// defaults when unset.
func (m *Main) connLimits() httpapi.ConnLimits {
	limits := httpapi.ConnLimits{Max: m.Config.MaxConnections, PerClient: m.Config.MaxConnectionsPerClient,
		TrustedProxies: m.Config.TrustedProxies, Logger: m.Logger}
	if limits.Max <= 0 {
		limits.Max = config.DefaultMaxConnections
	}
	if limits.PerClient <= 0 {
		limits.PerClient = config.DefaultMaxConnectionsPerClient
	}
	return limits
}

// riverUI serves the River UI at /riverui/ on the internal listener when
// ADMIN_USER and ADMIN_PASSWORD are set; its background queries stop with
// ctx.
func (m *Main) riverUI(ctx context.Context, api *httpapi.Server) error {
	if m.Config.AdminUser == "" || m.Config.AdminPassword == "" {
		return nil
	}
	ui, err := httpapi.NewRiverUI(m.River, m.Logger)
	if err != nil {
		return fmt.Errorf("setting up the River UI (ADMIN_USER): %w", err)
	}
	if err := ui.Start(ctx); err != nil {
		return fmt.Errorf("starting the River UI (ADMIN_USER): %w", err)
	}
	api.RiverUI, api.AdminUser, api.AdminPassword = ui, m.Config.AdminUser, m.Config.AdminPassword
	return nil
}

// reconciliation adds the worker that finds Stripe events the webhook never
// received and, unless RECONCILE_INTERVAL is off, its periodic job. The
// worker is there either way, so a run queued before it was turned off
// still completes.
func (m *Main) reconciliation(cfg *jobs.Config, stripeClient *stripeapi.Client) {
	rec := &reconcile.Reconciler{Pool: m.Pool, Stripe: stripeClient, Logger: m.Logger}
	cfg.Register = func(w *river.Workers) {
		river.AddWorker(w, &reconcile.Worker{Reconciler: rec, Lookback: m.Config.ReconcileLookback})
	}
	if m.Config.ReconcileInterval > 0 {
		cfg.Periodic = append(cfg.Periodic, reconcile.PeriodicJob(m.Config.ReconcileInterval))
	}
}

// keepPoolOpen keeps the pool's connections open between bursts, unless
// the connection string sizes the pool's minimum itself (pool_min_conns).
// pgxpool's default opens connections on demand and closes them after 30
// idle minutes, so a sales spike after a quiet spell paid for a new
// PostgreSQL backend per connection (its start, its caches, preparing
// every statement), about a quarter of PostgreSQL's CPU in the burst
// benchmark. The connections are budgeted for already (docs/operating.md:
// max_connections above n × 21 for n replicas).
func keepPoolOpen(cfg *pgxpool.Config, url string) {
	if !strings.Contains(url, "pool_min_conns") {
		cfg.MinConns = cfg.MaxConns
	}
}

// boundDatabaseWaits makes a PostgreSQL outage fail fast instead of hanging
// requests, so callers answer 503 and retry. After the server restarts, the
// pool holds connections it closed: pgxpool pings a connection idle for over
// a second before handing it out and drops it when the ping fails, and a
// connection that fails a query is dropped on release, so the pool refills
// with fresh connections by itself. What an outage must not do is make
// that ping or a new connection wait forever on an unreachable host.
func boundDatabaseWaits(cfg *pgxpool.Config) {
	if cfg.ConnConfig.ConnectTimeout == 0 { // connect_timeout in DATABASE_URL wins
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.PingTimeout = 2 * time.Second
}

// retryCatalogFailures queues again the orders that failed on a price the
// catalog lacked: the operator's fix is a catalog edit and a restart.
func (m *Main) retryCatalogFailures(ctx context.Context, orders *jobs.Orders) error {
	n, err := orders.RetryFailed(ctx, order.FailureUnknownPrice, 1000)
	if err != nil {
		return err
	}
	if n > 0 {
		m.Logger.Info("orders that failed on an unknown price are fulfilled again", "orders", n)
	}
	return nil
}

// replicaName identifies this process in the budget's shared tables.
func replicaName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), b)
}

// portalOrigin is where buyers land for Stripe's customer portal: Stripe's
// own portal, or, with STRIPE_API_BASE naming a Stripe stand-in, the
// stand-in, which serves its portal pages itself.
func portalOrigin(stripeAPIBase string) string {
	u, err := url.Parse(stripeAPIBase)
	if stripeAPIBase == "" || err != nil || u.Host == "" || u.Hostname() == "api.stripe.com" {
		return httpapi.StripePortalOrigin
	}
	return u.Scheme + "://" + u.Host
}

func stripeBase(s string) string {
	if s == "" {
		return "stripe"
	}
	return s
}

// Addr is the address the HTTP server listens on.
func (m *Main) Addr() string { return addrOf(m.listener) }

// addrOf is l's address, or "" before it listens.
func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// URL is the service's base URL.
func (m *Main) URL() string { return "http://" + m.Addr() }

// Close stops the process gracefully: the HTTP server stops taking
// requests and finishes those in flight, running jobs get SHUTDOWN_TIMEOUT
// to finish, and what is still running then is cancelled: a job waiting
// for a Luarmor slot is snoozed (no attempt used) and a job cut off
// mid-call is retried, on another replica at once or here after a restart.
func (m *Main) Close() error {
	grace := m.Config.ShutdownTimeout
	if grace <= 0 {
		grace = config.DefaultShutdownTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace+10*time.Second)
	defer cancel()
	var errs []error
	if m.server != nil {
		httpCtx, cancelHTTP := context.WithTimeout(ctx, min(grace, 10*time.Second))
		if err := m.server.Shutdown(httpCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
		cancelHTTP()
	}
	if m.adminServer != nil {
		// Scrapes and probes are short and retried; a support action
		// cut off is either committed or not, and its caller retries.
		_ = m.adminServer.Close()
	}
	if m.webhook != nil {
		m.webhook.Close()
	}
	if m.River != nil {
		graceful, cancelGrace := context.WithTimeout(ctx, grace)
		err := m.River.Stop(graceful)
		cancelGrace()
		if errors.Is(err, context.DeadlineExceeded) {
			m.Logger.Warn("jobs still running after SHUTDOWN_TIMEOUT; cancelling them (they are retried)", "shutdown_timeout", grace)
			err = m.River.StopAndCancel(ctx)
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
	}
	if m.stopBudget != nil {
		m.stopBudget()
	}
	if m.Replica != nil && m.Pool != nil {
		// Nothing of this replica runs any more: its leftovers (if any)
		// are free to take at once.
		leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.Replica.Leave(leaveCtx)
		cancelLeave()
	}
	if m.Pool != nil {
		m.Pool.Close()
	}
	return errors.Join(errs...)
}

// mailSender is the keys email sender, or nil while mail is off.
func (m *Main) mailSender() *mail.Sender {
	if !m.Config.Mail.Enabled() {
		return nil
	}
	settings := m.Config.Mail
	settings.Shop = m.Config.Shop
	return mail.NewSender(settings)
}

// outbound is where events are sent (OUTBOUND_WEBHOOK_URL,
// DISCORD_WEBHOOK_URL), or nil while neither is set.
func (m *Main) outbound() *outbound.Settings {
	if !m.Config.Outbound.Enabled() {
		return nil
	}
	s := m.Config.Outbound
	// key.expiring goes out as far ahead as the buyer's expiry notice, or
	// that notice's default while it is off (MAIL_EXPIRY_NOTICE_DAYS=0).
	s.ExpiringWithin = time.Duration(m.Config.Mail.ExpiryNoticeDays) * 24 * time.Hour
	return &s
}
