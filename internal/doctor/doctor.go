// Package doctor checks, before the first sale, that a configuration can
// sell: its settings (all of them at once), the database and its schema, the Luarmor API and key, the catalog's
// projects and prices, the Stripe key and webhook endpoint, the webhook
// secret, the room left on the Luarmor plan and, through PUBLIC_BASE_URL,
// whether the proxy in front of the running service is a trusted one. Each
// check makes at most one call to each service it reads (listing webhook
// endpoints may page), through the clients the service itself uses, and
// says what to do when it fails. Against the local stand-ins of `fulfiller
// dev` (FindStandIns) it checks them, and says so on every line it read
// from them.
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
	"fulfiller/internal/retention"
	"fulfiller/internal/shop"
	"fulfiller/internal/stripeapi"
)

// DevelopmentWebhookSecret signs the events of local development (`make
// run`, `fulfiller simulate`). It is public, so a deployment using it
// accepts events anyone can forge.
const DevelopmentWebhookSecret = config.PublicDevWebhookSecret

// WebhookPath is where the service receives Stripe's events.
const WebhookPath = "/webhooks/stripe"

// Status is a check's verdict.
type Status string

const (
	Pass Status = "PASS"
	Warn Status = "WARN" // works, but needs a look
	Fail Status = "FAIL" // would lose or refuse sales
)

// Result is one check's verdict, with what to do about it.
type Result struct {
	Check   string
	Status  Status
	Message string
}

func (r Result) String() string { return fmt.Sprintf("%s  %-18s %s", r.Status, r.Check, r.Message) }

// Stripe is what the checks read from Stripe (*stripeapi.Client).
type Stripe interface {
	CheckKey(ctx context.Context) error
	Price(ctx context.Context, id string) (*stripe.Price, error)
	WebhookEndpoints(ctx context.Context) ([]*stripe.WebhookEndpoint, error)
}

// Luarmor is what the checks read from Luarmor (*luarmor.Client).
type Luarmor interface {
	Status(ctx context.Context) (*luarmor.Status, error)
	KeyDetails(ctx context.Context) (*luarmor.KeyDetails, error)
	KeyStats(ctx context.Context, noUsers bool) (*luarmor.KeyStats, error)
}

// Demand estimates how many new Luarmor keys a day of sales needs, and
// says how it was estimated. It is the seam for stock: an estimator that
// knows what the shop still offers can replace the default.
type Demand func(ctx context.Context) (keysPerDay int, basis string, err error)

// Doctor runs the checks. Every field but Demand, Now, HTTP, Settings,
// CatalogErr and StandIns is required, but for what a setting at fault
// leaves out: Pool without DATABASE_URL, Catalog when CatalogErr says why.
type Doctor struct {
	Pool    *pgxpool.Pool
	Stripe  Stripe
	Luarmor Luarmor
	Catalog *catalog.Catalog
	// CatalogErr is why the catalog could not be loaded (Catalog nil): a
	// FAIL line, and the checks of prices and projects are not run.
	CatalogErr error
	// Settings are the settings that could not be read (config.Errors
	// of the configuration): each is a FAIL line, and a check that needs
	// one of them says so instead of running; the others still run.
	Settings config.Errors
	// StandIns are the services that are the local stand-ins of
	// `fulfiller dev` (FindStandIns): the checks run against them and say
	// so.
	StandIns StandIns
	// StripeLive is the Stripe key's mode (sk_live_/rk_live_), StripeKeyKnown
	// whether its prefix names a mode at all.
	StripeLive, StripeKeyKnown bool
	WebhookSecrets             []string
	// PublicBaseURL is PUBLIC_BASE_URL without a trailing slash; "" when
	// unset.
	PublicBaseURL string
	// Demand defaults to LastDayDeliveries of Pool.
	Demand Demand
	Now    func() time.Time
	// HTTP asks the running service, through PUBLIC_BASE_URL, how the
	// proxy in front of it is taken; nil means a client with a 10-second
	// timeout.
	HTTP *http.Client
	// Shop is the shop as buyers see it (SHOP_*), checked by ShopCheck.
	Shop shop.Identity
	// Retention is how long prunable history is kept (RETENTION_*); zero
	// means the defaults.
	Retention retention.Settings
	// Outbound are the events sent to the shop's own tools
	// (OUTBOUND_WEBHOOK_*, DISCORD_WEBHOOK_URL): their settings are
	// checked, nothing is posted.
	Outbound outbound.Settings
}

