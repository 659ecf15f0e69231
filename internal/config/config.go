// Package config reads the service's settings from the environment. Every
// missing or malformed setting is reported at once (Errors), one line each
// naming it; no secret is ever part of an error or a log line.
package config

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/discord"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/retention"
	"fulfiller/internal/shop"
	"fulfiller/internal/stripeapi"
)

// Config is every setting of `fulfiller serve`.
type Config struct {
	DatabaseURL    string
	ListenAddr     string
	WebhookSecrets []string
	StripeAPIKey   string
	StripeAPIBase  string // "" = Stripe's own API
	LuarmorAPIKey  string
	LuarmorBaseURL string
	// LuarmorRateLimit and LuarmorRateWindow are the fleet-wide Luarmor
	// budget: at most LuarmorRateLimit requests in any LuarmorRateWindow.
	LuarmorRateLimit  int
	LuarmorRateWindow time.Duration
	// Policy is the key lifecycle after the sale: RENEWAL_GRACE,
	// DISPUTE_BAN_REASON, DISPUTE_WON_ACTION, REFUND_ACTION, PAST_DUE_ACTION.
	Policy      order.Policy
	CatalogFile string
	// ShopAPIToken lets a storefront read the shop's listings and nothing
	// else (SHOP_API_TOKEN); "" turns the listings off.
	ShopAPIToken string
	// AdminAPIToken is the bearer token of the admin API on the internal
	// listener (ADMIN_API_TOKEN); "" leaves it to the admin login.
	AdminAPIToken string
	// MaxUnitsPerOrder bounds the units (keys) of one order; an order
	// above it fails for an operator to decide (MAX_UNITS_PER_ORDER).
	MaxUnitsPerOrder int
	// ShutdownTimeout is how long a stopping process lets running jobs
	// finish before it cancels them (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ReconcileInterval is how often Stripe's events are compared with
	// the recorded ones (RECONCILE_INTERVAL); 0 means off.
	ReconcileInterval time.Duration
	// ReconcileLookback is how far back each comparison looks
	// (RECONCILE_LOOKBACK).
	ReconcileLookback time.Duration
	// Mail is keys by email (SMTP_URL, MAIL_FROM, PUBLIC_BASE_URL); the
	// zero value is off.
	Mail mail.Settings
	// PublicBaseURL is this service's public address (PUBLIC_BASE_URL),
	// without a trailing slash; "" when unset. Mail needs it; without mail
	// it still names the order page Stripe's customer portal returns to.
	PublicBaseURL string
	// BillingPortalReturnURL is where Stripe's customer portal sends a
	// buyer back (BILLING_PORTAL_RETURN_URL); "" is the buyer's order page.
	BillingPortalReturnURL string
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (TRUSTED_PROXIES); AllowedOrigins may read the order API from a
	// browser (ALLOWED_ORIGINS).
	TrustedProxies []netip.Prefix
	AllowedOrigins []string
	// HWIDResetCooldown is the least time between two self-service HWID
	// resets of one key (HWID_RESET_COOLDOWN).
	HWIDResetCooldown time.Duration
	// AdminAddr is the internal listener (ADMIN_ADDR, formerly
	// METRICS_ADDR): metrics, health probes, the River UI and the admin
	// API, apart from the public one; "" means off.
	AdminAddr string
	// MaxConnections caps the HTTP connections open at once
	// (MAX_CONNECTIONS); 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerClient caps those of one client, an IPv4 address
	// or IPv6 /64, TRUSTED_PROXIES excepted (MAX_CONNECTIONS_PER_CLIENT);
	// 0 means DefaultMaxConnectionsPerClient. Past either cap idle
	// keep-alive connections are closed to make room.
	MaxConnectionsPerClient int
	// AdminUser and AdminPassword are the admin login of the internal
	// listener's River UI and admin API, by HTTP basic auth (ADMIN_USER,
	// ADMIN_PASSWORD); unset means no login.
	AdminUser     string
	AdminPassword string
	// Log is LOG_LEVEL and LOG_FORMAT.
	Log LogSettings
	// Discord is the order page's verified Discord link (DISCORD_CLIENT_ID,
	// DISCORD_CLIENT_SECRET, DISCORD_REDIRECT_URL, DISCORD_BASE_URL); the
	// zero value is off.
	Discord discord.Settings
	// Shop is the shop as buyers see it (SHOP_NAME, SHOP_URL,
	// SHOP_SUPPORT, SHOP_LOGO_URL, SHOP_ACCENT_COLOR); zero means unnamed.
	Shop shop.Identity
	// Outbound is the events sent to the shop's own tools
	// (OUTBOUND_WEBHOOK_URL, OUTBOUND_WEBHOOK_SECRET,
	// OUTBOUND_WEBHOOK_EVENTS, DISCORD_WEBHOOK_URL); zero sends nothing.
	Outbound outbound.Settings
	// Retention is how long what may be pruned is kept
	// (RETENTION_EVENT_PAYLOAD_DAYS, RETENTION_DELIVERY_LOG_DAYS, RETENTION_CALL_LOG_DAYS).
	Retention retention.Settings
}

