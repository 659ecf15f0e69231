package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"fulfiller/internal/discord"
)

// Bounds of DISCORD_CLIENT_SECRET: Discord's secrets have 32 characters.
const (
	minDiscordSecretLength = 16
	maxDiscordSecretLength = 128
)

// discord reads the verified Discord link: off with none of
// DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET and DISCORD_REDIRECT_URL, and
// then all three are needed. DISCORD_BASE_URL points the flow at another
// Discord (a stand-in). The secret is never part of an error.
func (c *Config) discord(get func(name, def string) string, errs *Errors) {
	id, secret, redirect := get("DISCORD_CLIENT_ID", ""), get("DISCORD_CLIENT_SECRET", ""), get("DISCORD_REDIRECT_URL", "")
	var problems Errors
	base := strings.TrimRight(get("DISCORD_BASE_URL", discord.DefaultBaseURL), "/")
	if !secureURL(base, false) {
		problems.add(&Error{"DISCORD_BASE_URL", fmt.Sprintf("%q must be an https URL without credentials, query or fragment (http only for localhost), like %s; it is set only to point at a stand-in",
			base, discord.DefaultBaseURL)})
	}
	if id != "" || secret != "" || redirect != "" {
		const off = " (unset DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET and DISCORD_REDIRECT_URL to turn the Discord link off)"
		switch {
		case id == "":
			problems.add(&Error{"DISCORD_CLIENT_ID", "is required with DISCORD_CLIENT_SECRET and DISCORD_REDIRECT_URL" + off})
		case !discord.IDPattern.MatchString(id):
			problems.add(&Error{"DISCORD_CLIENT_ID", fmt.Sprintf("%q is not an application ID: copy the Client ID (17 to 20 digits) from the OAuth2 page of the Discord developer portal", id)})
		}
		switch n := len(secret); {
		case secret == "":
			problems.add(&Error{"DISCORD_CLIENT_SECRET", "is required with DISCORD_CLIENT_ID and DISCORD_REDIRECT_URL" + off})
		case n < minDiscordSecretLength || n > maxDiscordSecretLength || strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' }):
			problems.add(&Error{"DISCORD_CLIENT_SECRET", fmt.Sprintf("has %d characters; it must be %d to %d printable characters without spaces: copy the Client Secret from the OAuth2 page of the Discord developer portal",
				n, minDiscordSecretLength, maxDiscordSecretLength)})
		}
		switch {
		case redirect == "":
			problems.add(&Error{"DISCORD_REDIRECT_URL", "is required with DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET" + off})
		case !secureURL(redirect, true):
			problems.add(&Error{"DISCORD_REDIRECT_URL", fmt.Sprintf("%q must be this service's public address with the path %s, https (http only for localhost), without query or fragment, like https://keys.shop.example%s; list it as a redirect on the OAuth2 page of the Discord developer portal",
				redirect, discord.CallbackPath, discord.CallbackPath)})
		}
	}
	if len(problems) > 0 {
		*errs = append(*errs, problems...)
		return
	}
	if id != "" {
		c.Discord = discord.Settings{ClientID: id, ClientSecret: secret, RedirectURL: redirect, BaseURL: base}
	}
}

// secureURL reports whether raw is an absolute https URL (http only for
// this machine) without credentials, query or fragment; a callback's path
// must be discord.CallbackPath.
func secureURL(raw string, callback bool) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	if callback && u.Path != discord.CallbackPath {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		return strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback())
	}
	return false
}
