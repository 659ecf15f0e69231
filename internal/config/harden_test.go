package config_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

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
