package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres"
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
		poison   *poisonCase
		response answer
	}
	var deliveries []*delivery
	// Every poison twice, spread among the valid events, so that the
	// storable ones share transactions and jobs with valid events.
	poisons := append(poisonCases(t), poisonCases(t)...)
	require.Less(t, len(poisons), valid/4)
	for i := 0; i < valid; i++ {
		s := newID("cs_test_")
		deliveries = append(deliveries, &delivery{body: failedCheckout(t, s), session: s})
		if i%4 == 0 && i/4 < len(poisons) {
			deliveries = append(deliveries, &delivery{body: poisons[i/4].body, poison: &poisons[i/4]})
		}
	}
	// Many at once: the writers record them in shared transactions.
	concurrently(len(deliveries), func(i int) { deliveries[i].response = b.post(t, deliveries[i].body) })

	for _, d := range deliveries {
		if d.poison == nil {
			require.Equal(t, http.StatusOK, d.response.status, d.response.body)
			continue
		}
		require.NotEqual(t, http.StatusServiceUnavailable, d.response.status, "%s: %s", d.poison.name, d.response.body)
		if d.poison.storable {
			require.Equal(t, http.StatusOK, d.response.status, "%s: %s", d.poison.name, d.response.body)
		} else {
			require.Equal(t, http.StatusBadRequest, d.response.status, "%s: %s", d.poison.name, d.response.body)
			require.Contains(t, d.response.body, `"error":`, d.poison.name)
		}
	}

	b.waitForEventJobs(t)
	ctx := context.Background()
	for _, d := range deliveries {
		if d.poison != nil && !d.poison.storable {
			continue
		}
		ev, err := ParseEvent(d.body)
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
	t.Logf("%d events recorded by %d handle_events jobs", b.count(t, `SELECT count(*) FROM stripe_events`),
		b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events'`))
}

func TestAnEventTheDatabaseRefusesFailsAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	refuseAtDatabase(t, b.pool)
	const valid, refused = 90, 6
	bodies := make([][]byte, 0, valid+refused)
	for i := 0; i < valid+refused; i++ {
		if i%(valid/refused+1) == 0 {
			bodies = append(bodies, eventBody(t, newID("evt_refused"), "checkout.session.async_payment_failed",
				map[string]any{"id": newID("cs_test_"), "object": "checkout.session"}))
			continue
		}
		bodies = append(bodies, failedCheckout(t, newID("cs_test_")))
	}
	answers := make([]answer, len(bodies))
	concurrently(len(bodies), func(i int) { answers[i] = b.post(t, bodies[i]) })

	var ok, unavailable int
	for i, a := range answers {
		if strings.Contains(string(bodies[i]), "evt_refused") {
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

// A batch is forced by queueing every event before the writer starts: it
// takes them all into one transaction. Events that skipped ParseEvent
// stand for anything a check might miss.
func TestAFailedSharedTransactionIsRecordedEventByEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	refuseAtDatabase(t, b.pool)

	var events []postgres.Event
	var bad []bool
	for i := 0; i < 40; i++ {
		ev, err := ParseEvent(failedCheckout(t, fmt.Sprintf("cs_test_batch%03d", i)))
		require.NoError(t, err)
		events, bad = append(events, ev), append(bad, false)
	}
	now := time.Now()
	unchecked := []postgres.Event{
		{ID: "evt_nul\x00", Type: "customer.created", CreatedAt: now, Payload: []byte(`{}`)},
		{ID: "evt_far_future", Type: "customer.created", CreatedAt: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC), Payload: []byte(`{}`)},
		// Random, so that PostgreSQL cannot compress it into an index entry.
		{ID: "evt_" + randomAlnum(3000), Type: "customer.created", CreatedAt: now, Payload: []byte(`{}`)},
		{ID: "evt_bad_type", Type: "customer.\xff", CreatedAt: now, Payload: []byte(`{}`)},
	}
	refused, err := ParseEvent(eventBody(t, "evt_refused_batch", "checkout.session.async_payment_failed",
		map[string]any{"id": "cs_test_refused", "object": "checkout.session"}))
	require.NoError(t, err, "the refused event passes every check")
	unchecked = append(unchecked, refused)
	for i, e := range unchecked {
		at := 7 * (i + 1) // among the valid ones
		events = append(events[:at], append([]postgres.Event{e}, events[at:]...)...)
		bad = append(bad[:at], append([]bool{true}, bad[at:]...)...)
	}
	require.LessOrEqual(t, len(events), maxBatch)

	in := newIntake(b.pool, b.river, slogTo(b.logs), 0)
	pendings := make([]*pending, len(events))
	for i, e := range events {
		pendings[i] = &pending{ctx: context.Background(), event: e, done: make(chan result, 1)}
		in.queue <- pendings[i]
	}
	in.wg.Add(1)
	go in.write()
	t.Cleanup(in.close)

	for i, p := range pendings {
		r := <-p.done
		if bad[i] {
			require.Error(t, r.err, "event %d", i)
			continue
		}
		require.NoError(t, r.err, "event %d", i)
		require.True(t, r.isNew, "event %d", i)
	}
	require.Contains(t, b.logs.String(), fmt.Sprintf("shared webhook transaction failed; recording its events one by one\" events=%d", len(events)),
		"all were in one transaction, and it failed")
	require.Equal(t, 40, b.count(t, `SELECT count(*) FROM stripe_events`))
	b.waitForEventJobs(t)
	require.Equal(t, 40, b.count(t, `SELECT count(*) FROM orders WHERE status = 'failed'`), "every valid event was acted on")
}

func TestRecordTxEnqueuesOneJobForTheNewHandledEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	parse := func(body []byte) postgres.Event {
		ev, err := ParseEvent(body)
		require.NoError(t, err)
		return ev
	}
	first := parse(failedCheckout(t, "cs_test_b"))
	second := parse(failedCheckout(t, "cs_test_a"))
	unhandled := parse(eventBody(t, newID("evt_"), "customer.created", map[string]any{"id": "cus_1", "object": "customer"}))
	events := []postgres.Event{first, second, unhandled, first}

	var isNew []bool
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = RecordTx(ctx, tx, b.river, events)
		return err
	}))
	require.Equal(t, []bool{true, true, true, false}, isNew, "the second copy is a repeat")
	var ids [][]string
	rows, err := b.pool.Query(ctx, `SELECT args->'event_ids' FROM river_job WHERE kind = 'handle_events'`)
	require.NoError(t, err)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[[]string])
	require.NoError(t, err)
	require.Equal(t, [][]string{{second.ID, first.ID}}, ids, "one job, the handled events in the order of their objects")

	// Again, as a retry after a lost answer would: nothing new, no job.
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = RecordTx(ctx, tx, b.river, events)
		return err
	}))
	require.Equal(t, []bool{false, false, false, false}, isNew)
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events'`))
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
	lowerFirst, lowerLast := newID("evt_"), newID("evt_")
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
		`{"id":"` + newID("evt_") + `","type":"customer.created","created":` + now + `}`,
		`{"id":"` + newID("evt_") + `","type":"customer.updated","created":` + now + `,"data":{"object":{"object":"customer"}}}`,
		`{"id":"` + newID("evt_") + `","type":"plan.created","created":` + now + `,"data":{"object":{"id":"gold plan","object":"plan"}}}`,
	}
	for _, body := range bodies {
		a := b.post(t, []byte(body))
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	require.Equal(t, len(bodies), b.count(t, `SELECT count(*) FROM stripe_events WHERE NOT handled AND object_id = ''`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM river_job`+` WHERE kind = 'handle_events'`))
}
