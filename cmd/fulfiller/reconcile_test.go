package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
)

// reconcileService runs the service against a Stripe stand-in, with
// Stripe key stripeKey (its own by default): the command queues the
// reconciliation and the service's workers list the events.
func reconcileService(t *testing.T, stripeKey string) *fulfillertest.Service {
	t.Helper()
	return fulfillertest.StartService(t, fulfillertest.Options{Configure: func(c *config.Config) {
		if stripeKey != "" {
			c.StripeAPIKey = stripeKey
		}
	}})
}

func TestReconcileCommandIngestsWhatNeverArrivedOnce(t *testing.T) {
	t.Parallel()
	svc := reconcileService(t, "")
	svc.Stripe.AddEvent("invoice.paid", []byte(`{"id":"in_lost","object":"invoice"}`))
	svc.Stripe.AddEvent("charge.dispute.created", []byte(`{"id":"dp_lost","object":"dispute","charge":"ch_1"}`))
	svc.Stripe.AddEvent("customer.created", []byte(`{"id":"cus_1","object":"customer"}`))

	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "72h"}, envOf(svc.Env()), &out, io.Discard))
	require.Contains(t, out.String(), "listed 2, already recorded 0, ingested 2")
	require.Equal(t, 2, svc.Count(t, "SELECT count(*) FROM stripe_events"))
	// Queued for the service's workers: one job for both events.
	require.Equal(t, 1, svc.Count(t, "SELECT count(*) FROM river_job WHERE kind = $1", jobs.HandleEventsArgs{}.Kind()))

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile", "--since", "3d"}, envOf(svc.Env()), &out, io.Discard))
	require.Contains(t, out.String(), "of the last 72h: listed 2, already recorded 2, ingested 0")
	require.Equal(t, 1, svc.Count(t, "SELECT count(*) FROM river_job WHERE kind = $1", jobs.HandleEventsArgs{}.Kind()), "a second run queues nothing")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile"}, envOf(svc.Env()), &out, io.Discard))
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
	svc := reconcileService(t, wrongKey)
	svc.Stripe.AddEvent("invoice.paid", []byte(`{"id":"in_lost","object":"invoice"}`))
	var out, stderr strings.Builder
	err := run(context.Background(), []string{"reconcile"}, envOf(svc.Env()), &out, &stderr)
	require.Error(t, err)
	require.Contains(t, err.Error(), "reconciling Stripe events since")
	require.Contains(t, err.Error(), "listing events (page 1): 401")
	require.NotContains(t, err.Error(), wrongKey)
	require.NotContains(t, stderr.String(), wrongKey)
	require.NotContains(t, out.String(), wrongKey)

	// A missing setting is named.
	env := svc.Env()
	delete(env, "STRIPE_API_KEY")
	err = run(context.Background(), []string{"reconcile"}, envOf(env), io.Discard, io.Discard)
	require.ErrorContains(t, err, "STRIPE_API_KEY")
}
