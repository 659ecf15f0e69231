package main

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

const reconcileStripeKey = "sk_test_reconcilecommand0123"

// reconcileEnv is the service's environment against a migrated database
// and a Stripe stand-in.
func reconcileEnv(t *testing.T, stripeKey string) (map[string]string, *stripefake.Fake) {
	t.Helper()
	fake := stripefake.New(reconcileStripeKey)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return map[string]string{
		"DATABASE_URL": postgrestest.NewURL(t), "STRIPE_API_KEY": stripeKey, "STRIPE_API_BASE": srv.URL,
		"STRIPE_WEBHOOK_SECRET": testWebhookSecret, "LUARMOR_API_KEY": "luarmor-key",
	}, fake
}

func count(t *testing.T, url, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

func TestReconcileCommandIngestsWhatNeverArrivedOnce(t *testing.T) {
	t.Parallel()
	env, fake := reconcileEnv(t, reconcileStripeKey)
	fake.AddEvent("invoice.paid", []byte(`{"id":"in_lost","object":"invoice"}`))
	fake.AddEvent("charge.dispute.created", []byte(`{"id":"dp_lost","object":"dispute","charge":"ch_1"}`))
	fake.AddEvent("customer.created", []byte(`{"id":"cus_1","object":"customer"}`))

	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "72h"}, envOf(env), &out, io.Discard))
	require.Contains(t, out.String(), "listed 2, already recorded 0, ingested 2")
	require.Equal(t, 2, count(t, env["DATABASE_URL"], "SELECT count(*) FROM stripe_events"))
	require.Equal(t, 1, count(t, env["DATABASE_URL"], "SELECT count(*) FROM river_job WHERE kind = 'handle_events'"),
		"queued for the service's workers")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "3d"}, envOf(env), &out, io.Discard))
	require.Contains(t, out.String(), "listed 2, already recorded 2, ingested 0")
	require.Equal(t, 1, count(t, env["DATABASE_URL"], "SELECT count(*) FROM river_job"), "a second run queues nothing")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile"}, envOf(env), &out, io.Discard))
	require.Contains(t, out.String(), "of the last 72h: listed 2", "72h by default")
}

func TestReconcileCommandRefusesWhatStripeCannotServe(t *testing.T) {
	t.Parallel()
	// No settings at all: the refusal comes before anything is reached.
	for since, msg := range map[string]string{
		"31d":  "longer than Stripe keeps events (30 days)",
		"800h": "longer than Stripe keeps events (30 days)",
		"0":    "must be more than zero",
		"-1h":  "must be more than zero",
		"soon": "not a duration",
	} {
		err := run(context.Background(), []string{"reconcile", "--since", since}, envOf(nil), io.Discard, io.Discard)
		require.ErrorContains(t, err, msg, since)
		require.ErrorContains(t, err, "--since", since)
		require.NotErrorIs(t, err, errUsage, since)
	}
	err := run(context.Background(), []string{"reconcile", "extra"}, envOf(nil), io.Discard, io.Discard)
	require.ErrorIs(t, err, errUsage)
}

func TestReconcileCommandFailsNamingWhatFailed(t *testing.T) {
	t.Parallel()
	const wrongKey = "sk_test_notthekey0123456789"
	env, fake := reconcileEnv(t, wrongKey)
	fake.AddEvent("invoice.paid", []byte(`{"id":"in_lost","object":"invoice"}`))
	var out, stderr strings.Builder
	err := run(context.Background(), []string{"reconcile"}, envOf(env), &out, &stderr)
	require.Error(t, err)
	require.Contains(t, err.Error(), "reconciling Stripe events since")
	require.Contains(t, err.Error(), "listing events (page 1): 401")
	require.NotContains(t, err.Error(), wrongKey)
	require.NotContains(t, stderr.String(), wrongKey)
	require.Contains(t, out.String(), "listed 0, already recorded 0, ingested 0", "the summary of what was done")

	// A missing setting is named.
	delete(env, "STRIPE_API_KEY")
	err = run(context.Background(), []string{"reconcile"}, envOf(env), io.Discard, io.Discard)
	require.ErrorContains(t, err, "STRIPE_API_KEY")
}
