package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// A reconciliation over several pages of Stripe's events reports its
// progress as it goes: the hours checked only grow, page after page, up to
// the look-back, and the CLI's plain lines show them growing before the
// summary.
func TestReconcileCommandShowsProgressPageByPage(t *testing.T) {
	t.Parallel()
	svc := reconcileService(t, "")
	const events, lookback = 350, 72 * time.Hour // four pages of at most 100
	start := time.Now()
	for i := range events {
		svc.Stripe.AddEventAt("invoice.paid", []byte(fmt.Sprintf(`{"id":"in_page_%d","object":"invoice"}`, i)),
			start.Add(-time.Duration(i+1)*(lookback-time.Hour)/events))
	}
	// Each page takes longer than the job's least time between two records
	// of its progress, and two pages longer than the plain lines' pace
	// (plainProgressEvery): a line between the first and the last.
	svc.Stripe.SetLatency(3 * time.Second)

	var seen []jobs.Progress
	var pollErr error
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			var output []byte
			err := svc.Pool.QueryRow(context.Background(), `SELECT metadata->'output' FROM river_job WHERE kind = $1 ORDER BY id DESC LIMIT 1`,
				jobs.KindReconcileEvents).Scan(&output)
			var p jobs.ProgressOutput
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				pollErr = err
				return
			case len(output) > 0 && json.Unmarshal(output, &p) == nil && p.Progress != nil &&
				(len(seen) == 0 || p.Progress.Done != seen[len(seen)-1].Done):
				seen = append(seen, *p.Progress)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var out strings.Builder
	err := run(context.Background(), []string{"reconcile", "--since", "72h"}, envOf(svc.Env()), &out, io.Discard)
	close(stop)
	<-polled
	svc.Stripe.SetLatency(0)
	require.NoError(t, err, out.String())
	require.NoError(t, pollErr)

	// The job's record: several counts, each larger, the last the total.
	require.Greater(t, len(seen), 2, "a count per page, not only the start and the end: %v", seen)
	for i, p := range seen {
		require.Equal(t, 72, p.Total, "%v", seen)
		require.Equal(t, "hours of events checked", p.Unit)
		if i > 0 {
			require.Greater(t, p.Done, seen[i-1].Done, "the hours checked only grow: %v", seen)
		}
	}
	require.Equal(t, 72, seen[len(seen)-1].Done, "%v", seen)

	// The CLI's plain lines: growing counts, then the summary.
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.NotContains(t, out.String(), "\r", "no terminal: plain lines")
	var shown []int
	lastShown := -1
	for i, l := range lines {
		var done int
		if _, err := fmt.Sscanf(l, "reconcile --since 72h: %d/72 hours of events checked", &done); err == nil {
			shown, lastShown = append(shown, done), i
		}
	}
	require.Greater(t, len(shown), 2, "counts shown as it went: %q", lines)
	for i := 1; i < len(shown); i++ {
		require.Greater(t, shown[i], shown[i-1], "%q", lines)
	}
	require.Equal(t, 72, shown[len(shown)-1], "%q", lines)
	require.Less(t, lastShown, len(lines)-1, "%q", lines)
	require.Equal(t, fmt.Sprintf("Stripe events of the last 72h: listed %d, already recorded 0, ingested %d", events, events), lines[lastShown+1],
		"the summary follows the last count: %q", lines)
}
