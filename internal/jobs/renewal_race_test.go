package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

// TestRenewalOfAUnitDeliveredWhileItsJobDecidesIsNotLost: a renewal job
// finds a unit not delivered yet and is about to end; the unit's delivery
// commits in between and queues the renewal again, an insert River drops
// while the first job still runs. The renewal must still be applied. The
// job decides under the order's lock, which the delivery holds here until
// its duplicate insert is dropped and it commits.
func TestRenewalOfAUnitDeliveredWhileItsJobDecidesIsNotLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	direct := b.deps.Luarmor.(*luarmor.Client)
	key, err := direct.CreateUser(ctx, project, luarmor.CreateUserRequest{KeyDays: 30})
	require.NoError(t, err)
	expires := time.Now().Add(90 * 24 * time.Hour).Unix()
	var keyID int64
	require.NoError(t, b.pool.QueryRow(ctx, `
		WITH o AS (INSERT INTO orders (checkout_session_id, status, mode, payment_status, subscription_id, items_loaded_at)
			VALUES ('cs_test_race', 'pending', 'subscription', 'paid', 'sub_race', now())),
		r AS (INSERT INTO renewals (invoice_id, subscription_id, billing_reason, period_end, expires_at, extends)
			VALUES ('in_race', 'sub_race', 'subscription_cycle', $1::bigint - 86400, $1::bigint, true))
		INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference, status, recurring)
		VALUES ('cs_test_race', 'li_1', 1, 'price_a', $2, 30, 'fk_race', 'pending', true) RETURNING id`, expires, project).Scan(&keyID))

	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)

	// The delivery holds the order's lock, not committed yet.
	delivery, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer delivery.Rollback(ctx) //nolint:errcheck
	require.NoError(t, postgres.DeliverKey(ctx, delivery, keyID, key, nil, false))

	// The renewal job runs meanwhile: it reads the unit undelivered and
	// waits for the order's lock to decide.
	_, err = client.Insert(ctx, jobs.ExtendKeyArgs{OrderKeyID: keyID, InvoiceID: "in_race"}, nil)
	require.NoError(t, err)
	b.start(t, client)
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting))
		return waiting > 0
	}, 10*time.Second, 5*time.Millisecond, "the renewal job waits for the order's lock")

	// The delivery queues the renewal again: a duplicate of the running job.
	res, err := client.InsertTx(ctx, delivery, jobs.ExtendKeyArgs{OrderKeyID: keyID, InvoiceID: "in_race"}, nil)
	require.NoError(t, err)
	require.True(t, res.UniqueSkippedAsDuplicate, "River drops the insert while the first job runs")
	require.NoError(t, delivery.Commit(ctx))

	require.Eventually(t, func() bool {
		applied, err := postgres.KeyRenewalApplied(ctx, b.pool, keyID, "in_race")
		require.NoError(t, err)
		return applied
	}, 10*time.Second, 10*time.Millisecond, "the renewal is applied after all")
	u, ok := b.sandbox.User(project, key)
	require.True(t, ok)
	require.Equal(t, expires, u.AuthExpire)
}
