package config_test

import (
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/order"
)

const (
	secretOld = "whsec_old0123456789abcdef0123456789abcdef"
	secretNew = "whsec_new0123456789abcdef0123456789abcdef"
)

func env(overrides map[string]string) func(string) string {
	base := map[string]string{
		"DATABASE_URL":          "postgres://u@localhost:5432/db",
		"STRIPE_WEBHOOK_SECRET": secretOld + ", " + secretNew,
		"STRIPE_API_KEY":        "sk_test_abc",
		"LUARMOR_API_KEY":       "lua-secret",
	}
	for k, v := range overrides {
		base[k] = v
	}
	return func(k string) string { return base[k] }
}

func TestDefaultsAndSecretList(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, ":8080", c.ListenAddr)
	require.Equal(t, []string{secretOld, secretNew}, c.WebhookSecrets)
	require.Equal(t, "https://api.luarmor.net", c.LuarmorBaseURL)
	require.Equal(t, "catalog.yaml", c.CatalogFile)
	require.Empty(t, c.StripeAPIBase)
	require.Equal(t, 60, c.LuarmorRateLimit)
	require.Equal(t, time.Minute, c.LuarmorRateWindow)

	c, err = config.FromEnv(env(map[string]string{"LUARMOR_RATE_LIMIT": "30/30s"}))
	require.NoError(t, err)
	require.Equal(t, 30, c.LuarmorRateLimit)
	require.Equal(t, 30*time.Second, c.LuarmorRateWindow)
}

func TestLifecyclePolicy(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.Policy.RenewalGrace)
	require.Equal(t, "Payment disputed", c.Policy.DisputeBanReason)
	require.True(t, c.Policy.UnbanWhenDisputeWon)
	require.Equal(t, order.ActionBlacklist, c.Policy.RefundAction)
	require.False(t, c.Policy.SuspendWhenPastDue)

	c, err = config.FromEnv(env(map[string]string{"RENEWAL_GRACE": "2h", "DISPUTE_WON_ACTION": "keep",
		"REFUND_ACTION": "delete", "DISPUTE_BAN_REASON": "Chargeback", "PAST_DUE_ACTION": "suspend"}))
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, c.Policy.RenewalGrace)
	require.False(t, c.Policy.UnbanWhenDisputeWon)
	require.Equal(t, order.ActionDelete, c.Policy.RefundAction)
	require.Equal(t, "Chargeback", c.Policy.DisputeBanReason)
	require.True(t, c.Policy.SuspendWhenPastDue)
}

func TestDisputeAndRefundSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.False(t, c.Policy.SuspendOnInquiry)
	require.Equal(t, 100, c.Policy.RefundRevokePercent)
	require.False(t, c.Policy.RevokeOnEarlyFraudWarning)
	require.True(t, c.Policy.CancelSubscriptionOnRevoke, "a banned subscriber is never charged again")

	c, err = config.FromEnv(env(map[string]string{"DISPUTE_INQUIRY_ACTION": "suspend", "REFUND_REVOKE_PERCENT": "50",
		"EARLY_FRAUD_WARNING_ACTION": "revoke", "CANCEL_SUBSCRIPTION_ON_REVOKE": "true"}))
	require.NoError(t, err)
	require.True(t, c.Policy.SuspendOnInquiry)
	require.Equal(t, 50, c.Policy.RefundRevokePercent)
	require.True(t, c.Policy.RevokeOnEarlyFraudWarning)
	require.True(t, c.Policy.CancelSubscriptionOnRevoke)

	_, err = config.FromEnv(env(map[string]string{"CANCEL_SUBSCRIPTION_ON_REVOKE": "1"}))
	require.ErrorContains(t, err, "allowed to write subscriptions")
}