// Defaults of settings that tests and other commands build by hand.
const (
	DefaultMaxUnitsPerOrder = 100
	DefaultShutdownTimeout  = 30 * time.Second
)

// Bounds of the hardened settings.
const (
	DefaultMaxConnections = 1024
	// DefaultMaxConnectionsPerClient is ten times what a browser opens to
	// one host (six), so a household or office behind one address fits,
	// and sixteen clients are needed to fill DefaultMaxConnections.
	DefaultMaxConnectionsPerClient = 64
	// MinWebhookSecretLength is the least number of characters after
	// whsec_: Stripe's signing secrets have 32 or more.
	MinWebhookSecretLength = 32
	MinShopTokenLength     = 32
	MinAdminTokenLength    = 32
	MinAdminPasswordLength = 16
	MaxRenewalGrace        = 720 * time.Hour
	maxBanReasonLength     = 200
)

// PublicDevWebhookSecret is the webhook secret `fulfiller dev` signs local
// events with. It is in the repository, so anyone can sign an event with
// it: every command but dev refuses it.
const PublicDevWebhookSecret = "whsec_fulfiller_local_development_only_never_in_production" //nolint:gosec // G101: public on purpose, refused by every command but dev

// The keys `fulfiller dev` gives its local stand-ins, the Stripe stand-in
// and the Luarmor sandbox. They are public and open nothing else;
// `fulfiller doctor` takes a service configured with one of them, and
// answering as the stand-in, for that stand-in.
const (
	DevStripeAPIKey  = "sk_test_fulfiller_local"
	DevLuarmorAPIKey = "sandbox"
)

// DefaultHWIDResetCooldown is HWID_RESET_COOLDOWN's default.
const DefaultHWIDResetCooldown = order.DefaultHWIDResetCooldown

// Error names the setting at fault.
type Error struct {
	Name   string
	Reason string
}

func (e *Error) Error() string { return "config: " + e.Name + " " + e.Reason }

// Errors is every setting at fault, in the order they are read, so that
// one run names all of them instead of one per run. errors.As finds it,
// and each *Error in it (the first one for a single *Error target).
type Errors []*Error

// Error is the one line of a single setting at fault, or a line per
// setting under a count.
func (es Errors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "config: %d settings need fixing:", len(es))
	for _, e := range es {
		b.WriteString("\n  " + e.Name + " " + e.Reason)
	}
	return b.String()
}

// Unwrap lets errors.As and errors.Is reach each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Has reports whether the setting name is at fault.
func (es Errors) Has(name string) bool {
	for _, e := range es {
		if e.Name == name {
			return true
		}
	}
	return false
}

// add appends e, when there is one.
func (es *Errors) add(e *Error) {
	if e != nil {
		*es = append(*es, e)
	}
}

// err is es as an error: nil when empty.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// FromEnv reads the settings through getenv (os.Getenv in production).
// It refuses PublicDevWebhookSecret. The error, when there is one, is
// Errors: every setting at fault. The Config holds what could be read,
// the defaults in place of the settings at fault.
func FromEnv(getenv func(string) string) (Config, error) {
	c, errs := fromEnv(getenv)
	for _, s := range c.WebhookSecrets {
		if s == PublicDevWebhookSecret {
			errs.add(&Error{"STRIPE_WEBHOOK_SECRET", "is the public development secret of `fulfiller dev`, which anyone can sign events with: set the webhook endpoint's own signing secret"})
			break
		}
	}
	return c, errs.err()
}

