package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestReconcileSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 10*time.Minute, c.ReconcileInterval)
	require.Equal(t, 72*time.Hour, c.ReconcileLookback)

	c, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "off", "RECONCILE_LOOKBACK": "30d"}))
	require.NoError(t, err)
	require.Zero(t, c.ReconcileInterval, "off disables it")
	require.Equal(t, 720*time.Hour, c.ReconcileLookback)

	c, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "24h", "RECONCILE_LOOKBACK": "1d"}))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.ReconcileInterval)

	for name, v := range map[string]string{
		"RECONCILE_INTERVAL": "59s", "RECONCILE_LOOKBACK": "59m",
	} {
		_, err := config.FromEnv(env(map[string]string{name: v}))
		require.ErrorContains(t, err, name, v)
	}
	for _, tc := range []struct{ name, value, reason string }{
		{"RECONCILE_INTERVAL", "25h", "from 1m to 24h, or off"},
		{"RECONCILE_INTERVAL", "0", "from 1m to 24h, or off"},
		{"RECONCILE_INTERVAL", "never", "from 1m to 24h, or off"},
		{"RECONCILE_LOOKBACK", "721h", "Stripe keeps events for 30 days"},
		{"RECONCILE_LOOKBACK", "31d", "Stripe keeps events for 30 days"},
		{"RECONCILE_LOOKBACK", "-72h", "from 1h to 720h"},
	} {
		_, err := config.FromEnv(env(map[string]string{tc.name: tc.value}))
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, tc.value)
		require.Equal(t, tc.name, cerr.Name, tc.value)
		require.Contains(t, cerr.Reason, tc.reason, tc.value)
	}
	// Runs further apart than they look back would leave gaps.
	_, err = config.FromEnv(env(map[string]string{"RECONCILE_INTERVAL": "12h", "RECONCILE_LOOKBACK": "6h"}))
	require.ErrorContains(t, err, "RECONCILE_LOOKBACK")
	require.ErrorContains(t, err, "shorter than RECONCILE_INTERVAL")
}

func TestParseDurationCountsDays(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"72h": 72 * time.Hour, "90m": 90 * time.Minute, "3d": 72 * time.Hour, "1d12h": 36 * time.Hour,
		"0d": 0, "-3d": -72 * time.Hour, "-2h": -2 * time.Hour, " 30d ": 720 * time.Hour,
	} {
		got, err := config.ParseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "3", "3days", "1.5d", "+-3d", "--3d", "3d-1h", "3d+1h", "1d1d", "99999999d", "65535d2562047h"} {
		_, err := config.ParseDuration(in)
		require.Error(t, err, in)
	}
}