// Run runs every check and returns their verdicts in order.
func (d *Doctor) Run(ctx context.Context) []Result {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Demand == nil && d.Pool != nil {
		d.Demand = LastDayDeliveries(d.Pool)
	}
	var out []Result
	for _, e := range d.Settings {
		out = append(out, fail("setting "+e.Name, "%s", e.Reason))
	}
	if d.CatalogErr != nil {
		out = append(out, fail("catalog", "%v", d.CatalogErr))
	}
	if r, ok := d.standIns(); ok {
		out = append(out, r)
	}
	db := d.database(ctx)
	out = append(out, db)
	if db.Status == Pass {
		out = append(out, d.storage(ctx))
	}
	lua := d.StandIns.luarmorTag
	out = append(out, lua(d.luarmorStatus(ctx)))
	details, r := d.luarmorKey(ctx)
	out = append(out, lua(r))
	out = append(out, lua(d.luarmorProjects(details)))
	out = append(out, lua(d.luarmorCapacity(ctx, details != nil)))
	str := d.StandIns.stripeTag
	keyOK, r := d.stripeKey(ctx)
	out = append(out, str(r))
	for _, r := range d.prices(ctx, keyOK) {
		out = append(out, str(r))
	}
	out = append(out, d.stock(ctx)...)
	out = append(out, str(d.webhookEndpoint(ctx, keyOK)))
	out = append(out, d.webhookSecret())
	out = append(out, d.trustedProxies(ctx))
	out = append(out, ShopCheck(d.Shop, d.Catalog))
	out = append(out, d.notifications()...)
	return out
}

// unchecked is the FAIL of a check that needs one of names, settings at
// fault, and ok when there is one.
func (d *Doctor) unchecked(check string, names ...string) (Result, bool) {
	var bad []string
	for _, n := range names {
		if d.Settings.Has(n) {
			bad = append(bad, n)
		}
	}
	if len(bad) == 0 {
		return Result{}, false
	}
	return fail(check, "not checked: %s needs fixing first (its line above)", strings.Join(bad, " and ")), true
}

// noCatalog is the FAIL of a check that needs the catalog, which could
// not be loaded.
func noCatalog(check string) Result {
	return fail(check, "not checked: the catalog could not be loaded (its line above)")
}

// Failed reports whether any result is a FAIL.
func Failed(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Status == Fail })
}

func pass(check, format string, a ...any) Result {
	return Result{check, Pass, fmt.Sprintf(format, a...)}
}

func warn(check, format string, a ...any) Result {
	return Result{check, Warn, fmt.Sprintf(format, a...)}
}

func fail(check, format string, a ...any) Result {
	return Result{check, Fail, fmt.Sprintf(format, a...)}
}

// ---- Database ----

func (d *Doctor) database(ctx context.Context) Result {
	const check = "database"
	if r, skip := d.unchecked(check, "DATABASE_URL"); skip {
		return r
	}
	if err := d.Pool.Ping(ctx); err != nil {
		return fail(check, "PostgreSQL is unreachable (%v): check DATABASE_URL and that the server accepts connections", err)
	}
	// The check readiness makes: River's migrations and the service's.
	pending, err := postgres.PendingMigrations(ctx, d.Pool)
	if err != nil {
		return fail(check, "reading the applied migrations: %v: run `fulfiller migrate`", err)
	}
	if len(pending) > 0 {
		return fail(check, "reachable, but migrations are pending (%s): run `fulfiller migrate` before serving", strings.Join(pending, ", "))
	}
	return pass(check, "reachable; migrations current")
}