// FromEnvAcceptingDevSecret is FromEnv without the refusal of
// PublicDevWebhookSecret: for `fulfiller dev`, which signs local events
// with it, and `fulfiller doctor`, which reports it as a failed check with
// the rest instead of stopping at it.
func FromEnvAcceptingDevSecret(getenv func(string) string) (Config, error) {
	c, errs := fromEnv(getenv)
	return c, errs.err()
}

func fromEnv(getenv func(string) string) (Config, Errors) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		DatabaseURL:    get("DATABASE_URL", ""),
		ListenAddr:     get("LISTEN_ADDR", ":8080"),
		StripeAPIKey:   get("STRIPE_API_KEY", ""),
		StripeAPIBase:  get("STRIPE_API_BASE", ""),
		LuarmorAPIKey:  get("LUARMOR_API_KEY", ""),
		LuarmorBaseURL: get("LUARMOR_BASE_URL", "https://api.luarmor.net"),
		CatalogFile:    get("CATALOG_FILE", "catalog.yaml"),
		ShopAPIToken:   get("SHOP_API_TOKEN", ""),
		AdminAPIToken:  get("ADMIN_API_TOKEN", ""),
	}
	for _, s := range strings.Split(getenv("STRIPE_WEBHOOK_SECRET"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.WebhookSecrets = append(c.WebhookSecrets, s)
		}
	}
	errs := c.validate()
	c.Log, errs = logging(getenv, errs)
	count, window, err := ParseRate(get("LUARMOR_RATE_LIMIT", "60/1m"))
	if err == nil && (count > 10000 || window < time.Second || window > time.Hour) {
		err = fmt.Errorf("%q is out of bounds", get("LUARMOR_RATE_LIMIT", ""))
	}
	if err != nil {
		errs.add(&Error{"LUARMOR_RATE_LIMIT", err.Error() + ": COUNT from 1 to 10000 per DURATION from 1s to 1h, like 60/1m"})
		count, window = 60, time.Minute
	}
	c.LuarmorRateLimit, c.LuarmorRateWindow = count, window
	c.MaxConnections = intSetting(&errs, get("MAX_CONNECTIONS", ""), "MAX_CONNECTIONS", DefaultMaxConnections, 16, 100000)
	c.MaxConnectionsPerClient = intSetting(&errs, get("MAX_CONNECTIONS_PER_CLIENT", ""), "MAX_CONNECTIONS_PER_CLIENT", DefaultMaxConnectionsPerClient, 8, 100000)
	errs.add(c.admin(get))

	c.MaxUnitsPerOrder = intSetting(&errs, get("MAX_UNITS_PER_ORDER", ""), "MAX_UNITS_PER_ORDER", DefaultMaxUnitsPerOrder, 1, 10000)
	c.ShutdownTimeout = durationSetting(&errs, get("SHUTDOWN_TIMEOUT", ""), "SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Second, 10*time.Minute)
	c.HWIDResetCooldown = durationSetting(&errs, get("HWID_RESET_COOLDOWN", ""), "HWID_RESET_COOLDOWN", DefaultHWIDResetCooldown, time.Minute, 720*time.Hour)

	c.Policy = order.DefaultPolicy()
	if v := get("RENEWAL_GRACE", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxRenewalGrace {
			errs.add(&Error{"RENEWAL_GRACE", fmt.Sprintf("%q must be a duration from 0s to 720h, like 24h", v)})
		} else {
			c.Policy.RenewalGrace = d
		}
	}
	c.Policy.DisputeBanReason = get("DISPUTE_BAN_REASON", c.Policy.DisputeBanReason)
	if n := utf8.RuneCountInString(c.Policy.DisputeBanReason); n > maxBanReasonLength || strings.ContainsFunc(c.Policy.DisputeBanReason, unicode.IsControl) {
		errs.add(&Error{"DISPUTE_BAN_REASON", fmt.Sprintf("must be one line of at most %d characters (it has %d)", maxBanReasonLength, n)})
	}
	switch v := get("DISPUTE_WON_ACTION", "unban"); v {
	case "unban":
	case "keep":
		c.Policy.UnbanWhenDisputeWon = false
	default:
		errs.add(&Error{"DISPUTE_WON_ACTION", fmt.Sprintf("%q must be unban or keep", v)})
	}
	switch v := order.Action(get("REFUND_ACTION", string(order.ActionBlacklist))); v {
	case order.ActionBlacklist, order.ActionDelete, order.ActionNone:
		c.Policy.RefundAction = v
	default:
		errs.add(&Error{"REFUND_ACTION", fmt.Sprintf("%q must be blacklist, delete or none", v)})
	}
	switch v := get("PAST_DUE_ACTION", "keep"); v {
	case "keep":
	case "suspend":
		c.Policy.SuspendWhenPastDue = true
	default:
		errs.add(&Error{"PAST_DUE_ACTION", fmt.Sprintf("%q must be keep or suspend", v)})
	}
	c.Policy.PastDueKeepFor = durationSetting(&errs, get("PAST_DUE_KEEP_FOR", ""), "PAST_DUE_KEEP_FOR", order.DefaultPastDueKeepFor, time.Hour, 90*24*time.Hour)
	c.disputesAndRefunds(get, &errs)
	c.reconciliation(get, &errs)
	c.retention(get, &errs)
	c.publicBaseURL(get, &errs)
	c.mail(get, &errs)
	c.lifecycleMail(get, &errs)
	c.discord(get, &errs)
	c.orderAPI(get, &errs)
	errs.add(c.adminAddr(get))
	c.shop(get, &errs)
	c.outbound(get, &errs)
	return c, errs
}

