package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	project   = "proj_jobs"
	stripeKey = "sk_test_jobs"
)

// testBundle is what a test of the workers runs against: the stand-ins
// (fulfillertest), a database of its own, and the workers' dependencies
// pointed at them. Each test builds its River clients from deps.
type testBundle struct {
	pool    *pgxpool.Pool
	sandbox *fulfillertest.Luarmor
	stripe  *fulfillertest.Stripe
	deps    jobs.Deps
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	lu := fulfillertest.StartLuarmor(t, sandbox.Options{Limit: 100000})
	st := fulfillertest.StartStripe(t, stripeKey)
	pool := postgrestest.NewPool(t)
	return &testBundle{pool: pool, sandbox: lu, stripe: st, deps: jobs.Deps{
		Pool:            pool,
		Stripe:          st.Client(),
		Luarmor:         lu.Client(),
		Catalog:         &catalog.Catalog{Prices: map[string]catalog.Product{"price_a": {ProjectID: project, KeyDays: 14}}},
		Logger:          fulfillertest.Logger(t, slog.LevelWarn),
		RateLimitWindow: 300 * time.Millisecond,
	}}
}

// start runs client until the test ends. The watch it returns was
// subscribed before the client started: it sees every job the client works.
func (b *testBundle) start(t *testing.T, client *river.Client[pgx.Tx]) *fulfillertest.JobWatch {
	t.Helper()
	w := fulfillertest.WatchJobs(t, client)
	fulfillertest.StartRiver(t, client)
	return w
}

// purchase records a paid session of quantity units and enqueues its
// fulfilment, as the webhook does.
func (b *testBundle) purchase(t *testing.T, client *river.Client[pgx.Tx], id string, quantity int64) {
	t.Helper()
	b.stripe.PutSession(stripefake.Session{ID: id, Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: "jobs@example.com", PaymentIntent: "pi_" + id, Items: []stripefake.Item{{PriceID: "price_a", Quantity: quantity}}})
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.RecordSession(ctx, tx, client, order.SessionDetails{CheckoutSessionID: id, PaymentStatus: "paid", SessionStatus: "complete"})
		return err
	})
	require.NoError(t, err)
}

// waitUntil waits until done is true. What these tests wait for is
// written by jobs, so done is read once now and again each time a job the
// watch sees ends, fails or snoozes (after that job's commit).
func waitUntil(t *testing.T, w *fulfillertest.JobWatch, what string, done func() bool) {
	t.Helper()
	if done() {
		return
	}
	w.WaitFor(t, what, func(*river.Event) bool { return done() })
}

// waitFulfilled waits until the order is fulfilled and returns it.
func (b *testBundle) waitFulfilled(t *testing.T, w *fulfillertest.JobWatch, id string) *order.Order {
	t.Helper()
	var o *order.Order
	waitUntil(t, w, "order "+id+" fulfilled", func() bool {
		var err error
		o, err = postgres.GetOrder(context.Background(), b.pool, id)
		return err == nil && o.Status == order.StatusFulfilled
	})
	return o
}

// listJobs lists the jobs params selects, up to 10000.
func listJobs(t *testing.T, client *river.Client[pgx.Tx], params *river.JobListParams) []*rivertype.JobRow {
	t.Helper()
	res, err := client.JobList(context.Background(), params.First(10000))
	require.NoError(t, err)
	return res.Jobs
}

// snoozes is how many times River put the job back (JobSnooze).
func snoozes(t *testing.T, job *rivertype.JobRow) int {
	t.Helper()
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	require.NoError(t, json.Unmarshal(job.Metadata, &m))
	return m.Snoozes
}

// waitJobs waits for each of the jobs ids to end (completed, cancelled, or
// discarded after its last attempt) and returns their rows as they ended.
// The jobs must end after the last wait on w that could have passed over
// their events.
func waitJobs(t *testing.T, w *fulfillertest.JobWatch, ids ...int64) map[int64]*rivertype.JobRow {
	t.Helper()
	wanted := map[int64]bool{}
	for _, id := range ids {
		wanted[id] = true
	}
	ended := map[int64]*rivertype.JobRow{}
	for len(ended) < len(wanted) {
		w.WaitFor(t, fmt.Sprintf("jobs %v to end (%d so far)", ids, len(ended)), func(ev *river.Event) bool {
			if !wanted[ev.Job.ID] || !(ev.Kind == river.EventKindJobCompleted || ev.Kind == river.EventKindJobCancelled ||
				ev.Job.State == rivertype.JobStateDiscarded) {
				return false
			}
			ended[ev.Job.ID] = ev.Job
			return true
		})
	}
	return ended
}

// waitNoJob waits until params lists no job: a job changes state only in
// the jobs' own commits, so the list is read again on each job event.
func waitNoJob(t *testing.T, w *fulfillertest.JobWatch, client *river.Client[pgx.Tx], what string, params *river.JobListParams) {
	t.Helper()
	waitUntil(t, w, what, func() bool { return len(listJobs(t, client, params)) == 0 })
}

// waitNoneInFlight waits until no job of kind waits or runs.
func waitNoneInFlight(t *testing.T, w *fulfillertest.JobWatch, client *river.Client[pgx.Tx], kind string) {
	t.Helper()
	waitNoJob(t, w, client, "no "+kind+" job waiting or running",
		river.NewJobListParams().Kinds(kind).States(jobs.InFlightStates()...))
}

// statesBut is every job state except those given.
func statesBut(except ...rivertype.JobState) []rivertype.JobState {
	var out []rivertype.JobState
	for _, s := range rivertype.JobStates() {
		if !slices.Contains(except, s) {
			out = append(out, s)
		}
	}
	return out
}

// jobErrors is the errors River recorded on the job's attempts, one a line.
func jobErrors(job *rivertype.JobRow) string {
	var out []string
	for _, e := range job.Errors {
		out = append(out, e.Error)
	}
	return strings.Join(out, "\n")
}

// driver is what rivertest reads the jobs of b's database through.
func (b *testBundle) driver() *riverpgxv5.Driver { return riverpgxv5.New(b.pool) }
