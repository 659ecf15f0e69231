package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailcatcher"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/retention"
)

// The scale scenario's credentials: the admin API's token, the console's
// login and the shop's token, as a deployment sets them.
const (
	scaleAdminToken = "bench-admin-token-0123456789abcdef0123"
	scaleShopToken  = "bench-shop-token-0123456789abcdef01234"
	scaleAdminUser  = "support"
	scaleAdminPass  = "bench-console-password"
	// scaleCompareOrders is the history intake is compared against.
	scaleCompareOrders = 10_000
	// scaleExamples is how many different orders (buyers, keys, Discord
	// IDs) the requests cycle through, so no row is asked for twice in a
	// row.
	scaleExamples = 50
	// scaleWarmup requests of each row go unmeasured: the first opens
	// connections and fills the statement caches.
	scaleWarmup = 2
)

// Goals of the issue, at 1,000,000 orders on the 2-core machine.
const (
	lookupGoal   = 15 * time.Millisecond // p99 of a look-up through HTTP
	periodicGoal = 5 * time.Millisecond  // p50 of a periodic job's query
)

// scaleOptions shapes the scale scenario.
type scaleOptions struct {
	orders  int
	samples int // measured requests per look-up row
	runs    int // measured runs per periodic row
	// rowBudget bounds each row's time: a row whose calls read a whole
	// table stops early, with fewer samples, rather than holding the run
	// for an hour.
	rowBudget time.Duration
	load      loadOptions
}

// ScaleReport is what the scale scenario measured.
type ScaleReport struct {
	Orders      int     `json:"orders"`
	LoadAtStart string  `json:"load_at_start"` // /proc/loadavg
	LoadAtEnd   string  `json:"load_at_end"`
	RowBudgetS  float64 `json:"row_budget_s"`
	Phases      []Phase `json:"phases"`
	// Rows are the timed look-ups and periodic queries, in the order
	// printed.
	Rows []ScaleRow `json:"rows"`
	// Intake is webhook intake at Orders and at scaleCompareOrders.
	Intake []ScaleIntake `json:"intake"`
	// IntakeRatio is intake at Orders / intake at scaleCompareOrders.
	IntakeRatio float64     `json:"intake_ratio,omitempty"`
	Storage     *ScaleBytes `json:"storage,omitempty"`
}