// DefaultAdminAddr is ADMIN_ADDR's default: loopback only, since the
// internal listener shows the shop's sales and carries out support actions.
const DefaultAdminAddr = "127.0.0.1:9090"

// adminAddr reads ADMIN_ADDR (or METRICS_ADDR, its former name): host:port,
// or off. It must not be LISTEN_ADDR's port, where it would be public (or
// fail to bind).
func (c *Config) adminAddr(get func(name, def string) string) *Error {
	name, v := "ADMIN_ADDR", get("ADMIN_ADDR", "")
	if former := get("METRICS_ADDR", ""); former != "" {
		if v != "" && v != former {
			return &Error{"ADMIN_ADDR", fmt.Sprintf("is %q but METRICS_ADDR, its former name, is %q: unset METRICS_ADDR", v, former)}
		}
		name, v = "METRICS_ADDR", former
	}
	if v == "" {
		v = DefaultAdminAddr
	}
	if v == "off" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil || port == "" {
		return &Error{name, fmt.Sprintf("%q is not host:port (for example 127.0.0.1:9090) or off", v)}
	}
	if _, publicPort, _ := net.SplitHostPort(c.ListenAddr); port != "0" && port == publicPort {
		return &Error{name, fmt.Sprintf("%q uses the port of LISTEN_ADDR; the internal listener needs a port of its own", v)}
	}
	c.AdminAddr = v
	return nil
}

// orderAPI reads TRUSTED_PROXIES (comma-separated CIDRs or addresses) and
// ALLOWED_ORIGINS (comma-separated scheme://host[:port]).
func (c *Config) orderAPI(get func(name, def string) string, errs *Errors) {
	if e := c.trustedProxies(get("TRUSTED_PROXIES", "")); e != nil {
		errs.add(e)
		c.TrustedProxies = nil
	}
	for _, v := range splitList(get("ALLOWED_ORIGINS", "")) {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			errs.add(&Error{"ALLOWED_ORIGINS", fmt.Sprintf("%q is not an origin like https://shop.example.com (scheme and host, no path)", v)})
			c.AllowedOrigins = nil
			return
		}
		c.AllowedOrigins = append(c.AllowedOrigins, v)
	}
}

