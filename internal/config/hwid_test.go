package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestHWIDResetCooldown(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.HWIDResetCooldown, "a day by default")

	for value, want := range map[string]time.Duration{"1m": time.Minute, "90m": 90 * time.Minute, "720h": 720 * time.Hour} {
		c, err := config.FromEnv(env(map[string]string{"HWID_RESET_COOLDOWN": value}))
		require.NoError(t, err, value)
		require.Equal(t, want, c.HWIDResetCooldown, value)
	}
	for _, value := range []string{"59s", "721h", "0", "-1h", "a day", "24"} {
		_, err := config.FromEnv(env(map[string]string{"HWID_RESET_COOLDOWN": value}))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, value)
		require.Equal(t, "HWID_RESET_COOLDOWN", ce.Name)
		require.ErrorContains(t, err, "from 1m0s to 720h0m0s", value)
	}
}
