package doctor

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"fulfiller/internal/outbound"
)

// Events out: the settings of the webhooks to the shop's backend and of
// the Discord channel, checked as start-up reads them (outbound.ParseURL,
// outbound.ParseEvents), without posting anything: a test event would
// reach the shop's tools as a real one.

// notifications are the lines of the shop's webhooks and of its Discord
// channel.
func (d *Doctor) notifications() []Result {
	return []Result{d.shopWebhooks(), d.discordChannel()}
}

func (d *Doctor) shopWebhooks() Result {
	const check = "shop webhooks"
	if r, skip := d.unchecked(check, "OUTBOUND_WEBHOOK_URL", "OUTBOUND_WEBHOOK_SECRET", "OUTBOUND_WEBHOOK_EVENTS"); skip {
		return r
	}
	s := d.Outbound
	if len(s.WebhookURLs) == 0 {
		if len(s.Events) > 0 {
			return warn(check, "OUTBOUND_WEBHOOK_EVENTS is set but OUTBOUND_WEBHOOK_URL is not, so no event is sent: set the shop backend's endpoint (and OUTBOUND_WEBHOOK_SECRET), or unset OUTBOUND_WEBHOOK_EVENTS")
		}
		return pass(check, "off: no event goes to the shop's backend (set OUTBOUND_WEBHOOK_URL and OUTBOUND_WEBHOOK_SECRET to send them)")
	}
	var hosts []string
	for _, v := range s.WebhookURLs {
		u, err := outbound.ParseURL(v)
		if err == nil && u.RawQuery != "" {
			err = fmt.Errorf("has a query: the signature authenticates the service, so no token belongs in the URL")
		}
		if err != nil {
			return fail(check, "OUTBOUND_WEBHOOK_URL: an endpoint on %s %v: fix it", hostOf(v), err)
		}
		hosts = append(hosts, u.Host)
	}
	switch {
	case s.Secret == "":
		return fail(check, "OUTBOUND_WEBHOOK_SECRET is not set: every webhook is signed with it; set one (openssl rand -hex 32 makes one) and give it to the shop's backend")
	case len(s.Secret) < outbound.MinSecretLength:
		return fail(check, "OUTBOUND_WEBHOOK_SECRET has %d characters; it needs at least %d (openssl rand -hex 32 makes one)", len(s.Secret), outbound.MinSecretLength)
	}
	events := s.Events
	if len(events) == 0 {
		events = outbound.WebhookEvents
	}
	for _, e := range events {
		if !slices.Contains(outbound.WebhookEvents, e) {
			return fail(check, "OUTBOUND_WEBHOOK_EVENTS names %q, which is not an event the service sends: name some of %s, or all", e, eventNames(outbound.WebhookEvents))
		}
	}
	return pass(check, "%s signed and sent to %d endpoint(s) on %s; the delivery log shows each one", eventNames(events), len(hosts), strings.Join(hosts, ", "))
}

func (d *Doctor) discordChannel() Result {
	const check = "discord channel"
	if r, skip := d.unchecked(check, "DISCORD_WEBHOOK_URL"); skip {
		return r
	}
	if d.Outbound.DiscordURL == "" {
		return pass(check, "off: sales and problems are not posted to Discord (set DISCORD_WEBHOOK_URL to a channel's webhook to post them)")
	}
	// The URL holds Discord's token: no line repeats it.
	u, err := outbound.ParseURL(d.Outbound.DiscordURL)
	if err != nil {
		return fail(check, "DISCORD_WEBHOOK_URL %v (the channel's webhook URL from Discord's Integrations settings)", err)
	}
	host := strings.ToLower(u.Hostname())
	discordHost := host == "discord.com" || host == "discordapp.com" || strings.HasSuffix(host, ".discord.com")
	if !discordHost || !strings.HasPrefix(u.Path, "/api/webhooks/") {
		return warn(check, "DISCORD_WEBHOOK_URL (on %s) is not a Discord channel webhook (https://discord.com/api/webhooks/<id>/<token>): the messages are posted in Discord's format, which another receiver may refuse; copy the URL from the channel's Integrations settings", u.Host)
	}
	return pass(check, "%s posted to a Discord channel", eventNames(outbound.DiscordEvents))
}

// hostOf is v's host for a message, or "an unreadable URL".
func hostOf(v string) string {
	if u, err := url.Parse(v); err == nil && u.Host != "" {
		return u.Host
	}
	return "an unreadable URL"
}

func eventNames(events []outbound.EventType) string {
	names := make([]string, len(events))
	for i, e := range events {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}