// trustedProxies reads TRUSTED_PROXIES into c.TrustedProxies.
func (c *Config) trustedProxies(list string) *Error {
	for _, v := range splitList(list) {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return &Error{"TRUSTED_PROXIES", fmt.Sprintf("%q is not a CIDR like 10.0.0.0/8 or an address", v)}
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		p = unmapPrefix(p)
		if min := minTrustedProxyBits(p); p.Bits() < min {
			return &Error{"TRUSTED_PROXIES", fmt.Sprintf("%q trusts too many peers (a /%d): every client inside it may write its own X-Forwarded-For and pick the address the rate limits count; list only the load balancers in front of this service, by address or by a subnet of /%d or narrower (for example 10.0.0.0/8 or 192.168.1.7)",
				v, p.Bits(), min)}
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	return nil
}

// minTrustedProxyBits is the widest prefix TRUSTED_PROXIES accepts: an
// IPv4 /8 (a whole private range like 10.0.0.0/8) or an IPv6 /32 (a whole
// provider allocation). Anything wider trusts more of the Internet than any
// load balancer fleet occupies, and /0 trusts every client.
func minTrustedProxyBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 8
	}
	return 32
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into
// the IPv4 prefix it means: clients are compared unmapped, so a mapped
// prefix would trust nobody, or, at /96 and wider, every IPv4 client.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// disputesAndRefunds reads DISPUTE_INQUIRY_ACTION, REFUND_REVOKE_PERCENT,
// EARLY_FRAUD_WARNING_ACTION and CANCEL_SUBSCRIPTION_ON_REVOKE.
func (c *Config) disputesAndRefunds(get func(name, def string) string, errs *Errors) {
	switch v := get("DISPUTE_INQUIRY_ACTION", "none"); v {
	case "none":
	case "suspend":
		c.Policy.SuspendOnInquiry = true
	default:
		errs.add(&Error{"DISPUTE_INQUIRY_ACTION", fmt.Sprintf("%q must be none or suspend", v)})
	}
	c.Policy.RefundRevokePercent = intSetting(errs, get("REFUND_REVOKE_PERCENT", ""), "REFUND_REVOKE_PERCENT", 100, 1, 100)
	switch v := get("EARLY_FRAUD_WARNING_ACTION", "none"); v {
	case "none":
	case "revoke":
		c.Policy.RevokeOnEarlyFraudWarning = true
	default:
		errs.add(&Error{"EARLY_FRAUD_WARNING_ACTION", fmt.Sprintf("%q must be none or revoke", v)})
	}
	switch v := get("CANCEL_SUBSCRIPTION_ON_REVOKE", "true"); v {
	case "false":
		c.Policy.CancelSubscriptionOnRevoke = false
	case "true":
		c.Policy.CancelSubscriptionOnRevoke = true
	default:
		errs.add(&Error{"CANCEL_SUBSCRIPTION_ON_REVOKE", fmt.Sprintf(
			"%q must be true or false (true needs a STRIPE_API_KEY allowed to write subscriptions)", v)})
	}
}

// Defaults of RECONCILE_INTERVAL and RECONCILE_LOOKBACK.
const (
	defaultReconcileInterval = 10 * time.Minute
	defaultReconcileLookback = 72 * time.Hour
)

// reconciliation reads RECONCILE_INTERVAL and RECONCILE_LOOKBACK.
func (c *Config) reconciliation(get func(name, def string) string, errs *Errors) {
	c.ReconcileInterval = defaultReconcileInterval
	if v := get("RECONCILE_INTERVAL", "10m"); v == "off" {
		c.ReconcileInterval = 0
	} else if d, err := ParseDuration(v); err != nil || d < time.Minute || d > 24*time.Hour {
		errs.add(&Error{"RECONCILE_INTERVAL", fmt.Sprintf("%q must be a duration from 1m to 24h, or off", v)})
	} else {
		c.ReconcileInterval = d
	}
	c.ReconcileLookback = defaultReconcileLookback
	v := get("RECONCILE_LOOKBACK", "72h")
	d, err := ParseDuration(v)
	switch {
	case err != nil || d < time.Hour || d > stripeapi.EventRetention:
		errs.add(&Error{"RECONCILE_LOOKBACK", fmt.Sprintf("%q must be a duration from 1h to 720h (Stripe keeps events for 30 days)", v)})
	case d < c.ReconcileInterval:
		errs.add(&Error{"RECONCILE_LOOKBACK", fmt.Sprintf("%q is shorter than RECONCILE_INTERVAL: events created between two runs would never be looked at", v)})
	default:
		c.ReconcileLookback = d
	}
}

// ParseDuration reads a Go duration (72h, 90m) that may also count whole
// days (3d, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration like 72h or 3d", s)
	t := strings.TrimSpace(s)
	sign := time.Duration(1)
	if rest, ok := strings.CutPrefix(t, "-"); ok {
		sign, t = -1, rest
	}
	days, rest, ok := strings.Cut(t, "d")
	if !ok {
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, bad
		}
		return sign * d, nil
	}
	// Digits only (no second sign), at most 65535 days: within a
	// Duration's 292 years.
	n, err := strconv.ParseUint(days, 10, 16)
	if err != nil {
		return 0, bad
	}
	whole := time.Duration(n) * 24 * time.Hour
	var d time.Duration
	if rest != "" {
		d, err = time.ParseDuration(rest)
		if err != nil || d < 0 || strings.HasPrefix(rest, "+") || d > math.MaxInt64-whole {
			return 0, bad
		}
	}
	return sign * (whole + d), nil
}

