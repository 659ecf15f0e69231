package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
	"fulfiller/internal/webhook"
)

// concurrently runs f(0..n-1) at once and waits for all.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

func TestPoisonEventsNeverFailTheEventsSentWithThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const valid = 160
	type delivery struct {
		body     []byte
		session  string // valid events: the session whose order it fails
		poison   *webhook.PoisonCase
		response answer
	}
	var deliveries []*delivery
	// Every poison twice, spread among the valid events, so that the
	// storable ones share transactions and jobs with valid events.
	poisons := append(webhook.PoisonCases(t), webhook.PoisonCases(t)...)
	require.Less(t, len(poisons), valid/4)
	for i := 0; i < valid; i++ {
		s := fulfillertest.NewID("cs_test_")
		deliveries = append(deliveries, &delivery{body: failedCheckout(t, s), session: s})
		if i%4 == 0 && i/4 < len(poisons) {
			deliveries = append(deliveries, &delivery{body: poisons[i/4].Body, poison: &poisons[i/4]})
		}
	}
	// Many at once: the writers record them in shared transactions.
	concurrently(len(deliveries), func(i int) { deliveries[i].response = b.post(t, deliveries[i].body) })

	for _, d := range deliveries {
		if d.poison == nil {
			require.Equal(t, http.StatusOK, d.response.status, d.response.body)
			continue
		}
		require.NotEqual(t, http.StatusServiceUnavailable, d.response.status, "%s: %s", d.poison.Name, d.response.body)
		if d.poison.Storable {
			require.Equal(t, http.StatusOK, d.response.status, "%s: %s", d.poison.Name, d.response.body)
		} else {
			require.Equal(t, http.StatusBadRequest, d.response.status, "%s: %s", d.poison.Name, d.response.body)
			require.Contains(t, d.response.body, `"error":`, d.poison.Name)
		}
	}

	handleJobs := b.waitForEventJobs(t)
	ctx := context.Background()
	for _, d := range deliveries {
		if d.poison != nil && !d.poison.Storable {
			continue
		}
		ev, err := webhook.ParseEvent(d.body)
		require.NoError(t, err)
		stored, err := postgres.EventPayload(ctx, b.pool, ev.ID)
		require.NoError(t, err, "recorded")
		require.Equal(t, d.body, stored, "recorded byte for byte")
		if d.poison == nil {
			require.Equal(t, 1, b.count(t, `SELECT count(*) FROM orders WHERE checkout_session_id = $1 AND status = 'failed'`, d.session),
				"the event was acted on")
		}
	}
	require.Equal(t, valid, b.count(t, `SELECT count(*) FROM orders WHERE customer_email = 'buyer@example.com'`))
	t.Logf("%d events recorded by %d handle_events jobs", b.count(t, `SELECT count(*) FROM stripe_events`), handleJobs)
}

func TestAnEventTheDatabaseRefusesFailsAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	webhook.RefuseAtDatabase(t, b.pool)
	const valid, refused = 90, 6
	bodies := make([][]byte, 0, valid+refused)
	for i := 0; i < valid+refused; i++ {
		if i%(valid/refused+1) == 0 {
			bodies = append(bodies, fulfillertest.Event(t, "checkout.session.async_payment_failed",
				object(t, map[string]any{"id": fulfillertest.NewID("cs_test_refused"), "object": "checkout.session"})))
			continue
		}
		bodies = append(bodies, failedCheckout(t, fulfillertest.NewID("cs_test_")))
	}
	answers := make([]answer, len(bodies))
	concurrently(len(bodies), func(i int) { answers[i] = b.post(t, bodies[i]) })

	var ok, unavailable int
	for i, a := range answers {
		if strings.Contains(string(bodies[i]), "cs_test_refused") {
			require.Equal(t, http.StatusServiceUnavailable, a.status, "its own transaction failed: Stripe retries it")
			require.Contains(t, a.body, "temporarily unable to record the event")
			unavailable++
			continue
		}
		require.Equal(t, http.StatusOK, a.status, a.body)
		ok++
	}
	require.Equal(t, refused, unavailable)
	require.Equal(t, valid, ok)
	require.Equal(t, valid, b.count(t, `SELECT count(*) FROM stripe_events`))
	b.waitForEventJobs(t)
	require.Equal(t, valid, b.count(t, `SELECT count(*) FROM orders WHERE status = 'failed'`))
}

