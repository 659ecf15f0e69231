package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/shop"
)

func TestShopSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, shop.Identity{}, c.Shop, "every shop setting is optional")

	c, err = config.FromEnv(env(map[string]string{
		"SHOP_NAME": " Acme Scripts ", "SHOP_URL": "https://acme.example.com", "SHOP_SUPPORT": "help@acme.example.com",
		"SHOP_LOGO_URL": "https://cdn.example.com/acme.png", "SHOP_ACCENT_COLOR": "#AA3300",
	}))
	require.NoError(t, err)
	require.Equal(t, shop.Identity{Name: "Acme Scripts", URL: "https://acme.example.com",
		Support: shop.Contact{Email: "help@acme.example.com"}, LogoURL: "https://cdn.example.com/acme.png", AccentColor: "#aa3300"}, c.Shop)

	c, err = config.FromEnv(env(map[string]string{"SHOP_SUPPORT": "https://acme.example.com/help", "SHOP_URL": "http://localhost:3000"}))
	require.NoError(t, err)
	require.Equal(t, shop.Contact{URL: "https://acme.example.com/help"}, c.Shop.Support)
	require.Equal(t, "http://localhost:3000", c.Shop.URL, "plain http for a shop tried on this machine")
}

// A bad shop setting stops start-up with one line naming it and what it
// must be.
func TestBadShopSettingsAreRefusedByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, value, says string }{
		{"SHOP_NAME", "Acme\r\nScripts", "one line"},
		{"SHOP_URL", "http://acme.example.com", "https"},
		{"SHOP_URL", "acme.example.com", "https"},
		{"SHOP_SUPPORT", "Acme support", "email address"},
		{"SHOP_SUPPORT", "http://acme.example.com/help", "https"},
		{"SHOP_LOGO_URL", "http://acme.example.com/logo.png", "https"},
		{"SHOP_ACCENT_COLOR", "red", "#rrggbb"},
		{"SHOP_ACCENT_COLOR", "#abc", "#rrggbb"},
	} {
		_, err := config.FromEnv(env(map[string]string{tc.key: tc.value}))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, "%s=%q", tc.key, tc.value)
		require.Equal(t, tc.key, ce.Name)
		require.Contains(t, err.Error(), tc.says)
		require.NotContains(t, err.Error(), "\n")
	}
}

// Every bad shop setting is named in one run, as every other setting is.
func TestBadShopSettingsAreAllNamedAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.FromEnv(env(map[string]string{"SHOP_URL": "ftp://acme.example.com", "SHOP_ACCENT_COLOR": "blue"}))
	var es config.Errors
	require.ErrorAs(t, err, &es)
	require.True(t, es.Has("SHOP_URL"), err.Error())
	require.True(t, es.Has("SHOP_ACCENT_COLOR"), err.Error())
}
