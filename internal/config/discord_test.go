package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/discord"
)

const (
	discordID       = "998877665544332211"
	discordSecret   = "abcdefghijklmnopqrstuvwxyz012345"
	discordCallback = "https://keys.shop.example/discord/callback"
)

func TestDiscordLinkIsOffUntilItsThreeSettingsAreSet(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.False(t, c.Discord.Enabled(), "off by default")

	c, err = config.FromEnv(env(map[string]string{
		"DISCORD_CLIENT_ID": discordID, "DISCORD_CLIENT_SECRET": discordSecret, "DISCORD_REDIRECT_URL": discordCallback}))
	require.NoError(t, err)
	require.True(t, c.Discord.Enabled())
	require.Equal(t, discord.Settings{ClientID: discordID, ClientSecret: discordSecret, RedirectURL: discordCallback,
		BaseURL: "https://discord.com"}, c.Discord)

	c, err = config.FromEnv(env(map[string]string{
		"DISCORD_CLIENT_ID": discordID, "DISCORD_CLIENT_SECRET": discordSecret,
		"DISCORD_REDIRECT_URL": "http://127.0.0.1:8080/discord/callback", "DISCORD_BASE_URL": "http://127.0.0.1:8094/"}))
	require.NoError(t, err, "plain http on this machine, for make run")
	require.Equal(t, "http://127.0.0.1:8094", c.Discord.BaseURL)
}

func TestDiscordSettingsAreRefusedNamingTheSettingAndWhatToDo(t *testing.T) {
	t.Parallel()
	all := map[string]string{"DISCORD_CLIENT_ID": discordID, "DISCORD_CLIENT_SECRET": discordSecret, "DISCORD_REDIRECT_URL": discordCallback}
	with := func(name, value string) map[string]string {
		out := map[string]string{}
		for k, v := range all {
			out[k] = v
		}
		if value == "" {
			delete(out, name)
		} else {
			out[name] = value
		}
		return out
	}
	for name, tc := range map[string]struct {
		env     map[string]string
		setting string
		says    string
	}{
		"no secret":                  {with("DISCORD_CLIENT_SECRET", ""), "DISCORD_CLIENT_SECRET", "unset DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET and DISCORD_REDIRECT_URL"},
		"no client":                  {with("DISCORD_CLIENT_ID", ""), "DISCORD_CLIENT_ID", "is required"},
		"no redirect":                {with("DISCORD_REDIRECT_URL", ""), "DISCORD_REDIRECT_URL", "is required"},
		"a client ID of letters":     {with("DISCORD_CLIENT_ID", "my-app"), "DISCORD_CLIENT_ID", "17 to 20 digits"},
		"a short secret":             {with("DISCORD_CLIENT_SECRET", "short"), "DISCORD_CLIENT_SECRET", "16 to 128"},
		"a secret with a space":      {with("DISCORD_CLIENT_SECRET", "abcdefgh ijklmnopqrstuvwxyz01234"), "DISCORD_CLIENT_SECRET", "without spaces"},
		"a redirect over http":       {with("DISCORD_REDIRECT_URL", "http://keys.shop.example/discord/callback"), "DISCORD_REDIRECT_URL", "https"},
		"a redirect to another path": {with("DISCORD_REDIRECT_URL", "https://keys.shop.example/callback"), "DISCORD_REDIRECT_URL", "/discord/callback"},
		"a redirect with a query":    {with("DISCORD_REDIRECT_URL", discordCallback+"?next=/"), "DISCORD_REDIRECT_URL", "without query"},
		"a base over http":           {with("DISCORD_BASE_URL", "http://discord.example"), "DISCORD_BASE_URL", "https"},
		"a base that is no URL":      {with("DISCORD_BASE_URL", "discord.com"), "DISCORD_BASE_URL", "https URL"},
	} {
		_, err := config.FromEnv(env(tc.env))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, name)
		require.Equal(t, tc.setting, ce.Name, name)
		require.ErrorContains(t, err, tc.says, name)
		require.NotContains(t, err.Error(), "ijklmnopqrstuvwxyz01234", "%s: the secret is never repeated", name)
	}
}
