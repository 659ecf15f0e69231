package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/postgres/postgrestest"
)

func TestKeysEmailWaitsOnAReplicaWithoutMailThenIsCancelledSayingToResend(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	o := buyerOrder(t, pool, "buyer@example.com")
	_, err := pool.Exec(ctx, `INSERT INTO order_emails (checkout_session_id, delivery, message_id) VALUES ($1, 1, 'test@shop.example')`,
		o.CheckoutSessionID)
	require.NoError(t, err)
	inserter, err := NewClient(Deps{Pool: pool}, Config{})
	require.NoError(t, err)
	_, err = inserter.Insert(ctx, SendOrderEmailArgs{OrderID: o.ID, OrderRef: logging.OrderRef(o.CheckoutSessionID), Delivery: 1}, nil)
	require.NoError(t, err)

	lookupReplica(t, pool, nil)
	var job jobState
	require.Eventually(t, func() bool {
		job = onlyJob(t, pool, SendOrderEmailArgs{}.Kind())
		return job.snoozes >= 1
	}, 10*time.Second, 20*time.Millisecond, "the replica without mail puts the job back")
	require.Equal(t, "scheduled", job.state)
	require.Zero(t, job.attempt, "a snooze uses no attempt")
	require.Empty(t, job.errors)

	// A day on, no replica with mail ever came.
	_, err = pool.Exec(ctx, `UPDATE river_job SET created_at = now() - interval '25 hours', scheduled_at = now() WHERE id = $1`, job.id)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		job = onlyJob(t, pool, SendOrderEmailArgs{}.Kind())
		return job.state == "cancelled"
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, job.errors, "no replica with mail (SMTP_URL) took this keys email")
	require.Contains(t, job.errors, "resend-email")
	var status string
	require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM order_emails WHERE checkout_session_id = $1`, o.CheckoutSessionID).Scan(&status))
	require.Equal(t, "queued", status, "the delivery was never attempted")
}
