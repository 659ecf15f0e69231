package jobs_test

import (
	"context"
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
)

func TestKeysEmailWaitsOnAReplicaWithoutMailThenIsCancelledSayingToResend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	o := buyerOrder(t, b.pool, "buyer@example.com")
	_, err := b.pool.Exec(ctx, `INSERT INTO order_emails (order_id, delivery, message_id) SELECT id, 1, 'test@shop.example' FROM orders WHERE checkout_session_id = $1`,
		o.CheckoutSessionID)
	require.NoError(t, err)
	_, err = b.inserter(t).Insert(ctx, jobs.SendOrderEmailArgs{OrderID: o.ID, OrderRef: logging.OrderRef(o.CheckoutSessionID), Delivery: 1}, nil)
	require.NoError(t, err)

	_, noMailJobs := b.mailReplica(t, nil)
	job := waitSnoozed(t, noMailJobs, jobs.SendOrderEmailArgs{}.Kind(), "the replica without mail puts the job back")
	require.Equal(t, rivertype.JobStateScheduled, job.State)
	require.Zero(t, job.Attempt, "a snooze uses no attempt")
	require.Empty(t, job.Errors)

	// A day on, no replica with mail ever came. (River has no way to date
	// a job's creation back: the row is changed directly.)
	_, err = b.pool.Exec(ctx, `UPDATE river_job SET created_at = now() - interval '25 hours', scheduled_at = now() WHERE id = $1`, job.ID)
	require.NoError(t, err)
	ended := waitJobs(t, noMailJobs, job.ID)[job.ID]
	require.Equal(t, rivertype.JobStateCancelled, ended.State)
	require.Contains(t, jobErrors(ended), "no replica with mail (SMTP_URL) took this keys email")
	require.Contains(t, jobErrors(ended), "resend-email")
	var status string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT status FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, o.CheckoutSessionID).Scan(&status))
	require.Equal(t, "queued", status, "the delivery was never attempted")
}