func TestEachBadSettingIsNamedWithoutItsValue(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		key, value string
	}{
		"missing database":   {"DATABASE_URL", ""},
		"bad database":       {"DATABASE_URL", "postgres://u:pw@host:notaport/db"},
		"bad listen":         {"LISTEN_ADDR", "8080"},
		"missing secret":     {"STRIPE_WEBHOOK_SECRET", " , "},
		"bad secret":         {"STRIPE_WEBHOOK_SECRET", secretNew + ",oops-secret-value"},
		"missing stripe key": {"STRIPE_API_KEY", ""},
		"bad stripe key":     {"STRIPE_API_KEY", "pk_test_publishable"},
		"bad stripe base":    {"STRIPE_API_BASE", "localhost:12111"},
		"missing luarmor":    {"LUARMOR_API_KEY", ""},
		"bad luarmor url":    {"LUARMOR_BASE_URL", "ftp://x"},
		"rate without slash": {"LUARMOR_RATE_LIMIT", "60"},
		"rate zero count":    {"LUARMOR_RATE_LIMIT", "0/1m"},
		"rate bad duration":  {"LUARMOR_RATE_LIMIT", "60/minute"},
		"bad grace":          {"RENEWAL_GRACE", "one day"},
		"bad won action":     {"DISPUTE_WON_ACTION", "maybe"},
		"bad refund action":  {"REFUND_ACTION", "ban"},
		"bad past due":       {"PAST_DUE_ACTION", "blacklist"},
		"bad inquiry action": {"DISPUTE_INQUIRY_ACTION", "ban"},
		"refund percent 0":   {"REFUND_REVOKE_PERCENT", "0"},
		"refund percent 101": {"REFUND_REVOKE_PERCENT", "101"},
		"bad efw action":     {"EARLY_FRAUD_WARNING_ACTION", "blacklist"},
		"bad cancel setting": {"CANCEL_SUBSCRIPTION_ON_REVOKE", "yes"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.FromEnv(env(map[string]string{tc.key: tc.value}))
			require.Error(t, err)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.key, ce.Name)
			require.NotContains(t, err.Error(), "oops-secret-value")
			require.NotContains(t, err.Error(), "pk_test_publishable")
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestEveryBadSettingIsNamedInOneRun(t *testing.T) {
	t.Parallel()
	// Three required settings missing and one out of bounds: one run names
	// all four, each with what to do, instead of one per run.
	_, err := config.FromEnv(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://u@localhost:5432/db", "MAX_UNITS_PER_ORDER": "0"}[k]
	})
	var all config.Errors
	require.ErrorAs(t, err, &all)
	names := make([]string, 0, len(all))
	for _, e := range all {
		names = append(names, e.Name)
	}
	require.Equal(t, []string{"STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "LUARMOR_API_KEY", "MAX_UNITS_PER_ORDER"}, names)
	require.True(t, all.Has("MAX_UNITS_PER_ORDER"))
	require.False(t, all.Has("DATABASE_URL"))
	require.Equal(t, "config: 4 settings need fixing:\n"+
		"  STRIPE_WEBHOOK_SECRET is required (the webhook endpoint's signing secret, whsec_...; comma-separate several during a roll)\n"+
		"  STRIPE_API_KEY is required (a secret or restricted key, sk_... or rk_..., that can read Checkout Sessions)\n"+
		"  LUARMOR_API_KEY is required (Luarmor dashboard, API section)\n"+
		"  MAX_UNITS_PER_ORDER \"0\" must be a whole number from 1 to 10000", err.Error())

	// A single *Error target still finds the first one.
	var first *config.Error
	require.ErrorAs(t, err, &first)
	require.Equal(t, "STRIPE_WEBHOOK_SECRET", first.Name)

	// Problems of one group are listed together, not the first alone.
	const password = "TopSecretSMTP"
	_, err = config.FromEnv(env(map[string]string{
		"SMTP_URL": "smtp://u:" + password + "@mail.example:0", "MAIL_FROM": "not an address",
		"TRUSTED_PROXIES": "0.0.0.0/0", "ALLOWED_ORIGINS": "shop.example",
		"RECONCILE_INTERVAL": "1s", "REFUND_ACTION": "ban", "LOG_FORMAT": "xml",
	}))
	require.ErrorAs(t, err, &all)
	names = names[:0]
	for _, e := range all {
		names = append(names, e.Name)
	}
	require.Equal(t, []string{"LOG_FORMAT", "REFUND_ACTION", "RECONCILE_INTERVAL", "SMTP_URL", "MAIL_FROM", "PUBLIC_BASE_URL",
		"TRUSTED_PROXIES", "ALLOWED_ORIGINS"}, names)
	require.NotContains(t, err.Error(), password)
}

func TestMailSettings(t *testing.T) {
	base := map[string]string{
		"DATABASE_URL": "postgres://localhost/db", "STRIPE_WEBHOOK_SECRET": secretNew,
		"STRIPE_API_KEY": "sk_test_x", "LUARMOR_API_KEY": "k",
	}
	load := func(extra map[string]string) (config.Config, error) {
		env := maps.Clone(base)
		maps.Copy(env, extra)
		return config.FromEnv(func(k string) string { return env[k] })
	}

	c, err := load(nil)
	require.NoError(t, err)
	require.False(t, c.Mail.Enabled(), "mail is off without SMTP_URL and MAIL_FROM")

	c, err = load(map[string]string{"SMTP_URL": "smtps://u:pw@mail.example", "MAIL_FROM": "keys@shop.example", "PUBLIC_BASE_URL": "https://shop.example/"})
	require.NoError(t, err)
	require.True(t, c.Mail.Enabled())
	require.Equal(t, "https://shop.example", c.Mail.PublicBaseURL)
	require.Equal(t, "pw", c.Mail.SMTP.Password)

	const secret = "TopSecretSMTP"
	for name, extra := range map[string]map[string]string{
		"SMTP_URL":        {"MAIL_FROM": "keys@shop.example"},
		"MAIL_FROM":       {"SMTP_URL": "smtp://u:" + secret + "@mail.example"},
		"PUBLIC_BASE_URL": {"SMTP_URL": "smtp://u:" + secret + "@mail.example", "MAIL_FROM": "keys@shop.example"},
	} {
		_, err := load(extra)
		require.ErrorContains(t, err, name)
		require.NotContains(t, err.Error(), secret)
	}
	_, err = load(map[string]string{"SMTP_URL": "smtp://u:" + secret + "@mail.example:0", "MAIL_FROM": "keys@shop.example", "PUBLIC_BASE_URL": "https://shop.example"})
	require.ErrorContains(t, err, "SMTP_URL")
	require.NotContains(t, err.Error(), secret)
}

// TestInternalListener: ADMIN_ADDR is loopback by default, accepts its
// former name METRICS_ADDR, and never shares the public listener's port.
func TestInternalListener(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9090", c.AdminAddr, "loopback by default, never the public listener")

	for _, name := range []string{"ADMIN_ADDR", "METRICS_ADDR"} {
		c, err = config.FromEnv(env(map[string]string{name: "off"}))
		require.NoError(t, err)
		require.Empty(t, c.AdminAddr, "off disables it")

		c, err = config.FromEnv(env(map[string]string{name: ":9100"}))
		require.NoError(t, err)
		require.Equal(t, ":9100", c.AdminAddr)
	}
	c, err = config.FromEnv(env(map[string]string{"ADMIN_ADDR": ":9100", "METRICS_ADDR": ":9100"}))
	require.NoError(t, err, "both names agreeing is fine during a rename")
	require.Equal(t, ":9100", c.AdminAddr)

	c, err = config.FromEnv(env(map[string]string{"ADMIN_ADDR": "127.0.0.1:0", "LISTEN_ADDR": "127.0.0.1:0"}))
	require.NoError(t, err, "two ephemeral ports never collide")
	require.Equal(t, "127.0.0.1:0", c.AdminAddr)

	for _, tc := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"ADMIN_ADDR": "9090"}, "ADMIN_ADDR"},
		{map[string]string{"ADMIN_ADDR": "localhost"}, "ADMIN_ADDR"},
		{map[string]string{"ADMIN_ADDR": "127.0.0.1:"}, "ADMIN_ADDR"},
		{map[string]string{"ADMIN_ADDR": "Off"}, "ADMIN_ADDR"},
		{map[string]string{"ADMIN_ADDR": "127.0.0.1:8080"}, "ADMIN_ADDR"},                            // LISTEN_ADDR's default port
		{map[string]string{"METRICS_ADDR": "10.0.0.1:9000", "LISTEN_ADDR": ":9000"}, "METRICS_ADDR"}, // same port, other host
		{map[string]string{"ADMIN_ADDR": ":9100", "METRICS_ADDR": ":9200"}, "ADMIN_ADDR"},
	} {
		_, err := config.FromEnv(env(tc.env))
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, tc.env)
		require.Equal(t, tc.name, cerr.Name, tc.env)
	}
}

