package app_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
	"fulfiller/internal/retention"
	"fulfiller/internal/stripeapi/stripefake"
)

// The prune_history job, run by the service's own River client, drops the
// body of a sale's Stripe event once it is handled and older than
// RETENTION_EVENT_PAYLOAD_DAYS, and keeps the body of an event whose job
// has not completed, however old. Stripe delivering the pruned event again
// is answered as a duplicate: no job is queued, no key is made, and the
// event stays as it was, until its row goes after RETENTION_EVENT_ID_DAYS.
func TestPruneHistoryKeepsDuplicatesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	var eventID string
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT id FROM stripe_events WHERE object_id = $1 AND NOT awaiting_handler`, s.ID).Scan(&eventID),
		"the sale's event is marked handled with its job's completion")
	original, err := postgres.EventPayload(ctx, b.Pool, eventID)
	require.NoError(t, err)

	// An event recorded but never handled (its job given up, say), and
	// both received long ago.
	waiting := fulfillertest.Event(t, "invoice.paid", []byte(`{"id":"in_never_handled","object":"invoice"}`))
	var waitingID string
	require.NoError(t, json.Unmarshal(waiting, &struct{ ID *string }{&waitingID}))
	require.NoError(t, pgx.BeginFunc(ctx, b.Pool, func(tx pgx.Tx) error {
		_, err := postgres.RecordEvents(ctx, tx, []postgres.Event{{ID: waitingID, Type: "invoice.paid", APIVersion: "2023-10-16",
			ObjectID: "in_never_handled", CreatedAt: time.Now(), Handled: true, Payload: waiting}})
		return err
	}))
	_, err = b.Pool.Exec(ctx, `UPDATE stripe_events SET received_at = now() - interval '60 days'`)
	require.NoError(t, err)

	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err = b.Main.River.Insert(ctx, jobs.PruneHistoryArgs{}, nil)
	require.NoError(t, err)
	done := watch.WaitCompleted(t, "prune_history", 1)[0]
	var sum retention.Summary
	require.NoError(t, json.Unmarshal(done.Output(), &sum))
	require.True(t, sum.Complete, "the run pruned everything due")
	require.Equal(t, int64(1), sum.Pruned["stripe_event_payloads"], "the old handled event's body, and no other")

	pruned, err := postgres.EventPayload(ctx, b.Pool, eventID)
	require.NoError(t, err)
	require.Nil(t, pruned)
	kept, err := postgres.EventPayload(ctx, b.Pool, waitingID)
	require.NoError(t, err)
	require.Equal(t, waiting, kept, "an event not handled yet keeps its body")
	require.Equal(t, 1.0, prunedRowsCounted(t, b, "stripe_event_payloads"))

	handleJobs := b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events'`)
	for range 2 {
		b.Deliver(t, original)
	}
	require.Equal(t, handleJobs, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events'`), "a duplicate queues nothing")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM stripe_events WHERE id = $1 AND payload IS NULL AND NOT awaiting_handler`, eventID))
	require.Equal(t, 1, b.luarmorUsersFor(s.ID), "no second key")
	b.WaitOrder(t, s.ID, "fulfilled")

	// Past RETENTION_EVENT_ID_DAYS, long after Stripe can send it again,
	// the handled event's row goes too; the one never handled stays.
	_, err = b.Pool.Exec(ctx, `UPDATE stripe_events SET received_at = now() - interval '100 days'`)
	require.NoError(t, err)
	res, err := b.Main.River.Insert(ctx, jobs.PruneHistoryArgs{}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate, "the first run is done")
	done = watch.WaitCompleted(t, "prune_history", 1)[0]
	sum = retention.Summary{}
	require.NoError(t, json.Unmarshal(done.Output(), &sum))
	require.Equal(t, int64(1), sum.Pruned["stripe_event_rows"], "the handled event's row, and no other")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM stripe_events WHERE id = $1`, eventID))
	kept, err = postgres.EventPayload(ctx, b.Pool, waitingID)
	require.NoError(t, err)
	require.Equal(t, waiting, kept, "an event not handled yet keeps its row and body")
	require.Equal(t, 1.0, prunedRowsCounted(t, b, "stripe_event_rows"))
}

// prunedRowsCounted reads fulfiller_retention_pruned_rows_total of kind.
func prunedRowsCounted(t *testing.T, b *bundle, kind string) float64 {
	t.Helper()
	families, err := b.Main.Metrics.Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "fulfiller_retention_pruned_rows_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no fulfiller_retention_pruned_rows_total{kind=%q}", kind)
	return 0
}
