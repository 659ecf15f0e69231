package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/webhook"
)

const stripeKey = "sk_test_reconcile0123456789"

type bundle struct {
	pool *pgxpool.Pool
	// fake is the Stripe stand-in, stripe the service's client of it.
	fake   *fulfillertest.Stripe
	stripe *stripeapi.Client
	// rc inserts jobs and works none, so every enqueued job stays visible.
	rc  *river.Client[pgx.Tx]
	rec *reconcile.Reconciler
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool := postgrestest.NewPool(t)
	fake := fulfillertest.StartStripe(t, stripeKey)
	logger := fulfillertest.Logger(t, slog.LevelWarn)
	rc, err := jobs.NewClient(jobs.Deps{Pool: pool, Logger: logger}, jobs.Config{InsertOnly: true})
	require.NoError(t, err)
	client := fake.Client()
	return &bundle{pool: pool, fake: fake, stripe: client, rc: rc,
		rec: &reconcile.Reconciler{Pool: pool, Stripe: client, Logger: logger}}
}

// event adds to Stripe's events an event of type typ about a fresh object
// of the given kind, and returns its ID.
func (b *bundle) event(t *testing.T, typ, objectKind, objectID string) string {
	t.Helper()
	raw := b.fake.AddEvent(typ, []byte(fmt.Sprintf(`{"id":%q,"object":%q}`, objectID, objectKind)))
	return eventID(t, raw)
}

func eventID(t *testing.T, raw []byte) string {
	t.Helper()
	var e struct{ ID string }
	require.NoError(t, json.Unmarshal(raw, &e))
	return e.ID
}

// rawEventAt is an event of type typ about an object, created at the
// given time.
func rawEventAt(id, typ, objectKind, objectID string, created time.Time) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,
		"type":%q,"data":{"object":{"id":%q,"object":%q}}}`, id, created.Unix(), typ, objectID, objectKind))
}

// recordAsWebhook records raw as the webhook does on delivery.
func (b *bundle) recordAsWebhook(t *testing.T, raw []byte) {
	t.Helper()
	e, err := webhook.ParseEvent(raw)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := webhook.RecordTx(ctx, tx, b.rc, []postgres.Event{e})
		return err
	}))
}

// handleJobs requires n handle_events jobs to have been queued, waiting
// in the events queue, and returns the event IDs of each, in the order
// they were queued.
func (b *bundle) handleJobs(t *testing.T, n int) [][]string {
	t.Helper()
	expected := make([]rivertest.ExpectedJob, n)
	for i := range expected {
		expected[i] = rivertest.ExpectedJob{Args: jobs.HandleEventsArgs{},
			Opts: &rivertest.RequireInsertedOpts{Queue: jobs.QueueEvents, State: rivertype.JobStateAvailable}}
	}
	return eventIDs(t, rivertest.RequireManyInserted(context.Background(), t, riverpgxv5.New(b.pool), expected))
}

// queuedEventIDs returns the event IDs of every handle_events job queued,
// however many jobs they were queued in.
func (b *bundle) queuedEventIDs(t *testing.T) []string {
	t.Helper()
	res, err := b.rc.JobList(context.Background(), river.NewJobListParams().Kinds(jobs.HandleEventsArgs{}.Kind()).First(10000))
	require.NoError(t, err)
	return slices.Concat(eventIDs(t, res.Jobs)...)
}

func eventIDs(t *testing.T, handleJobs []*rivertype.JobRow) [][]string {
	t.Helper()
	out := make([][]string, len(handleJobs))
	for i, j := range handleJobs {
		var a jobs.HandleEventsArgs
		require.NoError(t, json.Unmarshal(j.EncodedArgs, &a))
		out[i] = a.EventIDs
	}
	return out
}

func (b *bundle) recorded(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT id FROM stripe_events ORDER BY id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestRunIngestsWhatNeverArrivedAndNothingElse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Delivered through the webhook, and listed by Stripe too.
	delivered := b.fake.AddEvent("charge.refunded", []byte(`{"id":"ch_delivered","object":"charge"}`))
	b.recordAsWebhook(t, delivered)
	// Never delivered.
	checkout := b.event(t, "checkout.session.completed", "checkout.session", "cs_test_lost")
	renewal := b.event(t, "invoice.paid", "invoice", "in_lost")
	dispute := b.event(t, "charge.dispute.created", "dispute", "dp_lost")
	// Not listed: a type the service ignores, and an event older than
	// the look-back.
	b.event(t, "customer.created", "customer", "cus_1")
	b.fake.PutEvent(rawEventAt("evt_too_old", "invoice.paid", "invoice", "in_old", time.Now().Add(-73*time.Hour)))

	sum, err := b.rec.Run(ctx, b.rc, 72*time.Hour)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Listed: 4, AlreadyRecorded: 1, Ingested: 3}, sum)
	require.Equal(t, "listed 4, already recorded 1, ingested 3", sum.String())
	require.Equal(t, sorted(eventID(t, delivered), checkout, renewal, dispute), b.recorded(t))

	// The webhook's job, and one for the page of missing events.
	handle := b.handleJobs(t, 2)
	require.Equal(t, []string{eventID(t, delivered)}, handle[0])
	require.ElementsMatch(t, []string{checkout, renewal, dispute}, handle[1])

	// Stored as Stripe sent it, marked as handled like a webhook's.
	var same, handled bool
	raw := b.fake.AddEvent("invoice.paid", []byte(`{"id":"in_bytes","object":"invoice","note":"<a & b>"}`))
	_, err = b.rec.Run(ctx, b.rc, time.Hour)
	require.NoError(t, err)
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT payload = $2, handled FROM stripe_events WHERE id = $1`,
		eventID(t, raw), raw).Scan(&same, &handled))
	require.True(t, same, "stored byte for byte")
	require.True(t, handled)

	// Only the handled types were asked for.
	q, err := url.ParseQuery(b.fake.Requests()[0].Query)
	require.NoError(t, err)
	var asked []string
	for i := 0; q.Has(fmt.Sprintf("types[%d]", i)); i++ {
		asked = append(asked, q.Get(fmt.Sprintf("types[%d]", i)))
	}
	require.Equal(t, jobs.HandledTypes(), asked)
}

func TestASecondRunIngestsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.fake.SetMaxPageSize(2) // several pages
	for i := 0; i < 5; i++ {
		b.event(t, "invoice.paid", "invoice", fmt.Sprintf("in_%d", i))
	}
	sum, err := b.rec.Run(ctx, b.rc, 72*time.Hour)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Listed: 5, Ingested: 5}, sum)
	jobsAfterFirst := b.handleJobs(t, 3) // one job per page of new events

	sum, err = b.rec.Run(ctx, b.rc, 72*time.Hour)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Listed: 5, AlreadyRecorded: 5}, sum)
	require.Equal(t, jobsAfterFirst, b.handleJobs(t, 3), "no new job")
	require.Len(t, b.recorded(t), 5)
}

func TestEventsOfOneObjectAreQueuedInTheOrderTheyHappened(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	// Two events about one session, put newest first.
	b.fake.PutEvent(rawEventAt("evt_2_succeeded", "checkout.session.async_payment_succeeded", "checkout.session", "cs_test_same", now.Add(-time.Minute)))
	b.fake.PutEvent(rawEventAt("evt_1_completed", "checkout.session.completed", "checkout.session", "cs_test_same", now.Add(-2*time.Minute)))

	_, err := b.rec.Run(context.Background(), b.rc, time.Hour)
	require.NoError(t, err)
	require.Equal(t, [][]string{{"evt_1_completed", "evt_2_succeeded"}}, b.handleJobs(t, 1),
		"Stripe lists newest first; the older event is handled first")
}

