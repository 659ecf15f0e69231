package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres/postgrestest"
)

const reconcileStripeKey = "sk_test_reconcilecommand0123"

// reconcileEnv is the service's environment against a migrated database
// (pool) and a Stripe stand-in; no service runs, so what the command
// queues stays queued.
func reconcileEnv(t *testing.T, stripeKey string) (map[string]string, *fulfillertest.Stripe, *pgxpool.Pool) {
	t.Helper()
	fake := fulfillertest.StartStripe(t, reconcileStripeKey)
	pool := postgrestest.NewPool(t)
	return map[string]string{
		"DATABASE_URL": pool.Config().ConnString(), "STRIPE_API_KEY": stripeKey, "STRIPE_API_BASE": fake.URL,
		"STRIPE_WEBHOOK_SECRET": testWebhookSecret, "LUARMOR_API_KEY": "luarmor-key",
	}, fake, pool
}

func TestReconcileCommandIngestsWhatNeverArrivedOnce(t *testing.T) {
	t.Parallel()
	env, fake, pool := reconcileEnv(t, reconcileStripeKey)
	fake.AddEvent("invoice.paid", []byte(`{"id":"in_lost","object":"invoice"}`))
	fake.AddEvent("charge.dispute.created", []byte(`{"id":"dp_lost","object":"dispute","charge":"ch_1"}`))
	fake.AddEvent("customer.created", []byte(`{"id":"cus_1","object":"customer"}`))

	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "72h"}, envOf(env), &out, io.Discard))
	require.Contains(t, out.String(), "listed 2, already recorded 0, ingested 2")
	require.Equal(t, 2, count(t, pool, "SELECT count(*) FROM stripe_events"))
	// Queued for the service's workers: one job for both events.
	queued := rivertest.RequireInserted(context.Background(), t, riverpgxv5.New(pool), &jobs.HandleEventsArgs{}, nil)
	require.Len(t, queued.Args.EventIDs, 2)

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "3d"}, envOf(env), &out, io.Discard))
	require.Contains(t, out.String(), "listed 2, already recorded 2, ingested 0")
	again := rivertest.RequireInserted(context.Background(), t, riverpgxv5.New(pool), &jobs.HandleEventsArgs{}, nil)
	require.Equal(t, queued.ID, again.ID, "a second run queues nothing")
	// rivertest asks about one kind at a time: nothing of any other kind either.
	require.Equal(t, 1, count(t, pool, "SELECT count(*) FROM river_job"), "a second run queues nothing")

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
	env, fake, _ := reconcileEnv(t, wrongKey)
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
