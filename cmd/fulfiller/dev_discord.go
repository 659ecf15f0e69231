package main

import (
	"context"
	"fmt"
	"net"

	"fulfiller/internal/discord"
	"fulfiller/internal/discord/discordfake"
)

// The Discord stand-in of `fulfiller dev`: its application's credentials,
// public like the rest of dev's, and where it listens: any free port, as
// only the service needs its address (DEV_DISCORD_ADDR sets one).
const (
	devDiscordClientID     = "100000000000000001"
	devDiscordClientSecret = "fulfiller-dev-discord-secret-local-only" //nolint:gosec // G101: the dev stand-in's, public on purpose
	devDiscordAddr         = "127.0.0.1:0"
)

// startDevDiscord runs the Discord stand-in, unless DISCORD_CLIENT_ID is
// set (a real application), and sets in env what points the service's
// Discord link at it; it signs in at once as discordfake.DefaultUser. It
// returns what the banner says of it. The service's callback must be on this
// machine, since the stand-in redirects the browser there: with
// LISTEN_ADDR elsewhere the link stays off.
func startDevDiscord(ctx context.Context, get func(string) string, env map[string]string) (string, error) {
	if get("DISCORD_CLIENT_ID") != "" {
		return "real Discord (" + orDefault(get("DISCORD_BASE_URL"), discord.DefaultBaseURL) + ")", nil
	}
	public := browsable(get("LISTEN_ADDR"))
	host, _, _ := net.SplitHostPort(public)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "off (LISTEN_ADDR is not this machine; set DISCORD_* for a real application)", nil
	}
	l, err := net.Listen("tcp", orDefault(get("DEV_DISCORD_ADDR"), devDiscordAddr))
	if err != nil {
		return "", fmt.Errorf("starting the Discord stand-in (set DEV_DISCORD_ADDR to another port): %w", err)
	}
	redirect := "http://" + public + discord.CallbackPath
	fake := discordfake.New(discordfake.Options{ClientID: devDiscordClientID, ClientSecret: devDiscordClientSecret,
		RedirectURLs: []string{redirect}})
	go func() { _ = serveUntilDone(ctx, l, fake) }()
	env["DISCORD_CLIENT_ID"] = devDiscordClientID
	env["DISCORD_CLIENT_SECRET"] = devDiscordClientSecret
	env["DISCORD_REDIRECT_URL"] = redirect
	env["DISCORD_BASE_URL"] = "http://" + l.Addr().String()
	return fmt.Sprintf("stand-in on %s (Link Discord signs in as %s at once)",
		env["DISCORD_BASE_URL"], discordfake.DefaultUser.Username), nil
}