// LastDayDeliveries estimates a day of sales as the new keys delivered in
// the last 24 hours (units that extended a customer's existing key need no
// new place on the plan).
func LastDayDeliveries(pool *pgxpool.Pool) Demand {
	return func(ctx context.Context) (int, string, error) {
		n, err := postgres.NewKeysDeliveredSince(ctx, pool, time.Now().Add(-24*time.Hour))
		if err != nil {
			return 0, "", fmt.Errorf("counting the last 24 hours' deliveries: %w", err)
		}
		return n, "keys delivered in the last 24 hours", nil
	}
}

// ---- Luarmor ----

const luarmorRefused = "Luarmor refused LUARMOR_API_KEY (403): whitelist this server's public IP address in the Luarmor dashboard (API settings), and check the key"

func (d *Doctor) luarmorStatus(ctx context.Context) Result {
	const check = "luarmor api"
	if r, skip := d.unchecked(check, "LUARMOR_BASE_URL"); skip {
		return r
	}
	st, err := d.Luarmor.Status(ctx)
	switch {
	case err != nil:
		return fail(check, "GET /status failed (%v): check LUARMOR_BASE_URL and this server's outbound network", err)
	case !st.Active:
		return fail(check, "Luarmor reports the API inactive: %q; keys cannot be created until it is back", st.Message)
	case st.Warning:
		return warn(check, "reachable (API %s), with a warning from Luarmor: %q", st.Version, st.WarningMessage)
	}
	return pass(check, "reachable (API %s)", st.Version)
}

func (d *Doctor) luarmorKey(ctx context.Context) (*luarmor.KeyDetails, Result) {
	const check = "luarmor key"
	if r, skip := d.unchecked(check, "LUARMOR_API_KEY", "LUARMOR_BASE_URL"); skip {
		return nil, r
	}
	det, err := d.Luarmor.KeyDetails(ctx)
	switch {
	case errors.Is(err, luarmor.ErrUnauthorized):
		return nil, fail(check, luarmorRefused)
	case err != nil:
		return nil, fail(check, "reading the key's details failed (%v): run doctor again; if it persists, check Luarmor's status", err)
	case det.Enabled == 0:
		return det, fail(check, "the Luarmor account is disabled: check the subscription in the Luarmor dashboard")
	}
	if det.ExpiresAt > 0 {
		left := time.Unix(det.ExpiresAt, 0).Sub(d.Now())
		switch {
		case left <= 0:
			return det, fail(check, "the Luarmor plan expired on %s: renew it", time.Unix(det.ExpiresAt, 0).UTC().Format(time.DateOnly))
		case left < 7*24*time.Hour:
			return det, warn(check, "accepted, but the Luarmor plan (%s) expires on %s: renew it", planName(det.Plan), time.Unix(det.ExpiresAt, 0).UTC().Format(time.DateOnly))
		}
	}
	return det, pass(check, "accepted (plan %s, %d projects)", planName(det.Plan), len(det.Projects))
}

// planName spells out the one-letter plan of the key details (luarmor-rs
// src/models/v3/keys/details.rs, KeyPlan); another value is shown as sent.
func planName(plan string) string {
	switch plan {
	case "b":
		return "basic"
	case "p":
		return "premium"
	case "r":
		return "pro"
	}
	return plan
}

