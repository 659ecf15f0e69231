package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// recordAndHandle records events as intake would and works one
// handle_events job for them, returning the finished job.
func (b *testBundle) recordAndHandle(t *testing.T, events ...postgres.Event) *rivertype.JobRow {
	t.Helper()
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	ctx := context.Background()
	ids := make([]string, len(events))
	var job *rivertype.JobInsertResult
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := postgres.RecordEvents(ctx, tx, events); err != nil {
			return err
		}
		for i, e := range events {
			ids[i] = e.ID
		}
		job, err = client.InsertTx(ctx, tx, jobs.HandleEventsArgs{EventIDs: ids}, nil)
		return err
	}))
	return waitJobs(t, w, job.Job.ID)[job.Job.ID]
}

func recordedEvent(id, typ string, payload string) postgres.Event {
	_, handled := jobs.HandledObject(typ)
	return postgres.Event{ID: id, Type: typ, CreatedAt: time.Now(), Handled: handled, Payload: []byte(payload)}
}

// The job acts on the type recorded at intake, whatever a second reading of
// the body would say.
func TestHandleEventsDispatchesOnTheRecordedType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	row := b.recordAndHandle(t,
		recordedEvent("evt_recorded_handled", "checkout.session.async_payment_failed",
			`{"type":"customer.created","TYPE":"customer.deleted","data":{"object":{"id":"cs_test_recorded1","object":"checkout.session"}}}`),
		recordedEvent("evt_recorded_unhandled", "customer.created",
			`{"type":"checkout.session.async_payment_failed","data":{"object":{"id":"cs_test_recorded2","object":"checkout.session"}}}`),
	)
	require.Equal(t, rivertype.JobStateCompleted, row.State)
	o, err := postgres.GetOrder(context.Background(), b.pool, "cs_test_recorded1")
	require.NoError(t, err, "the recorded type was acted on")
	require.EqualValues(t, "failed", o.Status)
	_, err = postgres.GetOrder(context.Background(), b.pool, "cs_test_recorded2")
	require.Error(t, err, "an event recorded as unhandled changes nothing, whatever its body says")
}

// A value PostgreSQL refuses (a NUL character in a text column) fails the
// same way on every retry: the event is skipped and the job goes on with
// the events recorded with it.
func TestHandleEventsSkipsAnEventPostgreSQLRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	object := func(id, email string) string {
		return `{"data":{"object":{"id":"` + id + `","object":"checkout.session","customer_details":{"email":"` + email + `"}}}}`
	}
	row := b.recordAndHandle(t,
		recordedEvent("evt_nul_email", "checkout.session.async_payment_failed", object("cs_test_nulmail", `a\u0000@example.com`)),
		recordedEvent("evt_after_nul", "checkout.session.async_payment_failed", object("cs_test_aftermail", "b@example.com")),
		recordedEvent("evt_not_json", "checkout.session.async_payment_failed", `{"data":`),
		recordedEvent("evt_no_object", "invoice.paid", `{"data":{}}`),
	)
	require.Equal(t, rivertype.JobStateCompleted, row.State)
	require.Equal(t, 1, row.Attempt, "no retry: it would fail the same way")
	_, err := postgres.GetOrder(context.Background(), b.pool, "cs_test_nulmail")
	require.Error(t, err, "nothing of the refused event was kept")
	o, err := postgres.GetOrder(context.Background(), b.pool, "cs_test_aftermail")
	require.NoError(t, err)
	require.EqualValues(t, "failed", o.Status)
	require.Equal(t, "b@example.com", o.CustomerEmail)
}
