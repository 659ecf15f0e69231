package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// The purchase that made a key is revoked while a later purchase that
// extended the key still stands, and that later payment is revoked too
// after the check that found it standing: the decision, taken again under
// the order's lock, bans the key instead of leaving it alive for nobody.
func TestFirstPurchaseRevokedAsTheLastHolderIsRevokedBansTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.purchase(t, plain, "cs_test_shared_first", 1)
	b.purchase(t, plain, "cs_test_shared_later", 1)
	b.start(t, plain)
	first := b.waitFulfilled(t, "cs_test_shared_first").Keys[0]
	later := b.waitFulfilled(t, "cs_test_shared_later").Keys[0]
	require.NoError(t, plain.Stop(ctx))

	// The later unit extended the first key by its 14 days.
	expire := time.Now().Add(28 * 24 * time.Hour).Unix()
	require.NoError(t, b.deps.Luarmor.UpdateUser(ctx, project, luarmor.UpdateUserRequest{UserKey: first.UserKey, AuthExpire: &expire}))
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET user_key = $2, extended_existing = true WHERE id = $1`, later.ID, first.UserKey)
	require.NoError(t, err)

	var revocationID int64
	require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO revocations (source, source_id, payment_intent_id, action, reason)
		VALUES ('refund', 're_shared_first', 'pi_cs_test_shared_first', 'blacklist', 'Payment refunded') RETURNING id`).Scan(&revocationID))
	_, err = b.pool.Exec(ctx, `UPDATE orders SET status = 'revoked', revocation_id = $2 WHERE checkout_session_id = $1`,
		first.CheckoutSessionID, revocationID)
	require.NoError(t, err)

	deps := b.deps
	deps.Luarmor = &readHook{Luarmor: b.deps.Luarmor, before: func() {
		// The later payment is taken back once its unit was found standing.
		_, err := b.pool.Exec(ctx, `UPDATE orders SET status = 'revoked' WHERE checkout_session_id = $1`, later.CheckoutSessionID)
		require.NoError(t, err)
	}}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)
	_, err = client.Insert(ctx, jobs.RevokeKeyArgs{OrderKeyID: first.ID, RevocationID: revocationID}, nil)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		k, err := postgres.GetKey(ctx, b.pool, first.ID)
		return err == nil && k.Status == order.KeyBlacklisted
	}, 20*time.Second, 20*time.Millisecond)
	k, err := postgres.GetKey(ctx, b.pool, first.ID)
	require.NoError(t, err)
	require.Nil(t, k.RevertTarget, "no revert was decided")
	u, err := b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
	require.NoError(t, err)
	require.True(t, u.IsBanned())
	require.Equal(t, expire, u.AuthExpire, "no days were taken before the ban")
}