func (d *Doctor) luarmorProjects(det *luarmor.KeyDetails) Result {
	const check = "luarmor projects"
	if r, skip := d.unchecked(check, "LUARMOR_API_KEY", "LUARMOR_BASE_URL"); skip {
		return r
	}
	if det == nil {
		return fail(check, "not checked: the Luarmor key check failed")
	}
	if d.Catalog == nil {
		return noCatalog(check)
	}
	known := map[string]bool{}
	for _, p := range det.Projects {
		known[p.ID] = true
	}
	byProject := map[string][]string{}
	for _, price := range d.priceIDs() {
		p, _ := d.Catalog.Lookup(price)
		byProject[p.ProjectID] = append(byProject[p.ProjectID], price)
	}
	var missing []string
	for _, project := range slices.Sorted(maps.Keys(byProject)) {
		if !known[project] {
			missing = append(missing, fmt.Sprintf("%s (prices %s)", project, strings.Join(byProject[project], ", ")))
		}
	}
	if len(missing) > 0 {
		return fail(check, "the catalog names projects this Luarmor key does not have: %s: fix project_id in the catalog (copy it from the Luarmor dashboard) or use the key of the account that owns them",
			strings.Join(missing, "; "))
	}
	return pass(check, "all %d catalog projects exist for this key", len(byProject))
}

func (d *Doctor) luarmorCapacity(ctx context.Context, keyOK bool) Result {
	const check = "luarmor capacity"
	if r, skip := d.unchecked(check, "LUARMOR_API_KEY", "LUARMOR_BASE_URL"); skip {
		return r
	}
	if !keyOK {
		return fail(check, "not checked: the Luarmor key check failed")
	}
	st, err := d.Luarmor.KeyStats(ctx, false)
	if err != nil {
		return fail(check, "reading the key's stats failed (%v): run doctor again", err)
	}
	// The plan's limit is stats.default.users, the only place the public
	// clients show one; the answer may not tell it, and a zero is no limit.
	if st.Stats.Users == nil {
		return warn(check, "Luarmor's stats did not say how many keys exist; the plan's room cannot be checked")
	}
	users := int(*st.Stats.Users)
	limit64, known := st.UserLimit()
	if !known {
		return warn(check, "%d keys exist; plan limit unknown (Luarmor's stats give no user limit), so the room left cannot be checked: see the Luarmor dashboard", users)
	}
	limit := int(limit64)
	free := limit - users
	perDay, basis, err := 0, "", error(nil)
	if d.Demand == nil {
		err = errors.New("DATABASE_URL needs fixing")
	} else {
		perDay, basis, err = d.Demand(ctx)
	}
	if err != nil {
		return warn(check, "%d of %d keys used, %d free; a day of sales could not be estimated: %v", users, limit, free, err)
	}
	switch {
	case free <= 0:
		return fail(check, "the Luarmor plan is full (%d of %d keys): no key can be created; upgrade the plan or delete unused keys", users, limit)
	case free < perDay:
		return warn(check, "%d free places (%d of %d keys used), fewer than a day of sales (%d %s): upgrade the Luarmor plan or delete unused keys",
			free, users, limit, perDay, basis)
	}
	return pass(check, "%d free places (%d of %d keys used); a day of sales is %d (%s)", free, users, limit, perDay, basis)
}

// ---- Stripe ----

func (d *Doctor) mode() string {
	if d.StripeLive {
		return "live"
	}
	return "test"
}

