package fulfillertest

import (
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/discord"
	"fulfiller/internal/discord/discordfake"
)

// The Discord application of a test service. Fixed: each test has a
// stand-in of its own.
const (
	DiscordClientID     = "998877665544332211"
	DiscordClientSecret = "discord-client-secret-for-tests-0123"
)

// Discord is the Discord stand-in served over HTTP for one test, with the
// redirect URL of a service that listens on a loopback port picked for it.
type Discord struct {
	*discordfake.Fake
	URL string
	// Settings are what a service signs in with (Configure sets them).
	Settings discord.Settings
	// ListenAddr is where that service must listen for its callback to be
	// the redirect URL the stand-in knows.
	ListenAddr string
}

// StartDiscord serves a Discord stand-in until the test ends. Discord
// redirects to a registered URL only, so the service's port is chosen
// now: start the service with Configure.
func StartDiscord(t testing.TB) *Discord {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	redirect := "http://" + addr + discord.CallbackPath
	f := discordfake.New(discordfake.Options{ClientID: DiscordClientID, ClientSecret: DiscordClientSecret, RedirectURLs: []string{redirect}})
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Discord{Fake: f, URL: srv.URL, ListenAddr: addr, Settings: discord.Settings{
		ClientID: DiscordClientID, ClientSecret: DiscordClientSecret, RedirectURL: redirect, BaseURL: srv.URL,
		Timeout: 2 * time.Second,
	}}
}

// Configure points a service's settings at the stand-in: its Discord
// settings, and the public listener its redirect URL names.
func (d *Discord) Configure(c *config.Config) {
	c.Discord = d.Settings
	c.ListenAddr = d.ListenAddr
}
