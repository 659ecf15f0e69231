package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/webhook"
)

const secret = "whsec_webhook_package_tests"

type bundle struct {
	pool  *pgxpool.Pool
	river *river.Client[pgx.Tx]
	jobs  *fulfillertest.JobWatch
	url   string
	// logs is what the endpoint logged at warn and above.
	logs *logtest.Buffer
}

// setup runs the endpoint with the service's real workers on a database of
// its own; Stripe's API and Luarmor are the harness's stand-ins.
func setup(t *testing.T) *bundle {
	t.Helper()
	lu := fulfillertest.StartLuarmor(t, sandbox.Options{Limit: 100000})
	st := fulfillertest.StartStripe(t, "sk_test_webhook")
	pool := postgrestest.NewPool(t)
	rc, err := jobs.NewClient(jobs.Deps{
		Pool:    pool,
		Stripe:  st.Client(),
		Luarmor: lu.Client(),
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{}},
		Logger:  fulfillertest.Logger(t, slog.LevelWarn),
	}, jobs.Config{})
	require.NoError(t, err)
	watch := fulfillertest.WatchJobs(t, rc)
	fulfillertest.StartRiver(t, rc)
	logs := &logtest.Buffer{}
	h := webhook.New(webhook.Config{Secrets: []string{secret}, Pool: pool, River: rc,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close)
	return &bundle{pool: pool, river: rc, jobs: watch, url: srv.URL, logs: logs}
}

type answer struct {
	status int
	body   string
}

// post sends body signed with the endpoint's secret.
func (b *bundle) post(t *testing.T, body []byte) answer {
	t.Helper()
	return b.postWithHeader(t, body, fulfillertest.Sign(body, secret, time.Now()))
}

// postWithHeader sends body with the Stripe-Signature header given.
func (b *bundle) postWithHeader(t *testing.T, body []byte, header string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", header)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, string(out)}
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// driver is what rivertest reads the jobs of b's database through.
func (b *bundle) driver() *riverpgxv5.Driver { return riverpgxv5.New(b.pool) }

// waitForEventJobs waits until every handle_events job queued so far has
// ended, requires each to have completed, and returns how many there were.
// Call it once the deliveries are answered: each queued its job before
// its answer.
func (b *bundle) waitForEventJobs(t *testing.T) int {
	t.Helper()
	kind := jobs.HandleEventsArgs{}.Kind()
	queued, err := b.river.JobList(context.Background(), river.NewJobListParams().Kinds(kind).First(10000))
	require.NoError(t, err)
	for range queued.Jobs {
		ev := b.jobs.WaitEnded(t, kind)
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "every handle_events job completed: job %d %s", ev.Job.ID, ev.Job.State)
	}
	return len(queued.Jobs)
}

// object is the JSON of a Stripe object.
func object(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	out, err := json.Marshal(fields)
	require.NoError(t, err)
	return out
}

// failedCheckout is an event the workers act on without calling Stripe:
// the order of the session is recorded as failed.
func failedCheckout(t testing.TB, sessionID string) []byte {
	t.Helper()
	return fulfillertest.Event(t, "checkout.session.async_payment_failed", object(t, map[string]any{
		"id": sessionID, "object": "checkout.session", "mode": "payment", "payment_status": "unpaid",
		"status": "complete", "customer_details": map[string]any{"email": "buyer@example.com"},
	}))
}

// unhandledEvent is an event of a type the service records and ignores.
func unhandledEvent(t *testing.T) []byte {
	t.Helper()
	return fulfillertest.Event(t, "customer.created", object(t, map[string]any{"id": fulfillertest.NewID("cus_"), "object": "customer"}))
}