func (c Config) validate() Errors {
	var errs Errors
	if c.DatabaseURL == "" {
		errs.add(&Error{"DATABASE_URL", "is required (postgres://user:password@host:5432/dbname)"})
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs.add(&Error{"DATABASE_URL", "is not a valid PostgreSQL connection string"})
	}
	if _, port, err := net.SplitHostPort(c.ListenAddr); err != nil || port == "" {
		errs.add(&Error{"LISTEN_ADDR", fmt.Sprintf("%q is not host:port (for example :8080)", c.ListenAddr)})
	}
	errs.add(webhookSecretsProblem(c.WebhookSecrets))
	if c.ShopAPIToken != "" && len(c.ShopAPIToken) < MinShopTokenLength {
		errs.add(&Error{"SHOP_API_TOKEN", fmt.Sprintf("has %d characters, fewer than %d: generate one with `openssl rand -hex 32`, or unset it to turn the shop endpoints off",
			len(c.ShopAPIToken), MinShopTokenLength)})
	}
	if c.AdminAPIToken != "" && len(c.AdminAPIToken) < MinAdminTokenLength {
		errs.add(&Error{"ADMIN_API_TOKEN", fmt.Sprintf("has %d characters, fewer than %d: generate one with `openssl rand -hex 32`, or unset it",
			len(c.AdminAPIToken), MinAdminTokenLength)})
	} else if c.AdminAPIToken != "" && c.AdminAPIToken == c.ShopAPIToken {
		errs.add(&Error{"ADMIN_API_TOKEN", "equals SHOP_API_TOKEN: the storefront's read-only token would carry out support actions; generate a token of its own with `openssl rand -hex 32`"})
	}
	if c.StripeAPIKey == "" {
		errs.add(&Error{"STRIPE_API_KEY", "is required (a secret or restricted key, sk_... or rk_..., that can read Checkout Sessions)"})
	} else if !strings.HasPrefix(c.StripeAPIKey, "sk_") && !strings.HasPrefix(c.StripeAPIKey, "rk_") {
		errs.add(&Error{"STRIPE_API_KEY", "must start with sk_ or rk_"})
	}
	if c.StripeAPIBase != "" {
		if err := checkURL(c.StripeAPIBase); err != nil {
			errs.add(&Error{"STRIPE_API_BASE", err.Error()})
		}
	}
	if c.LuarmorAPIKey == "" {
		errs.add(&Error{"LUARMOR_API_KEY", "is required (Luarmor dashboard, API section)"})
	}
	if err := checkURL(c.LuarmorBaseURL); err != nil {
		errs.add(&Error{"LUARMOR_BASE_URL", err.Error()})
	}
	return errs
}

// webhookSecretsProblem is what is wrong with STRIPE_WEBHOOK_SECRET's
// entries, or nil.
func webhookSecretsProblem(secrets []string) *Error {
	if len(secrets) == 0 {
		return &Error{"STRIPE_WEBHOOK_SECRET", "is required (the webhook endpoint's signing secret, whsec_...; comma-separate several during a roll)"}
	}
	for i, s := range secrets {
		rest, ok := strings.CutPrefix(s, "whsec_")
		if !ok {
			return &Error{"STRIPE_WEBHOOK_SECRET", fmt.Sprintf("entry %d does not start with whsec_", i+1)}
		}
		if len(rest) < MinWebhookSecretLength {
			return &Error{"STRIPE_WEBHOOK_SECRET", fmt.Sprintf("entry %d has %d characters after whsec_, fewer than the %d of a signing secret: copy the whole secret from the Stripe dashboard or `stripe listen`",
				i+1, len(rest), MinWebhookSecretLength)}
		}
	}
	return nil
}