func TestTrustedProxiesRefusesPrefixesThatTrustEveryClient(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31", "::ffff:0.0.0.0/96", "10.0.0.0/8,0.0.0.0/0"} {
		_, err := config.FromEnv(env(map[string]string{"TRUSTED_PROXIES": v}))
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, "TRUSTED_PROXIES=%q", v)
		require.Equal(t, "TRUSTED_PROXIES", cerr.Name)
		require.Contains(t, cerr.Reason, "trusts too many peers", "says why")
		require.Contains(t, cerr.Reason, "list only the load balancers", "says what to write instead")
	}

	c, err := config.FromEnv(env(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32, ::ffff:192.168.0.0/112"}))
	require.NoError(t, err, "the widest accepted prefixes")
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("192.168.0.0/16")}, c.TrustedProxies, "an IPv4-mapped prefix is compared as the IPv4 prefix it means")
}

func TestHardenedDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, config.DefaultMaxConnections, c.MaxConnections)
	require.Equal(t, config.DefaultMaxConnectionsPerClient, c.MaxConnectionsPerClient)
	require.Equal(t, config.LogSettings{Level: slog.LevelInfo, Format: "json"}, c.Log)
	require.Empty(t, c.AdminUser, "the River UI is off unless ADMIN_USER and ADMIN_PASSWORD are set")
	require.Empty(t, c.ShopAPIToken)

	c, err = config.FromEnv(env(map[string]string{"MAX_CONNECTIONS": "16", "MAX_CONNECTIONS_PER_CLIENT": "8", "LOG_LEVEL": "WARN", "LOG_FORMAT": "text",
		"ADMIN_USER": "ops", "ADMIN_PASSWORD": "kX9-vQ2#mT7pLz4w", "SHOP_API_TOKEN": strings.Repeat("t", 32),
		"LUARMOR_RATE_LIMIT": "10000/1h", "RENEWAL_GRACE": "720h"}))
	require.NoError(t, err)
	require.Equal(t, 16, c.MaxConnections)
	require.Equal(t, 8, c.MaxConnectionsPerClient)
	require.Equal(t, config.LogSettings{Level: slog.LevelWarn, Format: "text"}, c.Log)
	require.Equal(t, "ops", c.AdminUser)
	require.Equal(t, 10000, c.LuarmorRateLimit)
	require.Equal(t, time.Hour, c.LuarmorRateWindow)
	require.Equal(t, 720*time.Hour, c.Policy.RenewalGrace)
}