func TestUnreadableEventIsSkippedAndTheRestIngested(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.event(t, "checkout.session.completed", "invoice", "in_not_a_session")
	good := b.event(t, "invoice.paid", "invoice", "in_good")

	sum, err := b.rec.Run(context.Background(), b.rc, time.Hour)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Listed: 2, Ingested: 1, Unreadable: 1}, sum)
	require.Contains(t, sum.String(), "unreadable 1")
	require.Equal(t, []string{good}, b.recorded(t))
}

func TestLookbackStripeCannotServeIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for lookback, msg := range map[time.Duration]string{
		0:                   "must be more than zero",
		-time.Hour:          "must be more than zero",
		721 * time.Hour:     "Stripe keeps events (30 days)",
		31 * 24 * time.Hour: "Stripe keeps events (30 days)",
	} {
		_, err := b.rec.Run(context.Background(), b.rc, lookback)
		require.ErrorContains(t, err, msg, lookback)
	}
	require.Empty(t, b.fake.Requests())
	_, err := b.rec.Run(context.Background(), b.rc, 720*time.Hour)
	require.NoError(t, err, "30 days is what Stripe keeps")
}

// listerFunc adapts a function to reconcile.EventLister.
type listerFunc func(ctx context.Context, types []string, since time.Time, visit func([]json.RawMessage) error) error

func (f listerFunc) ListEvents(ctx context.Context, types []string, since time.Time, visit func([]json.RawMessage) error) error {
	return f(ctx, types, since, visit)
}

func TestARunCutOffKeepsWhatItRecordedAndTheNextFinishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.fake.SetMaxPageSize(2)
	for i := 0; i < 5; i++ {
		b.event(t, "invoice.paid", "invoice", fmt.Sprintf("in_%d", i))
	}
	// Stripe starts refusing after the first page.
	cut := *b.rec
	cut.Stripe = listerFunc(func(ctx context.Context, types []string, since time.Time, visit func([]json.RawMessage) error) error {
		return b.stripe.ListEvents(ctx, types, since, func(page []json.RawMessage) error {
			b.fake.FailNext("/v1/events", http.StatusTooManyRequests, 1)
			return visit(page)
		})
	})
	sum, err := cut.Run(ctx, b.rc, time.Hour)
	require.Error(t, err)
	require.Contains(t, err.Error(), "reconciling Stripe events since")
	require.Contains(t, err.Error(), "listing events (page 2): 429")
	require.NotContains(t, err.Error(), stripeKey)
	require.Equal(t, reconcile.Summary{Listed: 2, Ingested: 2}, sum, "the summary counts what was done")
	require.Len(t, b.recorded(t), 2)

	sum, err = b.rec.Run(ctx, b.rc, time.Hour)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Listed: 5, AlreadyRecorded: 2, Ingested: 3}, sum)
	require.Len(t, b.recorded(t), 5)
	require.ElementsMatch(t, b.recorded(t), b.queuedEventIDs(t), "each event queued once")
}

func TestConcurrentRunsIngestEachEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetMaxPageSize(7)
	for i := 0; i < 30; i++ {
		b.event(t, "charge.refunded", "charge", fmt.Sprintf("ch_%d", i))
	}
	var mu sync.Mutex
	var total reconcile.Summary
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := b.rec.Run(context.Background(), b.rc, time.Hour)
			if !assertNoError(t, err) {
				return
			}
			mu.Lock()
			total.Listed += sum.Listed
			total.Ingested += sum.Ingested
			total.AlreadyRecorded += sum.AlreadyRecorded
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Equal(t, 120, total.Listed)
	require.Equal(t, 30, total.Ingested, "each event ingested by one run")
	require.Equal(t, 90, total.AlreadyRecorded)
	queued := b.queuedEventIDs(t)
	require.ElementsMatch(t, b.recorded(t), queued, "each event queued once")
	require.Len(t, queued, 30)
}

// assertNoError reports err from a goroutine, where require cannot stop
// the test.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("run failed: %v", err)
		return false
	}
	return true
}