// admin reads ADMIN_USER and ADMIN_PASSWORD: both or neither.
func (c *Config) admin(get func(name, def string) string) *Error {
	user, password := get("ADMIN_USER", ""), get("ADMIN_PASSWORD", "")
	switch {
	case user == "" && password == "":
		return nil
	case user == "":
		return &Error{"ADMIN_USER", "is required with ADMIN_PASSWORD (unset both to turn the River UI off)"}
	case password == "":
		return &Error{"ADMIN_PASSWORD", "is required with ADMIN_USER (unset both to turn the River UI off)"}
	case strings.Contains(user, ":") || len(user) > 64:
		return &Error{"ADMIN_USER", "must be at most 64 characters without a colon (HTTP basic auth)"}
	}
	if weakness := passwordWeakness(user, password); weakness != "" {
		return &Error{"ADMIN_PASSWORD", weakness + ": generate one with `openssl rand -base64 24`"}
	}
	c.AdminUser, c.AdminPassword = user, password
	return nil
}

// passwordWeakness says why password is too easy to guess for the admin
// login, or "" when it is not. The login guards support actions (bans,
// reissues) and the job queue, so the bar is a generated secret's, not a
// memorable word's: length, and enough different characters that it is not
// a word, a keyboard walk or one character repeated.
func passwordWeakness(user, password string) string {
	n := utf8.RuneCountInString(password)
	if n < MinAdminPasswordLength {
		return fmt.Sprintf("has %d characters, fewer than %d", n, MinAdminPasswordLength)
	}
	lower := strings.ToLower(password)
	if strings.Contains(lower, strings.ToLower(user)) {
		return "contains ADMIN_USER"
	}
	distinct := map[rune]int{}
	for _, r := range password {
		distinct[r]++
	}
	if len(distinct) < minAdminPasswordDistinct {
		return fmt.Sprintf("has only %d different characters, fewer than %d", len(distinct), minAdminPasswordDistinct)
	}
	for _, count := range distinct {
		if count*4 > n {
			return "repeats one character in over a quarter of its length"
		}
	}
	for _, word := range commonPasswordParts {
		if strings.Contains(lower, word) {
			return fmt.Sprintf("contains %q, among the first words a guesser tries", word)
		}
	}
	return ""
}

// minAdminPasswordDistinct: a generated 16-character secret has about 14.
const minAdminPasswordDistinct = 10

// commonPasswordParts head every guessing list.
var commonPasswordParts = []string{"password", "passw0rd", "admin", "qwerty", "123456", "abcdef", "letmein", "fulfiller", "luarmor", "changeme"}

// LogSettings are LOG_LEVEL and LOG_FORMAT.
type LogSettings struct {
	Level slog.Level
	// Format is "json" (the default) or "text".
	Format string
}

// Logging reads LOG_LEVEL (debug, info, warn or error; info by default)
// and LOG_FORMAT (json or text; json by default). Every command sets up
// its log with it before reading anything else. The error, when there is
// one, is Errors.
func Logging(getenv func(string) string) (LogSettings, error) {
	s, errs := logging(getenv, nil)
	return s, errs.err()
}

// logging is Logging, adding its problems to errs.
func logging(getenv func(string) string, errs Errors) (LogSettings, Errors) {
	s := LogSettings{Level: slog.LevelInfo, Format: "json"}
	switch v := strings.ToLower(strings.TrimSpace(getenv("LOG_LEVEL"))); v {
	case "", "info":
	case "debug":
		s.Level = slog.LevelDebug
	case "warn":
		s.Level = slog.LevelWarn
	case "error":
		s.Level = slog.LevelError
	default:
		errs.add(&Error{"LOG_LEVEL", fmt.Sprintf("%q must be debug, info, warn or error", v)})
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("LOG_FORMAT"))); v {
	case "", "json":
	case "text":
		s.Format = "text"
	default:
		errs.add(&Error{"LOG_FORMAT", fmt.Sprintf("%q must be json or text", v)})
	}
	return s, errs
}

