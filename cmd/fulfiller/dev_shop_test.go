package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

// make run shows a shop: its settings are filled in, valid, and give way
// to the developer's own.
func TestDevShowsAShop(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://u@localhost:5432/db", "STRIPE_API_KEY": devStripeKey,
		"LUARMOR_API_KEY": devLuarmorKey}
	applyDevDefaults(env, envOf(map[string]string{"SHOP_NAME": "My own shop"}))
	require.NotContains(t, env, "SHOP_NAME", "an explicit SHOP_NAME stands")
	env["SHOP_NAME"] = "My own shop"
	c, err := config.FromEnvAcceptingDevSecret(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, "My own shop", c.Shop.Name)
	require.Equal(t, "support@example.com", c.Shop.Support.Text())
	require.Equal(t, "https://example.com", c.Shop.URL)
	require.Equal(t, "#6d28d9", c.Shop.AccentColor)
}