func TestRecordTxEnqueuesOneJobForTheNewHandledEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	parse := func(body []byte) postgres.Event {
		ev, err := webhook.ParseEvent(body)
		require.NoError(t, err)
		return ev
	}
	first := parse(failedCheckout(t, "cs_test_b"))
	second := parse(failedCheckout(t, "cs_test_a"))
	unhandled := parse(fulfillertest.Event(t, "customer.created", []byte(`{"id":"cus_1","object":"customer"}`)))
	events := []postgres.Event{first, second, unhandled, first}

	var isNew []bool
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = webhook.RecordTx(ctx, tx, b.river, events)
		return err
	}))
	require.Equal(t, []bool{true, true, true, false}, isNew, "the second copy is a repeat")
	job := rivertest.RequireInserted(ctx, t, b.driver(), jobs.HandleEventsArgs{}, nil)
	require.Equal(t, []string{second.ID, first.ID}, job.Args.EventIDs, "one job, the handled events in the order of their objects")

	// Again, as a retry after a lost answer would: nothing new, no job.
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = webhook.RecordTx(ctx, tx, b.river, events)
		return err
	}))
	require.Equal(t, []bool{false, false, false, false}, isNew)
	again := rivertest.RequireInserted(ctx, t, b.driver(), jobs.HandleEventsArgs{}, nil)
	require.Equal(t, job.ID, again.ID, "no second job")
}

// A body can hold one key twice, or in two cases; parsers disagree on
// which one counts. Whatever intake recorded is what the job acts on.
func TestDuplicateKeysAreActedOnAsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	session := func(id string) string {
		return `{"id":"` + id + `","object":"checkout.session","payment_status":"unpaid","status":"complete"}`
	}
	now := fmt.Sprint(time.Now().Unix())
	lowerFirst, lowerLast := fulfillertest.NewID("evt_"), fulfillertest.NewID("evt_")
	bodies := map[string]string{
		lowerFirst: `{"id":"` + lowerFirst + `","created":` + now + `,"api_version":"2023-10-16",` +
			`"type":"checkout.session.async_payment_failed","TYPE":"customer.created",` +
			`"data":{"object":` + session("cs_test_dupA1") + `,"Object":` + session("cs_test_dupA2") + `}}`,
		lowerLast: `{"id":"` + lowerLast + `","created":` + now + `,"api_version":"2023-10-16",` +
			`"Type":"customer.created","type":"checkout.session.async_payment_failed",` +
			`"data":{"object":` + session("cs_test_dupB1") + `},"DATA":{"object":` + session("cs_test_dupB2") + `}}`,
	}
	for _, body := range bodies {
		a := b.post(t, []byte(body))
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	b.waitForEventJobs(t)

	kinds := map[bool]int{}
	for id := range bodies {
		var typ, objectID string
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT type, object_id FROM stripe_events WHERE id = $1`, id).Scan(&typ, &objectID))
		handled := typ == "checkout.session.async_payment_failed"
		kinds[handled]++
		if handled {
			require.Equal(t, 1, b.count(t, `SELECT count(*) FROM orders`+
				` WHERE checkout_session_id = $1 AND status = 'failed'`, objectID), "the recorded object was acted on")
		} else {
			require.Equal(t, "customer.created", typ)
		}
	}
	require.Equal(t, b.count(t, `SELECT count(*) FROM stripe_events WHERE handled`), b.count(t, `SELECT count(*) FROM orders`),
		"an order for each recorded handled event, none for the others")
	t.Logf("recorded types: %d handled, %d not", kinds[true], kinds[false])
}

func TestUnhandledEventsAreRecordedWhateverTheirObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := fmt.Sprint(time.Now().Unix())
	bodies := []string{
		`{"id":"` + fulfillertest.NewID("evt_") + `","type":"customer.created","created":` + now + `}`,
		`{"id":"` + fulfillertest.NewID("evt_") + `","type":"customer.updated","created":` + now + `,"data":{"object":{"object":"customer"}}}`,
		`{"id":"` + fulfillertest.NewID("evt_") + `","type":"plan.created","created":` + now + `,"data":{"object":{"id":"gold plan","object":"plan"}}}`,
	}
	for _, body := range bodies {
		a := b.post(t, []byte(body))
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	require.Equal(t, len(bodies), b.count(t, `SELECT count(*) FROM stripe_events WHERE NOT handled AND object_id = ''`))
	rivertest.RequireNotInserted(context.Background(), t, b.driver(), jobs.HandleEventsArgs{}, nil)
}
