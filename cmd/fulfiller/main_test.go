package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

// testWebhookSecret is a webhook secret of a real one's form that is not
// the public development secret.
const testWebhookSecret = "whsec_cmd_tests_0123456789abcdef0123456789"

// envOf is the getenv of an environment holding m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// count runs a query that counts (SELECT count(*) ...).
func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	t.Parallel()
	var stderr strings.Builder
	err := run(context.Background(), []string{"frobnicate"}, envOf(nil), io.Discard, &stderr)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, stderr.String(), "usage: fulfiller")
}

// TestCommandsLogForWhoReadsThem: the service logs JSON at info for a
// collector; dev logs text; one-shot commands log text at warn so their
// output is not buried; LOG_FORMAT and LOG_LEVEL win over both.
func TestCommandsLogForWhoReadsThem(t *testing.T) {
	for _, tc := range []struct {
		command, format, level string
		env                    map[string]string
	}{
		{"serve", "json", "INFO", nil},
		{"migrate", "json", "INFO", nil},
		{"dev", "text", "INFO", nil},
		{"keys", "text", "WARN", nil},
		{"orders", "text", "WARN", nil},
		{"stock", "text", "WARN", nil},
		{"keys", "json", "DEBUG", map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug"}},
		{"serve", "text", "ERROR", map[string]string{"LOG_FORMAT": "text", "LOG_LEVEL": "error"}},
	} {
		s, err := config.Logging(commandLogDefaults(tc.command, envOf(tc.env)))
		require.NoError(t, err, tc.command)
		require.Equal(t, tc.format, s.Format, "%s %v", tc.command, tc.env)
		require.Equal(t, tc.level, s.Level.String(), "%s %v", tc.command, tc.env)
	}
}

func TestUnknownLogLevelIsRefusedBeforeAnything(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"migrate"}, envOf(map[string]string{"LOG_LEVEL": "verbose"}), io.Discard, io.Discard)
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "LOG_LEVEL", ce.Name)
}
