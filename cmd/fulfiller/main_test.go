package main

import (
	"bufio"
	"context"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/testdb"
	"fulfiller/migrations"
)

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

func TestServeStopsOnAMissingSettingWithOneLineNamingIt(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"serve"}, envOf(map[string]string{
		"DATABASE_URL": "postgres://u@127.0.0.1:1/db", "STRIPE_WEBHOOK_SECRET": testWebhookSecret, "STRIPE_API_KEY": "sk_test_x",
	}), io.Discard, io.Discard)
	require.Error(t, err)
	require.Contains(t, err.Error(), "LUARMOR_API_KEY")
	require.NotContains(t, err.Error(), "\n")
	require.NotContains(t, err.Error(), "sk_test_x")
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	t.Parallel()
	var stderr strings.Builder
	err := run(context.Background(), []string{"frobnicate"}, envOf(nil), io.Discard, &stderr)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, stderr.String(), "usage: fulfiller")
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	url := testdb.NewURL(t, nil)
	env := envOf(map[string]string{"DATABASE_URL": url})
	for i := 0; i < 2; i++ {
		require.NoError(t, run(context.Background(), []string{"migrate"}, env, io.Discard, io.Discard))
	}
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var tables int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.tables
		WHERE table_name IN ('orders', 'order_keys', 'stripe_events', 'river_job', 'luarmor_calls', 'renewals', 'revocations')`).Scan(&tables))
	require.Equal(t, 7, tables)
	var applied int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM fulfiller_migrations`).Scan(&applied))
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.Equal(t, len(files), applied, "each migration applied once")
}

func TestLuarmorSandboxCommandServesTheAPIWithItsBudget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"luarmor-sandbox", "--addr", "127.0.0.1:0", "--api-key", "cli-key", "--limit", "2/1m"},
			envOf(nil), w, io.Discard)
		_ = w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	base := strings.Fields(strings.TrimPrefix(line, "Luarmor sandbox on "))[0]

	c := luarmor.NewClient("cli-key", luarmor.WithBaseURL(base))
	for i := 0; i < 2; i++ {
		_, err := c.CreateUser(ctx, "any_project", luarmor.CreateUserRequest{})
		require.NoError(t, err)
	}
	_, err = c.CreateUser(ctx, "any_project", luarmor.CreateUserRequest{})
	var rl *luarmor.RateLimitError
	require.ErrorAs(t, err, &rl, "the third request in a minute exceeds --limit 2/1m")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
	_, err = http.Get(base + "/status")
	require.Error(t, err, "the sandbox no longer listens")
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
