package main

import (
	"context"
	"io"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/testdb"
	"fulfiller/migrations"
)

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

func TestServeRefusesThePublicDevelopmentSecret(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"serve"}, envOf(map[string]string{
		"DATABASE_URL": "postgres://u@127.0.0.1:1/db", "STRIPE_WEBHOOK_SECRET": devWebhookSecret,
		"STRIPE_API_KEY": "sk_test_x", "LUARMOR_API_KEY": "k",
	}), io.Discard, io.Discard)
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "STRIPE_WEBHOOK_SECRET", ce.Name)
	require.ErrorContains(t, err, "public development secret")
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	pool := testdb.NewPool(t, nil)
	env := envOf(map[string]string{"DATABASE_URL": pool.Config().ConnString()})
	for i := 0; i < 2; i++ {
		require.NoError(t, run(context.Background(), []string{"migrate"}, env, io.Discard, io.Discard))
	}
	require.Equal(t, 7, count(t, pool, `SELECT count(*) FROM information_schema.tables
		WHERE table_name IN ('orders', 'order_keys', 'stripe_events', 'river_job', 'luarmor_calls', 'renewals', 'revocations')`))
	applied := count(t, pool, `SELECT count(*) FROM fulfiller_migrations`)
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.Equal(t, len(files), applied, "each migration applied once")
}
