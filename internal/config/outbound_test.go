package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/outbound"
)

const outboundSecret = "0123456789abcdef0123456789abcdef"

func TestOutboundSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.False(t, c.Outbound.Enabled(), "nothing is sent unless the shop asks")

	c, err = config.FromEnv(env(map[string]string{
		"OUTBOUND_WEBHOOK_URL":    "https://shop.example/hooks/fulfiller, http://127.0.0.1:4000/hook",
		"OUTBOUND_WEBHOOK_SECRET": outboundSecret, "OUTBOUND_WEBHOOK_EVENTS": "order.fulfilled,key.revoked",
		"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/123/token-part",
	}))
	require.NoError(t, err)
	require.Equal(t, outbound.Settings{WebhookURLs: []string{"https://shop.example/hooks/fulfiller", "http://127.0.0.1:4000/hook"},
		Secret: outboundSecret, Events: []outbound.EventType{outbound.OrderFulfilled, outbound.KeyRevoked},
		DiscordURL: "https://discord.com/api/webhooks/123/token-part"}, c.Outbound)
}

// A bad setting stops start-up with one line naming it; Discord's URL,
// which holds its token, is never repeated.
func TestBadOutboundSettingsAreRefusedByName(t *testing.T) {
	t.Parallel()
	withURL := map[string]string{"OUTBOUND_WEBHOOK_URL": "https://shop.example/hook", "OUTBOUND_WEBHOOK_SECRET": outboundSecret}
	for _, tc := range []struct {
		env        map[string]string
		name, says string
	}{
		{map[string]string{"OUTBOUND_WEBHOOK_URL": "http://shop.example/hook", "OUTBOUND_WEBHOOK_SECRET": outboundSecret}, "OUTBOUND_WEBHOOK_URL", "https"},
		{map[string]string{"OUTBOUND_WEBHOOK_URL": "https://shop.example/hook?token=x", "OUTBOUND_WEBHOOK_SECRET": outboundSecret}, "OUTBOUND_WEBHOOK_URL", "query"},
		{map[string]string{"OUTBOUND_WEBHOOK_URL": "https://user:pw@shop.example/hook", "OUTBOUND_WEBHOOK_SECRET": outboundSecret}, "OUTBOUND_WEBHOOK_URL", "credentials"},
		{map[string]string{"OUTBOUND_WEBHOOK_URL": "https://shop.example/hook"}, "OUTBOUND_WEBHOOK_SECRET", "required"},
		{map[string]string{"OUTBOUND_WEBHOOK_URL": "https://shop.example/hook", "OUTBOUND_WEBHOOK_SECRET": "short"}, "OUTBOUND_WEBHOOK_SECRET", "at least 32"},
		{map[string]string{"OUTBOUND_WEBHOOK_SECRET": outboundSecret}, "OUTBOUND_WEBHOOK_SECRET", "without OUTBOUND_WEBHOOK_URL"},
		{merge(withURL, "OUTBOUND_WEBHOOK_EVENTS", "order.paid"), "OUTBOUND_WEBHOOK_EVENTS", "order.fulfilled"},
		{map[string]string{"DISCORD_WEBHOOK_URL": "http://discord.com/api/webhooks/1/secret-token"}, "DISCORD_WEBHOOK_URL", "https"},
	} {
		_, err := config.FromEnv(env(tc.env))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, "%v", tc.env)
		require.Equal(t, tc.name, ce.Name)
		require.Contains(t, err.Error(), tc.says)
		require.NotContains(t, err.Error(), "secret-token")
		require.NotContains(t, err.Error(), outboundSecret)
	}
}

func merge(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		out[mk] = mv
	}
	return out
}

// key.expiring falls back to the expiry notice's default window when the
// notice is off (MAIL_EXPIRY_NOTICE_DAYS=0): the two defaults are one.
func TestKeyExpiringDefaultsToTheExpiryNoticesDefault(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.Duration(config.DefaultExpiryNoticeDays)*24*time.Hour, outbound.DefaultExpiringWithin)
	var off outbound.Settings
	require.Equal(t, outbound.DefaultExpiringWithin, off.Expiring())
	require.Equal(t, 90*24*time.Hour, (&outbound.Settings{ExpiringWithin: 90 * 24 * time.Hour}).Expiring())
}