// intSetting parses an integer setting within [lo, hi]; "" gives def, and
// so does a value out of bounds, which is added to errs.
func intSetting(errs *Errors, v, name string, def, lo, hi int) int {
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		errs.add(&Error{name, fmt.Sprintf("%q must be a whole number from %d to %d", v, lo, hi)})
		return def
	}
	return n
}

// durationSetting parses a duration setting within [lo, hi]; "" gives
// def, and so does a value out of bounds, which is added to errs.
func durationSetting(errs *Errors, v, name string, def, lo, hi time.Duration) time.Duration {
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		errs.add(&Error{name, fmt.Sprintf("%q must be a duration from %s to %s, like 30s", v, lo, hi)})
		return def
	}
	return d
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// ParseRate reads a budget written COUNT/DURATION, such as 60/1m or 30/30s.
func ParseRate(s string) (int, time.Duration, error) {
	c, d, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not COUNT/DURATION (for example 60/1m)", s)
	}
	count, err := strconv.Atoi(c)
	if err != nil || count <= 0 {
		return 0, 0, fmt.Errorf("%q: COUNT must be a positive integer", s)
	}
	window, err := time.ParseDuration(d)
	if err != nil || window <= 0 {
		return 0, 0, fmt.Errorf("%q: DURATION must be positive, like 1m or 30s", s)
	}
	return count, window, nil
}

// mail reads keys by email: off with neither SMTP_URL nor MAIL_FROM, and
// then both are needed, with PUBLIC_BASE_URL for the order page link. The
// SMTP password is never part of an error.
func (c *Config) mail(get func(name, def string) string, errs *Errors) {
	rawURL, rawFrom := get("SMTP_URL", ""), get("MAIL_FROM", "")
	if rawURL == "" && rawFrom == "" {
		return
	}
	var server mail.SMTPServer
	var from string
	var problems Errors
	if rawURL == "" {
		problems.add(&Error{"SMTP_URL", "is required with MAIL_FROM (unset both to turn keys by email off)"})
	} else if s, err := mail.ParseSMTPURL(rawURL); err != nil {
		problems.add(&Error{"SMTP_URL", err.Error()})
	} else {
		server = s
	}
	if rawFrom == "" {
		problems.add(&Error{"MAIL_FROM", "is required with SMTP_URL (unset both to turn keys by email off)"})
	} else if f, err := mail.ParseFrom(rawFrom); err != nil {
		problems.add(&Error{"MAIL_FROM", err.Error()})
	} else {
		from = f
	}
	if get("PUBLIC_BASE_URL", "") == "" {
		problems.add(&Error{"PUBLIC_BASE_URL", "is required with SMTP_URL: the keys email links to PUBLIC_BASE_URL/orders/{checkout_session_id}"})
	}
	if len(problems) > 0 || c.PublicBaseURL == "" { // a malformed PUBLIC_BASE_URL is publicBaseURL's to report
		*errs = append(*errs, problems...)
		return
	}
	c.Mail = mail.Settings{SMTP: server, From: from, PublicBaseURL: c.PublicBaseURL}
}

// publicBaseURL reads PUBLIC_BASE_URL, whether mail is on or not, and
// BILLING_PORTAL_RETURN_URL: an absolute https URL (http for this machine
// only, as PUBLIC_BASE_URL), with no credentials or fragment.
func (c *Config) publicBaseURL(get func(name, def string) string, errs *Errors) {
	if raw := get("PUBLIC_BASE_URL", ""); raw != "" {
		if base, err := mail.ParsePublicBaseURL(raw); err != nil {
			errs.add(&Error{"PUBLIC_BASE_URL", err.Error()})
		} else {
			c.PublicBaseURL = base
		}
	}
	raw := get("BILLING_PORTAL_RETURN_URL", "")
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "":
		errs.add(&Error{"BILLING_PORTAL_RETURN_URL", "must be an absolute https URL such as https://shop.example/account, without credentials or fragment (unset, the portal returns to the buyer's order page)"})
	case u.Scheme == "http" && !mail.IsLoopback(u.Hostname()):
		errs.add(&Error{"BILLING_PORTAL_RETURN_URL", "must be https (http only for localhost): Stripe sends buyers back there"})
	default:
		c.BillingPortalReturnURL = u.String()
	}
}