// Phase is how long one step of the run took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// ScaleRow is one timed look-up or periodic query.
type ScaleRow struct {
	Group string `json:"group"` // buyer, shop, console, support CLI, periodic
	Name  string `json:"name"`
	// How is the request or the function called.
	How     string  `json:"how"`
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	// GoalMs is the bound on GoalOn (p50 or p99); Met whether it held.
	GoalMs     float64 `json:"goal_ms"`
	GoalOn     string  `json:"goal_on"`
	Met        bool    `json:"met"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// Cut is true when the row stopped at its time budget.
	Cut bool `json:"cut,omitempty"`
}

// ScaleIntake is webhook intake on a history of Orders orders.
type ScaleIntake struct {
	Orders          int     `json:"orders"`
	EventsPerSecond float64 `json:"events_per_s"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	Errors          int     `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
}

// ScaleBytes is the database's size per order before and after the
// retention job's run over the seeded history.
type ScaleBytes struct {
	Orders         int              `json:"orders"`
	DatabaseBefore int64            `json:"database_before"`
	DatabaseAfter  int64            `json:"database_after"`
	Tables         []TableBytes     `json:"tables"`
	Pruned         map[string]int64 `json:"pruned"`
}

// TableBytes is one table's size (its indexes and TOAST included).
type TableBytes struct {
	Table  string `json:"table"`
	Before int64  `json:"before"`
	After  int64  `json:"after"`
}

// newScaleRow summarises the sorted latencies of one row against its goal,
// checked on p99 ("p99") or p50 ("p50"); goalOn "" sets no goal.
func newScaleRow(group, name, how string, sorted []time.Duration, goal time.Duration, goalOn string) ScaleRow {
	r := ScaleRow{Group: group, Name: name, How: how, Samples: len(sorted),
		P50Ms: ms(percentile(sorted, 50)), P99Ms: ms(percentile(sorted, 99)), MaxMs: ms(percentile(sorted, 100)),
		GoalMs: ms(goal), GoalOn: goalOn}
	measured := r.P99Ms
	if goalOn == "p50" {
		measured = r.P50Ms
	}
	r.Met = goalOn == "" || len(sorted) > 0 && measured < r.GoalMs
	return r
}

// perOrder is size / orders, in bytes.
func perOrder(bytes int64, orders int) float64 {
	if orders <= 0 {
		return 0
	}
	return float64(bytes) / float64(orders)
}

// scaleTimer records the phases of a run.
type scaleTimer struct {
	rep   *ScaleReport
	start time.Time
	name  string
	log   func(string, ...any)
}

func (t *scaleTimer) begin(name string) {
	t.end()
	t.name, t.start = name, time.Now()
	t.log("scale: %s", name)
}

func (t *scaleTimer) end() {
	if t.name == "" {
		return
	}
	took := time.Since(t.start)
	t.rep.Phases = append(t.rep.Phases, Phase{Name: t.name, Seconds: took.Seconds()})
	t.log("scale: %s took %s", t.name, took.Round(100*time.Millisecond))
	t.name = ""
}

// loadAverage is /proc/loadavg's first three fields, or why not.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// scaleScenario seeds a history of o.orders orders, then times every
// look-up and periodic query against the running service, webhook intake
// against the same at scaleCompareOrders, and the bytes each order costs
// before and after the retention job.
func scaleScenario(ctx context.Context, o scaleOptions, dbs *databases, tmpl string, logger *slog.Logger,
	progress func(string, ...any)) (rep *ScaleReport, err error) {
	rep = &ScaleReport{Orders: o.orders, LoadAtStart: loadAverage(), RowBudgetS: o.rowBudget.Seconds()}
	timer := &scaleTimer{rep: rep, log: progress}
	runStart := time.Now()
	defer func() {
		timer.end()
		rep.Phases = append(rep.Phases, Phase{Name: "whole run", Seconds: time.Since(runStart).Seconds()})
		rep.LoadAtEnd = loadAverage()
	}()
	progress("scale: load average at start %s", rep.LoadAtStart)

	timer.begin(fmt.Sprintf("seed %d orders and ANALYZE", o.orders))
	name, dbURL, err := seededDatabase(ctx, dbs, tmpl, o.orders)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()

	timer.begin("start the service")
	svc, catcherStop, err := startScaleService(ctx, dbURL, logger)
	if err != nil {
		return rep, err
	}
	defer catcherStop()
	defer svc.close()
	pool := svc.main.Pool
	storage := &ScaleBytes{Orders: o.orders}
	rep.Storage = storage
	before, err := tableSizes(ctx, pool)
	if err != nil {
		return rep, err
	}
	if err := pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&storage.DatabaseBefore); err != nil {
		return rep, fmt.Errorf("reading the database's size: %w", err)
	}
	ex, err := pickExamples(ctx, pool, o.orders)
	if err != nil {
		return rep, err
	}

	timer.begin("look-ups through HTTP")
	h := newScaleHTTP(svc)
	for _, l := range scaleLookups(h, ex) {
		rep.Rows = append(rep.Rows, timeRow(ctx, l, o.samples, o.rowBudget))
	}

	timer.begin("periodic queries")
	for _, l := range scalePeriodic(h, pool) {
		rep.Rows = append(rep.Rows, timeRow(ctx, l, o.runs, o.rowBudget))
	}

	timer.begin("retention job over the seeded history")
	pruneRows, pruned, err := timePrune(ctx, pool)
	if err != nil {
		return rep, err
	}
	rep.Rows = append(rep.Rows, pruneRows...)
	storage.Pruned = pruned

	timer.begin("VACUUM FULL of the pruned tables, sizes")
	// Pruned rows leave free space that new rows reuse (plain autovacuum
	// makes it reusable); VACUUM FULL gives it back, so the size shows
	// what the kept rows hold, the size a database converges to.
	if _, err := pool.Exec(ctx, "VACUUM (FULL, ANALYZE) "+strings.Join(retention.Tables(), ", ")); err != nil {
		return rep, fmt.Errorf("vacuuming the pruned tables: %w", err)
	}
	after, err := tableSizes(ctx, pool)
	if err != nil {
		return rep, err
	}
	if err := pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&storage.DatabaseAfter); err != nil {
		return rep, fmt.Errorf("reading the database's size: %w", err)
	}
	storage.Tables = joinSizes(before, after)

	timer.begin(fmt.Sprintf("webhook intake at %d orders", o.orders))
	in, err := scaleIntake(ctx, svc, o.orders, o.load)
	if err != nil {
		return rep, err
	}
	rep.Intake = append(rep.Intake, in)
	svc.close()
	catcherStop()

	if o.orders != scaleCompareOrders {
		timer.begin(fmt.Sprintf("seed %d orders, webhook intake there", scaleCompareOrders))
		in, err := compareIntake(ctx, dbs, tmpl, logger, o.load)
		if err != nil {
			return rep, err
		}
		rep.Intake = append(rep.Intake, in)
		if in.EventsPerSecond > 0 {
			rep.IntakeRatio = rep.Intake[0].EventsPerSecond / in.EventsPerSecond
		}
	}
	return rep, nil
}

// seededDatabase clones the migrated template and seeds it with a history
// of orders (postgrestest.SeedHistory, which ends with ANALYZE).
func seededDatabase(ctx context.Context, dbs *databases, tmpl string, orders int) (name, dbURL string, err error) {
	name, dbURL, err = dbs.create(ctx, tmpl)
	if err != nil {
		return "", "", err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return "", "", fmt.Errorf("opening %s: %w", name, err)
	}
	defer pool.Close()
	if _, err := postgrestest.SeedHistory(ctx, pool, orders); err != nil {
		return "", "", err
	}
	return name, dbURL, nil
}

// startScaleService runs the service with its admin listener, the
// console's login, the shop's token and mail (to a local mailbox), the
// loopback trusted as a proxy so each request speaks for its own client.
// Its own prune_history job keeps event bodies for a century: the run
// times the job's batches itself, once, over the seeded history.
func startScaleService(ctx context.Context, dbURL string, logger *slog.Logger) (*service, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listening for the mailbox: %w", err)
	}
	mailCtx, stopMail := context.WithCancel(ctx)
	catcher := mailcatcher.New(100, nil)
	go func() { _ = catcher.ServeSMTP(mailCtx, l) }()
	smtp, err := mail.ParseSMTPURL("smtp://" + l.Addr().String())
	if err != nil {
		stopMail()
		return nil, nil, err
	}
	svc, err := startService(ctx, dbURL, logger, serviceOptions{configure: func(c *config.Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.AdminAPIToken = scaleAdminToken
		c.AdminUser, c.AdminPassword = scaleAdminUser, scaleAdminPass
		c.ShopAPIToken = scaleShopToken
		c.Policy = order.DefaultPolicy()
		c.PublicBaseURL = "https://shop.example"
		c.Mail = mail.Settings{SMTP: smtp, From: "Shop <keys@shop.example>", PublicBaseURL: c.PublicBaseURL}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		century := 100 * 365 * 24 * time.Hour
		c.Retention = retention.Settings{EventPayloadAge: century, DeliveryLogAge: century}
	}})
	if err != nil {
		stopMail()
		return nil, nil, err
	}
	return svc, stopMail, nil
}

// examples are rows of the seeded history the requests ask for.
type examples struct {
	sessions, emails, customers, keys []string
	discordIDs                        []string
	revokedKeys                       []string // keys of revoked orders
}

// pickExamples reads scaleExamples orders spread over the history: each
// one's session, buyer and first key; Discord IDs; and keys of revoked
// orders.
func pickExamples(ctx context.Context, pool *pgxpool.Pool, orders int) (*examples, error) {
	rng := rand.New(rand.NewPCG(23, 5))
	ids := make([]int64, 0, 4000)
	for range cap(ids) {
		ids = append(ids, 1+rng.Int64N(int64(orders-100)))
	}
	ex := &examples{}
	rows, err := pool.Query(ctx, `SELECT o.checkout_session_id, o.customer_email, o.customer_id, k.user_key
		FROM orders o JOIN LATERAL (SELECT user_key FROM order_keys k WHERE k.checkout_session_id = o.checkout_session_id
			AND k.user_key IS NOT NULL AND NOT k.extended_existing ORDER BY k.id LIMIT 1) k ON true
		WHERE o.id = ANY($1) AND o.status = 'fulfilled' LIMIT $2`, ids, scaleExamples)
	if err != nil {
		return nil, fmt.Errorf("picking example orders: %w", err)
	}
	for rows.Next() {
		var session, email, customer, key string
		if err := rows.Scan(&session, &email, &customer, &key); err != nil {
			return nil, fmt.Errorf("picking example orders: %w", err)
		}
		ex.sessions, ex.emails = append(ex.sessions, session), append(ex.emails, email)
		ex.customers, ex.keys = append(ex.customers, customer), append(ex.keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("picking example orders: %w", err)
	}
	if err := collect(ctx, pool, &ex.discordIDs, `SELECT discord_id FROM orders WHERE id = ANY($1) AND discord_id <> '' LIMIT $2`, ids); err != nil {
		return nil, fmt.Errorf("picking Discord IDs: %w", err)
	}
	if err := collect(ctx, pool, &ex.revokedKeys, `SELECT k.user_key FROM orders o
		JOIN order_keys k ON k.checkout_session_id = o.checkout_session_id AND k.user_key IS NOT NULL AND NOT k.extended_existing
		WHERE o.id = ANY($1) AND o.status = 'revoked' LIMIT $2`, ids); err != nil {
		return nil, fmt.Errorf("picking keys of revoked orders: %w", err)
	}
	if len(ex.sessions) == 0 || len(ex.discordIDs) == 0 || len(ex.revokedKeys) == 0 {
		return nil, fmt.Errorf("the seeded history gave %d orders, %d Discord IDs and %d revoked keys to ask for; seed more orders",
			len(ex.sessions), len(ex.discordIDs), len(ex.revokedKeys))
	}
	return ex, nil
}

func collect(ctx context.Context, pool *pgxpool.Pool, out *[]string, sql string, ids []int64) error {
	rows, err := pool.Query(ctx, sql, ids, scaleExamples)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return err
		}
		*out = append(*out, v)
	}
	return rows.Err()
}

// timed is one row to time: run(i) makes the i-th call.
type timed struct {
	group, name, how string
	goal             time.Duration
	goalOn           string
	run              func(ctx context.Context, i int) error
}

// timeRow makes scaleWarmup unmeasured calls, then n timed ones, one at a
// time, stopping early once the row has taken budget (after one timed
// call at least).
func timeRow(ctx context.Context, t timed, n int, budget time.Duration) ScaleRow {
	var lat []time.Duration
	errs, first, cut := 0, "", false
	rowStart := time.Now()
	for i := range scaleWarmup + n {
		if ctx.Err() != nil {
			break
		}
		if i > scaleWarmup && time.Since(rowStart) > budget {
			cut = true
			break
		}
		start := time.Now()
		err := t.run(ctx, i)
		took := time.Since(start)
		if i < scaleWarmup {
			continue
		}
		if err != nil {
			errs++
			if first == "" {
				first = strings.Join(strings.Fields(err.Error()), " ")
			}
			continue
		}
		lat = append(lat, took)
	}
	sortDurations(lat)
	r := newScaleRow(t.group, t.name, t.how, lat, t.goal, t.goalOn)
	r.Errors, r.FirstError, r.Cut = errs, first, cut
	return r
}

// scaleHTTP sends the run's requests, each from its own client address
// (X-Forwarded-For through the trusted loopback), so the per-client
// limits of a shop's many buyers never hold one benchmark back.
type scaleHTTP struct {
	client         *http.Client
	public, admin  string
	clients        atomic.Uint32
	tokens         map[string]string // find-my-keys tokens by address
	tokenPool      *pgxpool.Pool
	tokenExpiresAt time.Time
}

func newScaleHTTP(svc *service) *scaleHTTP {
	return &scaleHTTP{client: newSender(1), public: svc.main.URL(), admin: svc.main.AdminURL(),
		tokens: map[string]string{}, tokenPool: svc.main.Pool, tokenExpiresAt: time.Now().Add(jobs.KeyLookupTokenTTL)}
}

// call sends one request and wants status want.
func (h *scaleHTTP) call(ctx context.Context, method, url, contentType, body string, want int, auth func(*http.Request)) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	n := h.clients.Add(1)
	req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", byte(n>>16), byte(n>>8), byte(n)))
	if auth != nil {
		auth(req)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d, want %d: %.200s", method, req.URL.Path, resp.StatusCode, want, got)
	}
	return nil
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func consoleLogin(r *http.Request) { r.SetBasicAuth(scaleAdminUser, scaleAdminPass) }

// token is a find-my-keys link's token for email, as the emailed link
// carries it.
func (h *scaleHTTP) token(ctx context.Context, email string) (string, error) {
	if t, ok := h.tokens[email]; ok {
		return t, nil
	}
	t, err := jobs.NewKeyLookupToken(ctx, h.tokenPool, email, h.tokenExpiresAt)
	if err != nil {
		return "", fmt.Errorf("signing a find-my-keys token: %w", err)
	}
	h.tokens[email] = t
	return t, nil
}

func pick(values []string, i int) string { return values[i%len(values)] }

func jsonField(name, value string) string { return fmt.Sprintf(`{%q:%q}`, name, value) }

// scaleLookups are the look-ups people make, through HTTP.
func scaleLookups(h *scaleHTTP, ex *examples) []timed {
	const form = "application/x-www-form-urlencoded"
	const js = "application/json"
	row := func(group, name, how string, run func(ctx context.Context, i int) error) timed {
		return timed{group: group, name: name, how: how, goal: lookupGoal, goalOn: "p99", run: run}
	}
	search := func(name string, text func(i int) string) timed {
		return row("console", "search by "+name, "POST /console/orders q=…", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodPost, h.admin+"/console/orders", form, url.Values{"q": {text(i)}}.Encode(), http.StatusOK, consoleLogin)
		})
	}
	tail := jobs.MinKeyTail + 4
	return []timed{
		row("buyer", "order page", "GET /orders/{cs_…}", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodGet, h.public+"/orders/"+pick(ex.sessions, i), "", "", http.StatusOK, nil)
		}),
		row("buyer", "order API", "GET /v1/orders/{cs_…}", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodGet, h.public+"/v1/orders/"+pick(ex.sessions, i), "", "", http.StatusOK, nil)
		}),
		row("buyer", "find my keys (the link's list)", "POST /v1/my-keys", func(ctx context.Context, i int) error {
			t, err := h.token(ctx, pick(ex.emails, i))
			if err != nil {
				return err
			}
			return h.call(ctx, http.MethodPost, h.public+"/v1/my-keys", js, jsonField("token", t), http.StatusOK, nil)
		}),
		row("shop", "keys of a customer", "GET /v1/customers/{cus_…}/keys", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodGet, h.public+"/v1/customers/"+pick(ex.customers, i)+"/keys", "", "", http.StatusOK, bearer(scaleShopToken))
		}),
		row("shop", "keys of an email address", "POST /v1/keys/search", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodPost, h.public+"/v1/keys/search", js, jsonField("email", pick(ex.emails, i)), http.StatusOK, bearer(scaleShopToken))
		}),
		search("email", func(i int) string { return pick(ex.emails, i) }),
		search("ord_ reference", func(i int) string { return logging.OrderRef(pick(ex.sessions, i)) }),
		search("Checkout Session ID", func(i int) string { return pick(ex.sessions, i) }),
		search("customer", func(i int) string { return pick(ex.customers, i) }),
		search("Discord ID", func(i int) string { return pick(ex.discordIDs, i) }),
		search(fmt.Sprintf("a key's last %d characters", tail), func(i int) string { k := pick(ex.keys, i); return k[len(k)-tail:] }),
		search("a whole key", func(i int) string { return pick(ex.keys, i) }),
		row("support CLI", "fulfiller orders show ord_…", "GET /v1/admin/orders/{ord_…}", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodGet, h.admin+"/v1/admin/orders/"+logging.OrderRef(pick(ex.sessions, i)), "", "", http.StatusOK, bearer(scaleAdminToken))
		}),
		row("support CLI", "fulfiller orders find --email", "POST /v1/admin/orders/search", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodPost, h.admin+"/v1/admin/orders/search", js, jsonField("email", pick(ex.emails, i)), http.StatusOK, bearer(scaleAdminToken))
		}),
		row("support CLI", "fulfiller orders find --discord", "GET /v1/admin/orders?discord=", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodGet, h.admin+"/v1/admin/orders?discord="+pick(ex.discordIDs, i), "", "", http.StatusOK, bearer(scaleAdminToken))
		}),
		row("support CLI", "fulfiller orders find --key", "POST /v1/admin/orders/search", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodPost, h.admin+"/v1/admin/orders/search", js, jsonField("user_key", pick(ex.keys, i)), http.StatusOK, bearer(scaleAdminToken))
		}),
		// A key action finds the key and locks its order, then queues its
		// job; unbanning a key of a revoked order is refused right after
		// the look-up (409), so the run changes nothing.
		row("support CLI", "fulfiller keys unban KEY (refused: revoked)", "POST /v1/admin/keys/unban", func(ctx context.Context, i int) error {
			return h.call(ctx, http.MethodPost, h.admin+"/v1/admin/keys/unban", js, jsonField("user_key", pick(ex.revokedKeys, i)), http.StatusConflict, bearer(scaleAdminToken))
		}),
	}
}

// Arguments of the periodic jobs' queries, as the jobs pass them with the
// default settings (internal/jobs: resumeAfter, resumeBatch and
// retryGivenUpWritesAfter of resume_orders; watchBatch and the look-ahead,
// half of RENEWAL_GRACE, of watch_subscriptions; expiryNoticeBatch and
// MAIL_EXPIRY_NOTICE_DAYS; refreshBatch and refreshAge; foldCountsBatch),
// and a seeded price's stock.
const (
	resumeAfter      = time.Minute
	resumeBatch      = 100
	retryGivenUp     = time.Hour
	watchBatch       = 200
	expiryWithin     = 3 * 24 * time.Hour
	expiryBatch      = 500
	refreshBatch     = 10
	refreshMinAge    = time.Hour
	foldCountsBatch  = 5000
	stockProjectID   = "proj_1"
	stockProjectDays = 30
)

// scalePeriodic are the queries of the periodic jobs and checks, called
// through the functions the jobs call, and the metrics scrape.
func scalePeriodic(h *scaleHTTP, pool *pgxpool.Pool) []timed {
	watchAhead := max(2*time.Hour, order.DefaultPolicy().RenewalGrace/2)
	row := func(name, how string, run func(ctx context.Context, i int) error) timed {
		return timed{group: "periodic", name: name, how: how, goal: periodicGoal, goalOn: "p50", run: run}
	}
	demand := doctor.LastDayDeliveries(pool)
	return []timed{
		row("resume_orders (every minute)", "postgres.StalledOrders + StalledLedgerKeys", func(ctx context.Context, _ int) error {
			if _, _, err := postgres.StalledOrders(ctx, pool, jobs.CreateKeyArgs{}.Kind(), jobs.FulfilOrderArgs{}.Kind(), resumeAfter, resumeBatch); err != nil {
				return err
			}
			_, err := postgres.StalledLedgerKeys(ctx, pool, jobs.SyncKeyArgs{}.Kind(), resumeAfter, retryGivenUp, resumeBatch)
			return err
		}),
		row("watch_subscriptions (every 15 minutes)", "postgres.SubscriptionsLapsingSoon", func(ctx context.Context, _ int) error {
			_, err := postgres.SubscriptionsLapsingSoon(ctx, pool, watchAhead, watchBatch)
			return err
		}),
		// The hourly run checks the keys that entered its window since
		// the last run, or changed since (queued by triggers, migration
		// 0063). The first, unmeasured, call checks every key already in
		// the window, as the first run after an upgrade does; each later
		// call is the run of an hour later, whose window reaches an hour
		// further. Each batch commits its checks, as the job's does; the
		// notices owed are listed but not recorded.
		row("expiry notices (hourly)", "postgres.ExpiringKeys, batches of 500 until done", func(ctx context.Context, i int) error {
			now := time.Now().Add(time.Duration(i) * time.Hour)
			for {
				checked := 0
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					n, _, err := postgres.ExpiringKeys(ctx, tx, now, expiryWithin, expiryBatch)
					checked = n
					return err
				})
				if err != nil || checked < expiryBatch {
					return err
				}
			}
		}),
		row("refresh_keys (every 5 minutes)", "postgres.UnstartedKeys + UnboundKeys", func(ctx context.Context, _ int) error {
			if _, err := postgres.UnstartedKeys(ctx, pool, refreshBatch, refreshMinAge); err != nil {
				return err
			}
			_, err := postgres.UnboundKeys(ctx, pool, refreshBatch, refreshMinAge)
			return err
		}),
		row("fold_order_counts (every minute)", "postgres.FoldOrderCounts", func(ctx context.Context, _ int) error {
			_, err := postgres.FoldOrderCounts(ctx, pool, foldCountsBatch)
			return err
		}),
		row("stock check (doctor, refills)", "postgres.SellableStock", func(ctx context.Context, _ int) error {
			_, _, err := postgres.SellableStock(ctx, pool, stockProjectID, stockProjectDays)
			return err
		}),
		row("doctor's day of deliveries", "doctor.LastDayDeliveries", func(ctx context.Context, _ int) error {
			_, _, err := demand(ctx)
			return err
		}),
		row("console overview figures", "postgres.FiguresSince (day, week)", func(ctx context.Context, _ int) error {
			now := time.Now()
			if _, err := postgres.FiguresSince(ctx, pool, now.Add(-24*time.Hour)); err != nil {
				return err
			}
			_, err := postgres.FiguresSince(ctx, pool, now.Add(-7*24*time.Hour))
			return err
		}),
		row("metrics scrape", "GET /metrics", func(ctx context.Context, _ int) error {
			return h.call(ctx, http.MethodGet, h.admin+"/metrics", "", "", http.StatusOK, nil)
		}),
	}
}

// timePrune runs the retention job's pruner once over the seeded history
// at the default ages, timing each batch (the time between one committed
// batch and the next), and returns a row per kind and the rows pruned.
func timePrune(ctx context.Context, pool *pgxpool.Pool) ([]ScaleRow, map[string]int64, error) {
	batches := map[string][]time.Duration{}
	last := time.Now()
	p := &retention.Pruner{Pool: pool, OnBatch: func(kind string, _ int64) {
		now := time.Now()
		batches[kind] = append(batches[kind], now.Sub(last))
		last = now
	}}
	sum, err := p.Run(ctx, time.Now().Add(time.Hour))
	if err != nil {
		return nil, nil, fmt.Errorf("running the retention job over the seeded history: %w", err)
	}
	if !sum.Complete {
		return nil, nil, errors.New("the retention job did not finish its run over the seeded history within an hour")
	}
	var rows []ScaleRow
	for _, kind := range retention.Kinds() {
		lat := batches[kind]
		sortDurations(lat)
		rows = append(rows, newScaleRow("periodic", fmt.Sprintf("prune_history batch, %s (%d rows pruned)", kind, sum.Pruned[kind]),
			fmt.Sprintf("retention.Pruner, %d rows a batch", retention.DefaultBatchSize), lat, 0, ""))
	}
	return rows, sum.Pruned, nil
}

// tableSizes is each table's size with its indexes and TOAST.
func tableSizes(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	rows, err := pool.Query(ctx, `SELECT relname, pg_total_relation_size(oid) FROM pg_class
		WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace`)
	if err != nil {
		return nil, fmt.Errorf("reading table sizes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			return nil, fmt.Errorf("reading table sizes: %w", err)
		}
		out[name] = size
	}
	return out, rows.Err()
}

// joinSizes pairs each table's sizes, largest first before.
func joinSizes(before, after map[string]int64) []TableBytes {
	var out []TableBytes
	for name, b := range before {
		out = append(out, TableBytes{Table: name, Before: b, After: after[name]})
	}
	sortTables(out)
	return out
}

// scaleIntake measures webhook intake (event processing paused, as the
// intake scenario's intake-only row) against the running service.
func scaleIntake(ctx context.Context, svc *service, orders int, lo loadOptions) (ScaleIntake, error) {
	in := ScaleIntake{Orders: orders}
	maker, err := newEventMaker("unpaid", benchItems)
	if err != nil {
		return in, err
	}
	if err := svc.main.River.QueuePause(ctx, jobs.QueueEvents, nil); err != nil {
		return in, fmt.Errorf("pausing event processing: %w", err)
	}
	res, err := runLoad(ctx, newSender(lo.concurrency), svc.webhookURL(), maker, nil, lo)
	if err != nil {
		return in, err
	}
	in.EventsPerSecond = float64(len(res.latencies)) / res.window.Seconds()
	in.P50Ms, in.P99Ms = ms(percentile(res.latencies, 50)), ms(percentile(res.latencies, 99))
	in.Errors, in.FirstError = res.errors, res.firstError
	return in, nil
}

// compareIntake measures intake on a history of scaleCompareOrders.
func compareIntake(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, lo loadOptions) (in ScaleIntake, err error) {
	name, dbURL, err := seededDatabase(ctx, dbs, tmpl, scaleCompareOrders)
	if err != nil {
		return in, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, stop, err := startScaleService(ctx, dbURL, logger)
	if err != nil {
		return in, err
	}
	defer stop()
	defer svc.close()
	return scaleIntake(ctx, svc, scaleCompareOrders, lo)
}
