package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/metrics"
)

func TestJobOutcomeDecidesAsRiverDoes(t *testing.T) {
	t.Parallel()
	job := &rivertype.JobRow{Attempt: 1, MaxAttempts: 3}
	last := &rivertype.JobRow{Attempt: 3, MaxAttempts: 3}
	failure := errors.New("luarmor: connection reset")
	for _, tc := range []struct {
		job  *rivertype.JobRow
		err  error
		want string
	}{
		{job, nil, metrics.JobCompleted},
		{job, river.JobSnooze(0), metrics.JobSnoozed},
		{last, fmt.Errorf("waiting for a slot: %w", river.JobSnooze(0)), metrics.JobSnoozed},
		{job, river.JobCancel(failure), metrics.JobCancelled},
		{last, river.JobCancel(failure), metrics.JobCancelled},
		{job, failure, metrics.JobRetried},
		{last, failure, metrics.JobDiscarded},
	} {
		require.Equal(t, tc.want, metrics.JobOutcome(tc.job, tc.err), "%v at attempt %d", tc.err, tc.job.Attempt)
	}
}

// A nil *Metrics records nothing and never panics: packages run without it.
func TestNilMetricsRecordNothing(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.WebhookReceived("checkout.session.completed", metrics.WebhookRecorded)
	m.JobFinished("create_key", metrics.JobCompleted)
	m.LuarmorRequest("GET /status", 200)
	m.BudgetSlotGranted("deliver")
	m.KeyDelivered(1)
	m.KeyRevoked("blacklist")
	m.KeyRenewed()
	m.BudgetLimit(60, time.Minute)
}

func TestLabelsOutsideTheirSetAreOther(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Labels{EventTypes: []string{"checkout.session.completed"}})
	m.WebhookReceived("cs_test_a1b2c3", metrics.WebhookRecorded)
	m.WebhookReceived("", metrics.WebhookBadSignature)
	m.LuarmorRequest("POST /v3/projects/{project_id}/users", 0)
	m.LuarmorRequest("POST /v3/projects/{project_id}/users", 999)
	m.LuarmorRequest("POST /v3/projects/{project_id}/users", 429)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(raw)
	require.NotContains(t, text, "cs_test_")
	require.Contains(t, text, `fulfiller_webhooks_received_total{event_type="other",outcome="recorded"} 1`)
	require.Contains(t, text, `fulfiller_webhooks_received_total{event_type="other",outcome="bad_signature"} 1`)
	require.Contains(t, text, `fulfiller_webhooks_received_total{event_type="checkout.session.completed",outcome="recorded"} 0`)
	require.Contains(t, text, `fulfiller_luarmor_requests_total{endpoint="POST /v3/projects/{project_id}/users",status="transport_error"} 1`)
	require.Contains(t, text, `fulfiller_luarmor_requests_total{endpoint="POST /v3/projects/{project_id}/users",status="other"} 1`)
	require.Contains(t, text, `fulfiller_luarmor_rate_limited_total 1`)
	require.Contains(t, text, "# HELP fulfiller_key_delivery_seconds ")
}

// During a database outage a scrape still answers with the process's own
// metrics; only the fleet's gauges, read from PostgreSQL, are missing.
func TestScrapeAnswersWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	require.NoError(t, err)
	defer pool.Close()
	m := metrics.New(metrics.Labels{FailureCodes: []string{"unknown_price"}})
	m.WatchFleet(pool, 10*time.Second)
	m.WatchBudget(func() map[string]int { return map[string]int{"deliver": 3} })
	m.KeyDelivered(0.2)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(raw)
	require.Contains(t, text, "fulfiller_keys_delivered_total 1")
	require.Contains(t, text, `fulfiller_luarmor_budget_waiting{class="deliver"} 3`)
	require.NotContains(t, text, "fulfiller_replicas_alive ")
	require.NotContains(t, text, "fulfiller_orders_failed{")
}
