package config

import (
	"fmt"
	"slices"

	"fulfiller/internal/outbound"
)

// outbound reads the notifications sent to the shop's own tools:
// OUTBOUND_WEBHOOK_URL (comma-separated endpoints), OUTBOUND_WEBHOOK_SECRET
// (required with them), OUTBOUND_WEBHOOK_EVENTS (which events; all by
// default) and DISCORD_WEBHOOK_URL. Each is optional; a setting at fault
// turns its notifications off and is named in errs.
func (c *Config) outbound(get func(name, def string) string, errs *Errors) {
	var s outbound.Settings
	for _, v := range splitList(get("OUTBOUND_WEBHOOK_URL", "")) {
		u, err := outbound.ParseURL(v)
		if err == nil && u.RawQuery != "" {
			err = fmt.Errorf("has a query: endpoints are listed in the admin API and the signature authenticates the service, so no token belongs in the URL")
		}
		if err != nil {
			errs.add(&Error{"OUTBOUND_WEBHOOK_URL", fmt.Sprintf("%q %s", v, err)})
			s.WebhookURLs = nil
			break
		}
		if !slices.Contains(s.WebhookURLs, u.String()) {
			s.WebhookURLs = append(s.WebhookURLs, u.String())
		}
	}
	secret := get("OUTBOUND_WEBHOOK_SECRET", "")
	switch {
	case len(s.WebhookURLs) > 0 && secret == "":
		errs.add(&Error{"OUTBOUND_WEBHOOK_SECRET", "is required with OUTBOUND_WEBHOOK_URL: every webhook is signed with it (openssl rand -hex 32 makes one)"})
		s.WebhookURLs = nil
	case secret != "" && len(secret) < outbound.MinSecretLength:
		errs.add(&Error{"OUTBOUND_WEBHOOK_SECRET", fmt.Sprintf("has %d characters; it needs at least %d (openssl rand -hex 32 makes one)", len(secret), outbound.MinSecretLength)})
		s.WebhookURLs = nil
	case secret != "" && get("OUTBOUND_WEBHOOK_URL", "") == "":
		errs.add(&Error{"OUTBOUND_WEBHOOK_SECRET", "is set without OUTBOUND_WEBHOOK_URL: set the endpoint the events go to, or unset the secret"})
	}
	s.Secret = secret
	events, err := outbound.ParseEvents(get("OUTBOUND_WEBHOOK_EVENTS", ""))
	if err != nil {
		errs.add(&Error{"OUTBOUND_WEBHOOK_EVENTS", err.Error()})
		s.WebhookURLs = nil
	}
	s.Events = events
	if v := get("DISCORD_WEBHOOK_URL", ""); v != "" {
		// The URL holds Discord's token: an error never repeats it.
		if _, err := outbound.ParseURL(v); err != nil {
			errs.add(&Error{"DISCORD_WEBHOOK_URL", err.Error() + " (the channel's webhook URL from Discord's Integrations settings)"})
		} else {
			s.DiscordURL = v
		}
	}
	c.Outbound = s
}