// StripeKeyNamesMode reports whether key's prefix names a mode: a secret
// (sk_) or restricted (rk_) key, live or test.
func StripeKeyNamesMode(key string) bool {
	for _, p := range []string{"sk_live_", "rk_live_", "sk_test_", "rk_test_"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (d *Doctor) stripeKey(ctx context.Context) (bool, Result) {
	const check = "stripe key"
	if r, skip := d.unchecked(check, "STRIPE_API_KEY", "STRIPE_API_BASE"); skip {
		return false, r
	}
	if !d.StripeKeyKnown {
		return false, fail(check, "STRIPE_API_KEY is neither a secret key (sk_live_/sk_test_) nor a restricted key (rk_live_/rk_test_): copy it from the Stripe dashboard's API keys page")
	}
	err := d.Stripe.CheckKey(ctx)
	switch {
	case stripeapi.IsUnauthorized(err):
		return false, fail(check, "Stripe refused STRIPE_API_KEY (%v): use a secret key, or a restricted key that can read Checkout Sessions, Prices and Webhook Endpoints", err)
	case err != nil:
		return false, fail(check, "Stripe could not be reached (%v): check STRIPE_API_BASE and this server's outbound network", err)
	case d.StandIns.Stripe != "":
		return true, warn(check, "accepted (the development key of `fulfiller dev`): no real payment reaches this service; set the live key (sk_live_ or rk_live_) and Stripe's API before selling")
	case !d.StripeLive:
		return true, warn(check, "accepted, in test mode: no real payment reaches this service; set the live key (sk_live_ or rk_live_) before selling")
	}
	return true, pass(check, "accepted (live mode)")
}

func (d *Doctor) priceIDs() []string {
	return slices.Sorted(maps.Keys(d.Catalog.Prices))
}

func (d *Doctor) prices(ctx context.Context, keyOK bool) []Result {
	if d.Catalog == nil {
		return []Result{noCatalog("prices")}
	}
	var out []Result
	for _, id := range d.priceIDs() {
		check := "price " + id
		if r, skip := d.unchecked(check, "STRIPE_API_KEY", "STRIPE_API_BASE"); skip {
			out = append(out, r)
			continue
		}
		if !keyOK {
			out = append(out, fail(check, "not checked: the Stripe key check failed"))
			continue
		}
		out = append(out, d.price(ctx, check, id))
	}
	return out
}

func (d *Doctor) price(ctx context.Context, check, id string) Result {
	product, _ := d.Catalog.Lookup(id)
	p, err := d.Stripe.Price(ctx, id)
	switch {
	case stripeapi.IsNotFound(err) && d.StandIns.Stripe != "":
		return fail(check, "is not in the local Stripe stand-in (%v): `fulfiller dev` registers the catalog's prices when it starts, so restart it (make run) after changing the catalog, or fix the price ID", err)
	case stripeapi.IsNotFound(err):
		return fail(check, "does not exist in Stripe's %s mode (%v): fix the price ID in the catalog, or use the Stripe key of the mode and account it belongs to", d.mode(), err)
	case err != nil:
		return fail(check, "reading it from Stripe failed (%v): run doctor again", err)
	case p.Livemode != d.StripeLive:
		return fail(check, "is a %s price but STRIPE_API_KEY is a %s key: use keys and prices of one mode", modeName(p.Livemode), d.mode())
	case !p.Active:
		return fail(check, "is archived (inactive) in Stripe: no one can buy it; reactivate it or remove it from the catalog")
	}
	billing := catalog.BillingOneTime
	desc := "one-off"
	if p.Recurring != nil || p.Type == stripe.PriceTypeRecurring {
		billing = catalog.BillingRecurring
		desc = "recurring"
		if p.Recurring != nil {
			desc = fmt.Sprintf("recurring every %d %s", p.Recurring.IntervalCount, p.Recurring.Interval)
		}
	}
	if product.Billing != "" && product.Billing != billing {
		return fail(check, "is %s in Stripe but the catalog says billing: %s: correct the catalog, or sell a %s price", desc, product.Billing, product.Billing)
	}
	return pass(check, "active, %s, delivers project %s", desc, product.ProjectID)
}

func modeName(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

// ---- Webhooks ----

func (d *Doctor) webhookEndpoint(ctx context.Context, keyOK bool) Result {
	const check = "stripe webhook"
	if r, skip := d.unchecked(check, "PUBLIC_BASE_URL"); skip {
		return r
	}
	if d.PublicBaseURL == "" {
		return warn(check, "PUBLIC_BASE_URL is not set, so the endpoint cannot be found: set it to this service's public URL (Stripe must reach %s there)", WebhookPath)
	}
	want := d.PublicBaseURL + WebhookPath
	if r, skip := d.unchecked(check, "STRIPE_API_KEY", "STRIPE_API_BASE"); skip {
		return r
	}
	if !keyOK {
		return fail(check, "not checked: the Stripe key check failed")
	}
	endpoints, err := d.Stripe.WebhookEndpoints(ctx)
	switch {
	case stripeapi.IsUnauthorized(err):
		return fail(check, "STRIPE_API_KEY may not list webhook endpoints (%v): give the restricted key Webhook Endpoints read access, or check %s by hand", err, want)
	case err != nil:
		return fail(check, "listing webhook endpoints failed (%v): run doctor again", err)
	}
	var problems []string
	for _, e := range endpoints {
		if e.URL != want {
			continue
		}
		p := endpointProblems(e)
		if len(p) == 0 {
			return pass(check, "%s is enabled, on API version %s, with every handled event", want, stripe.APIVersion)
		}
		problems = append(problems, fmt.Sprintf("%s: %s", e.ID, strings.Join(p, "; ")))
	}
	if len(problems) == 0 {
		return fail(check, "no %s-mode endpoint sends events to %s (%d endpoints listed): create it with API version %s and the events listed in deploy/README.md",
			d.mode(), want, len(endpoints), stripe.APIVersion)
	}
	return fail(check, "the endpoint for %s needs fixing: %s", want, strings.Join(problems, " | "))
}

// endpointProblems lists what keeps an endpoint from delivering every
// event the service acts on, in the version it is built for.
func endpointProblems(e *stripe.WebhookEndpoint) []string {
	var p []string
	if e.Status != "enabled" {
		p = append(p, fmt.Sprintf("it is %s: enable it in the Stripe dashboard", e.Status))
	}
	if e.APIVersion != stripe.APIVersion {
		got := e.APIVersion
		if got == "" {
			got = "the account's default"
		}
		p = append(p, fmt.Sprintf("its API version is %s, not %s: create a new endpoint with --api-version %s (the version of an endpoint cannot be changed)", got, stripe.APIVersion, stripe.APIVersion))
	}
	if !slices.Contains(e.EnabledEvents, "*") {
		var missing []string
		for _, t := range jobs.HandledTypes() {
			if !slices.Contains(e.EnabledEvents, t) {
				missing = append(missing, t)
			}
		}
		if len(missing) > 0 {
			p = append(p, "it does not send "+strings.Join(missing, ", ")+": add them to its events")
		}
	}
	return p
}

func (d *Doctor) webhookSecret() Result {
	const check = "webhook secret"
	if r, skip := d.unchecked(check, "STRIPE_WEBHOOK_SECRET"); skip {
		return r
	}
	for _, s := range d.WebhookSecrets {
		if s == DevelopmentWebhookSecret && d.StandIns.Stripe != "" && d.StandIns.Luarmor != "" {
			return warn(check, "STRIPE_WEBHOOK_SECRET is the public development secret: fine against the local stand-ins of `fulfiller dev`, which create no real key, but serve refuses it; set the endpoint's signing secret from the Stripe dashboard before selling")
		}
		if s == DevelopmentWebhookSecret {
			return fail(check, "STRIPE_WEBHOOK_SECRET is the public development secret: anyone could forge a payment; set the endpoint's signing secret from the Stripe dashboard")
		}
	}
	return pass(check, "set (%d secret(s)), not the development one", len(d.WebhookSecrets))
}

// ---- Proxies ----

// ForwardedForPath is the service's public route that says how the asking
// request's X-Forwarded-For was taken.
const ForwardedForPath = "/v1/forwarded-for"

// trustedProxies asks the running service, through PUBLIC_BASE_URL (so
// through whatever proxy stands there, as every buyer's request does),
// whether that proxy's X-Forwarded-For is read. A proxy missing from
// TRUSTED_PROXIES makes every buyer look like the proxy: all of them share
// one client's rate limits.
func (d *Doctor) trustedProxies(ctx context.Context) Result {
	const check = "trusted proxies"
	if r, skip := d.unchecked(check, "PUBLIC_BASE_URL"); skip {
		return r
	}
	if d.PublicBaseURL == "" {
		return warn(check, "PUBLIC_BASE_URL is not set, so whether the proxy in front of the service is in TRUSTED_PROXIES cannot be checked: set it to this service's public URL")
	}
	target := d.PublicBaseURL + ForwardedForPath
	client := d.HTTP
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return warn(check, "not checked: %s is not a URL (%v): fix PUBLIC_BASE_URL", target, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return warn(check, "not checked: GET %s failed (%v): run doctor again once the service runs there", target, err)
	}
	defer resp.Body.Close()
	var answer struct {
		ForwardedFor string `json:"forwarded_for"`
		Error        string `json:"error"`
	}
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&answer)
	switch {
	case resp.StatusCode != http.StatusOK && answer.Error != "":
		return warn(check, "not checked: %s answered %d: %s", target, resp.StatusCode, logging.Truncate(answer.Error, 300))
	case resp.StatusCode == http.StatusNotFound:
		return warn(check, "not checked: %s answered 404: is PUBLIC_BASE_URL this service, and of this version?", target)
	case resp.StatusCode != http.StatusOK:
		return warn(check, "not checked: %s answered %d: is this service running there?", target, resp.StatusCode)
	case decodeErr != nil:
		return warn(check, "not checked: %s did not answer as this service does (%v): is PUBLIC_BASE_URL this service?", target, decodeErr)
	}
	switch answer.ForwardedFor {
	case "untrusted":
		return warn(check, "requests through %s reach the service with X-Forwarded-For from a peer not in TRUSTED_PROXIES, so it is ignored: every buyer counts as that proxy and all share one client's rate limits; add the proxy's address or subnet to TRUSTED_PROXIES (the service's log names it: \"X-Forwarded-For from a peer not in TRUSTED_PROXIES\")",
			d.PublicBaseURL)
	case "trusted":
		return pass(check, "the proxy in front of %s is in TRUSTED_PROXIES: buyers are told apart by X-Forwarded-For", d.PublicBaseURL)
	case "absent":
		return pass(check, "requests through %s carry no X-Forwarded-For: buyers are counted by their own TCP address (a proxy in front that does not add X-Forwarded-For would make them all one: have it add the header)", d.PublicBaseURL)
	}
	return warn(check, "not checked: %s does not say how X-Forwarded-For is taken: is the service there older than this doctor?", target)
}

// ---- Stock ----

// stock reports, per price the catalog stocks, its ready keys against the
// catalog's stock: N. Below half, sales outrun the refill (or the refill
// is stuck), and buyers soon wait for keys made to order.
func (d *Doctor) stock(ctx context.Context) []Result {
	if d.Catalog == nil {
		return nil
	}
	var out []Result
	for _, id := range d.Catalog.Stocked() {
		check := "stock " + id
		if r, skip := d.unchecked(check, "DATABASE_URL"); skip {
			out = append(out, r)
			continue
		}
		product, _ := d.Catalog.Lookup(id)
		// What its buyers can be sold: keys of its current project and
		// key_days, whichever price made them.
		ready, pending, err := postgres.SellableStock(ctx, d.Pool, product.ProjectID, product.KeyDays)
		var day postgres.StockActivity
		if err == nil {
			day, err = postgres.StockActivitySince(ctx, d.Pool, id, time.Now().Add(-24*time.Hour))
		}
		activity := fmt.Sprintf("; last 24 h: %d sold from stock, %d made to order, %d refilled", day.Sold, day.MadeToOrder, day.Refilled)
		switch {
		case err != nil:
			out = append(out, fail(check, "%v: check the database check above", err))
		case ready*2 < product.Stock:
			out = append(out, warn(check, "%d of %d keys ready (%d being made)%s: below half; the refill_stock job makes them from spare Luarmor budget, so check its jobs and the budget if it stays low",
				ready, product.Stock, pending, activity))
		default:
			out = append(out, pass(check, "%d of %d keys ready (%d being made)%s", ready, product.Stock, pending, activity))
		}
	}
	return out
}
