package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9090", c.MetricsAddr, "loopback by default, never the public listener")

	c, err = config.FromEnv(env(map[string]string{"METRICS_ADDR": "off"}))
	require.NoError(t, err)
	require.Empty(t, c.MetricsAddr, "off disables it")

	c, err = config.FromEnv(env(map[string]string{"METRICS_ADDR": ":9100"}))
	require.NoError(t, err)
	require.Equal(t, ":9100", c.MetricsAddr)

	c, err = config.FromEnv(env(map[string]string{"METRICS_ADDR": "127.0.0.1:0", "LISTEN_ADDR": "127.0.0.1:0"}))
	require.NoError(t, err, "two ephemeral ports never collide")
	require.Equal(t, "127.0.0.1:0", c.MetricsAddr)

	for _, tc := range []struct{ env map[string]string }{
		{map[string]string{"METRICS_ADDR": "9090"}},
		{map[string]string{"METRICS_ADDR": "localhost"}},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:"}},
		{map[string]string{"METRICS_ADDR": "Off"}},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:8080"}},                        // LISTEN_ADDR's default port
		{map[string]string{"METRICS_ADDR": "10.0.0.1:9000", "LISTEN_ADDR": ":9000"}}, // same port, other host
	} {
		_, err := config.FromEnv(env(tc.env))
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, tc.env)
		require.Equal(t, "METRICS_ADDR", cerr.Name, tc.env)
	}
}