// TestRefusalsNameTheSettingAndItsBounds: each value out of bounds stops
// start-up with the setting's name and what it accepts, and never the
// value of a secret.
func TestRefusalsNameTheSettingAndItsBounds(t *testing.T) {
	t.Parallel()
	const secretValue = "sekrit" // part of every secret below
	for name, tc := range map[string]struct {
		key, value, says string
	}{
		"short webhook secret":   {"STRIPE_WEBHOOK_SECRET", "whsec_" + secretValue + "0123456789abcdef", "fewer than the 32"},
		"one short in a roll":    {"STRIPE_WEBHOOK_SECRET", secretNew + ",whsec_" + secretValue, "entry 2 has 6 characters"},
		"public dev secret":      {"STRIPE_WEBHOOK_SECRET", config.PublicDevWebhookSecret, "public development secret"},
		"short shop token":       {"SHOP_API_TOKEN", secretValue + "-is-31-characters-long-01", "has 31 characters, fewer than 32"},
		"admin without password": {"ADMIN_USER", "ops", "required with ADMIN_USER"},
		"short admin password":   {"ADMIN_PASSWORD", secretValue, "fewer than 16"},
		"repetitive password":    {"ADMIN_PASSWORD", secretValue + "abab" + secretValue + "abab", "different characters"},
		"keyboard password":      {"ADMIN_PASSWORD", secretValue + "-Qwerty-19-" + secretValue, `contains "qwerty"`},
		"password names user":    {"ADMIN_PASSWORD", secretValue + "-ops-7Hq2!xZ" + secretValue, "contains ADMIN_USER"},
		"short admin token":      {"ADMIN_API_TOKEN", secretValue + "-is-31-characters-long-01", "has 31 characters, fewer than 32"},
		"admin token is shop's":  {"ADMIN_API_TOKEN", strings.Repeat(secretValue, 6), "equals SHOP_API_TOKEN"},
		"connections too few":    {"MAX_CONNECTIONS", "15", "from 16 to 100000"},
		"connections too many":   {"MAX_CONNECTIONS", "100001", "from 16 to 100000"},
		"per client too few":     {"MAX_CONNECTIONS_PER_CLIENT", "7", "from 8 to 100000"},
		"per client not a count": {"MAX_CONNECTIONS_PER_CLIENT", "64k", "from 8 to 100000"},
		"rate count too high":    {"LUARMOR_RATE_LIMIT", "10001/1m", "COUNT from 1 to 10000 per DURATION from 1s to 1h"},
		"rate window too short":  {"LUARMOR_RATE_LIMIT", "1/500ms", "DURATION from 1s to 1h"},
		"rate window too long":   {"LUARMOR_RATE_LIMIT", "60/2h", "DURATION from 1s to 1h"},
		"grace too long":         {"RENEWAL_GRACE", "721h", "from 0s to 720h"},
		"grace negative":         {"RENEWAL_GRACE", "-1h", "from 0s to 720h"},
		"ban reason too long":    {"DISPUTE_BAN_REASON", strings.Repeat("x", 201), "at most 200 characters"},
		"ban reason two lines":   {"DISPUTE_BAN_REASON", "a\nb", "one line"},
		"unknown log level":      {"LOG_LEVEL", "verbose", "debug, info, warn or error"},
		"unknown log format":     {"LOG_FORMAT", "logfmt", "json or text"},
		"shutdown too long":      {"SHUTDOWN_TIMEOUT", "11m", "from 1s to 10m0s"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			overrides := map[string]string{tc.key: tc.value}
			if tc.key == "ADMIN_PASSWORD" {
				overrides["ADMIN_USER"] = "ops"
			}
			if tc.key == "ADMIN_API_TOKEN" {
				overrides["SHOP_API_TOKEN"] = strings.Repeat(secretValue, 6)
			}
			_, err := config.FromEnv(env(overrides))
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			wantName := tc.key
			if tc.key == "ADMIN_USER" {
				wantName = "ADMIN_PASSWORD"
			}
			require.Equal(t, wantName, ce.Name)
			require.ErrorContains(t, err, tc.says)
			require.NotContains(t, err.Error(), secretValue)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestDevelopmentAcceptsThePublicSecret(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnvAcceptingDevSecret(env(map[string]string{"STRIPE_WEBHOOK_SECRET": config.PublicDevWebhookSecret}))
	require.NoError(t, err)
	require.Equal(t, []string{config.PublicDevWebhookSecret}, c.WebhookSecrets)
}

func TestLoggingIsReadOnItsOwn(t *testing.T) {
	t.Parallel()
	s, err := config.Logging(func(k string) string { return map[string]string{"LOG_LEVEL": "debug"}[k] })
	require.NoError(t, err)
	require.Equal(t, slog.LevelDebug, s.Level)
	require.Equal(t, "json", s.Format)
	_, err = config.Logging(func(k string) string { return map[string]string{"LOG_LEVEL": "info+2"}[k] })
	require.ErrorContains(t, err, "LOG_LEVEL")
}

func TestHWIDResetCooldown(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.HWIDResetCooldown, "a day by default")

	for value, want := range map[string]time.Duration{"1m": time.Minute, "90m": 90 * time.Minute, "720h": 720 * time.Hour} {
		c, err := config.FromEnv(env(map[string]string{"HWID_RESET_COOLDOWN": value}))
		require.NoError(t, err, value)
		require.Equal(t, want, c.HWIDResetCooldown, value)
	}
	for _, value := range []string{"59s", "721h", "0", "-1h", "a day", "24"} {
		_, err := config.FromEnv(env(map[string]string{"HWID_RESET_COOLDOWN": value}))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, value)
		require.Equal(t, "HWID_RESET_COOLDOWN", ce.Name)
		require.ErrorContains(t, err, "from 1m0s to 720h0m0s", value)
	}
}

func TestOrderAPISettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{
		"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,fd00::/32",
		"ALLOWED_ORIGINS": "https://shop.example.com, http://localhost:3000",
	}))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/32")}, c.TrustedProxies)
	require.Equal(t, []string{"https://shop.example.com", "http://localhost:3000"}, c.AllowedOrigins)

	c, err = config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Empty(t, c.TrustedProxies)
	require.Empty(t, c.AllowedOrigins)

	for name, values := range map[string][]string{
		"TRUSTED_PROXIES": {"10.0.0.0/33", "proxy.internal", "10.0.0.0/8;11.0.0.0/8"},
		"ALLOWED_ORIGINS": {"*", "shop.example.com", "https://shop.example.com/", "https://shop.example.com/page", "ftp://shop.example.com", "https://user@shop.example.com"},
	} {
		for _, v := range values {
			_, err := config.FromEnv(env(map[string]string{name: v}))
			var cerr *config.Error
			require.ErrorAs(t, err, &cerr, "%s=%q", name, v)
			require.Equal(t, name, cerr.Name)
		}
	}
}

func TestReconcileSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 10*time.Minute, c.ReconcileInterval)
	require.Equal(t, 72*time.Hour, c.ReconcileLookback)

	c, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "off", "RECONCILE_LOOKBACK": "30d"}))
	require.NoError(t, err)
	require.Zero(t, c.ReconcileInterval, "off disables it")
	require.Equal(t, 720*time.Hour, c.ReconcileLookback)

	c, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "24h", "RECONCILE_LOOKBACK": "1d"}))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.ReconcileInterval)

	for name, v := range map[string]string{
		"RECONCILE_INTERVAL": "59s", "RECONCILE_LOOKBACK": "59m",
	} {
		_, err := config.FromEnv(env(map[string]string{name: v}))
		require.ErrorContains(t, err, name, v)
	}
	for _, tc := range []struct{ name, value, reason string }{
		{"RECONCILE_INTERVAL", "25h", "from 1m to 24h, or off"},
		{"RECONCILE_INTERVAL", "0", "from 1m to 24h, or off"},
		{"RECONCILE_INTERVAL", "never", "from 1m to 24h, or off"},
		{"RECONCILE_LOOKBACK", "721h", "Stripe keeps events for 30 days"},
		{"RECONCILE_LOOKBACK", "31d", "Stripe keeps events for 30 days"},
		{"RECONCILE_LOOKBACK", "-72h", "from 1h to 720h"},
	} {
		_, err := config.FromEnv(env(map[string]string{tc.name: tc.value}))
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, tc.value)
		require.Equal(t, tc.name, cerr.Name, tc.value)
		require.Contains(t, cerr.Reason, tc.reason, tc.value)
	}
	// Runs further apart than they look back would leave gaps.
	_, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "12h", "RECONCILE_LOOKBACK": "6h"}))
	require.ErrorContains(t, err, "RECONCILE_LOOKBACK")
	require.ErrorContains(t, err, "shorter than RECONCILE_INTERVAL")
}

func TestParseDurationCountsDays(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"72h": 72 * time.Hour, "90m": 90 * time.Minute, "3d": 72 * time.Hour, "1d12h": 36 * time.Hour,
		"0d": 0, "-3d": -72 * time.Hour, "-2h": -2 * time.Hour, " 30d ": 720 * time.Hour,
	} {
		got, err := config.ParseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "3", "3days", "1.5d", "+-3d", "--3d", "3d-1h", "3d+1h", "1d1d", "99999999d", "65535d2562047h"} {
		_, err := config.ParseDuration(in)
		require.Error(t, err, in)
	}
}
