package doctor_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/outbound"
)

const (
	outboundSecret = "0123456789abcdef0123456789abcdef"
	discordURL     = "https://discord.com/api/webhooks/123/discord-token-part"
)

// The events sent to the shop's own tools are checked as start-up reads
// their settings, without posting anything; a setting start-up refused is
// named, and Discord's URL, which holds its token, is never repeated.
func TestNotificationSettingsAreChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name     string
		settings outbound.Settings
		atFault  config.Errors
		check    string
		status   doctor.Status
		says     string
	}{
		{name: "off", check: "shop webhooks", status: doctor.Pass, says: "off: no event goes to the shop's backend"},
		{name: "discord off", check: "discord channel", status: doctor.Pass, says: "set DISCORD_WEBHOOK_URL"},
		{name: "configured", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hooks/fulfiller", "http://127.0.0.1:4000/hook"},
			Secret: outboundSecret, Events: []outbound.EventType{outbound.OrderFulfilled, outbound.KeyExpiring}},
			check: "shop webhooks", status: doctor.Pass, says: "order.fulfilled, key.expiring signed and sent to 2 endpoint(s) on shop.example, 127.0.0.1:4000"},
		{name: "every event", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hook"}, Secret: outboundSecret},
			check: "shop webhooks", status: doctor.Pass, says: "order.fulfilled, order.failed, key.revoked, key.reissued, key.expiring, subscription.ended signed"},
		{name: "plain http elsewhere", settings: outbound.Settings{WebhookURLs: []string{"http://shop.example/hook"}, Secret: outboundSecret},
			check: "shop webhooks", status: doctor.Fail, says: "must be https (http only for localhost)"},
		{name: "a token in the query", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hook?token=x"}, Secret: outboundSecret},
			check: "shop webhooks", status: doctor.Fail, says: "has a query"},
		{name: "no secret", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hook"}},
			check: "shop webhooks", status: doctor.Fail, says: "OUTBOUND_WEBHOOK_SECRET is not set"},
		{name: "short secret", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hook"}, Secret: "short"},
			check: "shop webhooks", status: doctor.Fail, says: "needs at least 32"},
		{name: "unknown event", settings: outbound.Settings{WebhookURLs: []string{"https://shop.example/hook"}, Secret: outboundSecret,
			Events: []outbound.EventType{"order.paid"}}, check: "shop webhooks", status: doctor.Fail, says: `names "order.paid"`},
		{name: "events without endpoint", settings: outbound.Settings{Events: []outbound.EventType{outbound.KeyRevoked}},
			check: "shop webhooks", status: doctor.Warn, says: "OUTBOUND_WEBHOOK_URL is not, so no event is sent"},
		{name: "refused at start-up", atFault: config.Errors{{Name: "OUTBOUND_WEBHOOK_EVENTS", Reason: `"order.paid" is not an event the service sends`}},
			check: "shop webhooks", status: doctor.Fail, says: "not checked: OUTBOUND_WEBHOOK_EVENTS needs fixing first"},
		{name: "discord", settings: outbound.Settings{DiscordURL: discordURL},
			check: "discord channel", status: doctor.Pass, says: "order.fulfilled, order.failed, key.revoked, stock.low posted"},
		{name: "discord over http", settings: outbound.Settings{DiscordURL: "http://discord.com/api/webhooks/1/discord-token-part"},
			check: "discord channel", status: doctor.Fail, says: "must be https"},
		{name: "not discord", settings: outbound.Settings{DiscordURL: "https://hooks.example/api/discord-token-part"},
			check: "discord channel", status: doctor.Warn, says: "(on hooks.example) is not a Discord channel webhook"},
		{name: "discord refused at start-up", atFault: config.Errors{{Name: "DISCORD_WEBHOOK_URL", Reason: "must be https"}},
			check: "discord channel", status: doctor.Fail, says: "not checked: DISCORD_WEBHOOK_URL needs fixing first"},
	} {
		b.doctor.Outbound, b.doctor.Settings = tc.settings, tc.atFault
		results := b.run(t)
		r := result(t, results, tc.check)
		require.Equal(t, tc.status, r.Status, "%s: %s", tc.name, r.Message)
		require.Contains(t, r.Message, tc.says, tc.name)
		for _, r := range results {
			require.NotContains(t, r.Message, "discord-token-part", "%s: Discord's token in %s", tc.name, r.Check)
			require.NotContains(t, r.Message, outboundSecret, tc.name)
		}
	}
}
