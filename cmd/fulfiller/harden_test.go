package main

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestDevRefusesRealKeysWithoutItsOwnWebhookSecret(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"real stripe key":                  {"STRIPE_API_KEY": "sk_live_real"},
		"real luarmor key":                 {"LUARMOR_API_KEY": "real-luarmor-key"},
		"real key, public secret explicit": {"LUARMOR_API_KEY": "real-luarmor-key", "STRIPE_WEBHOOK_SECRET": devWebhookSecret},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Port 1 refuses connections: a refusal must come before any
			// connection, stand-in or listener.
			env["DATABASE_URL"] = "postgres://u@127.0.0.1:1/db"
			err := run(context.Background(), []string{"dev"}, envOf(env), io.Discard, io.Discard)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "STRIPE_WEBHOOK_SECRET", ce.Name)
			require.NotContains(t, err.Error(), "sk_live_real")
			require.NotContains(t, err.Error(), "real-luarmor-key")
		})
	}
	// With the stand-ins' own keys the public secret is fine.
	require.NoError(t, refuseRealKeysWithThePublicSecret(envOf(map[string]string{
		"STRIPE_API_KEY": devStripeKey, "LUARMOR_API_KEY": devLuarmorKey})))
	require.NoError(t, refuseRealKeysWithThePublicSecret(envOf(map[string]string{
		"STRIPE_API_KEY": "sk_live_real", "STRIPE_WEBHOOK_SECRET": testWebhookSecret})))
}

func TestDevListensOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	applyDevDefaults(env, envOf(nil))
	require.Equal(t, "127.0.0.1:8080", env["LISTEN_ADDR"])
	require.Equal(t, devWebhookSecret, env["STRIPE_WEBHOOK_SECRET"])

	env = map[string]string{}
	applyDevDefaults(env, envOf(map[string]string{"LISTEN_ADDR": ":9000"}))
	require.NotContains(t, env, "LISTEN_ADDR", "an explicit LISTEN_ADDR stands")
}
