package config_test

import (
	"maps"
	"net/netip"
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
