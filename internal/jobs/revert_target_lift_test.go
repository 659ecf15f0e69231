package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// patchHook runs before once, then fails, the first PATCH of a key: the
// request never reached Luarmor.
type patchHook struct {
	jobs.Luarmor
	once   sync.Once
	before func()
}

func (h *patchHook) UpdateUser(ctx context.Context, projectID string, req luarmor.UpdateUserRequest) error {
	failed := false
	h.once.Do(func() {
		h.before()
		failed = true
	})
	if failed {
		return &luarmor.TransportError{Endpoint: "PATCH users", Err: errors.New("connection reset")}
	}
	return h.Luarmor.UpdateUser(ctx, projectID, req)
}

// A refund of a purchase that extended a key is lifted after its revert
// was decided but before Luarmor was told; the same payment is taken back
// again later, after another purchase added days to the key. The second
// revocation takes back the purchase's days from the key as it is then,
// not the expiry the lifted one computed: the days added since stay.
func TestLiftedRevertIsNotReusedByALaterRevocation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.purchase(t, plain, "cs_test_lifted_first", 1)
	b.purchase(t, plain, "cs_test_lifted_later", 1)
	b.start(t, plain)
	first := b.waitFulfilled(t, "cs_test_lifted_first").Keys[0]
	later := b.waitFulfilled(t, "cs_test_lifted_later").Keys[0]
	require.NoError(t, plain.Stop(ctx))

	// The later unit extended the first key by its 14 days.
	from := time.Now().Add(14 * 24 * time.Hour).Unix()
	expire := from + 14*86400
	require.NoError(t, b.deps.Luarmor.UpdateUser(ctx, project, luarmor.UpdateUserRequest{UserKey: first.UserKey, AuthExpire: &expire}))
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET user_key = $2, extended_existing = true, extend_from = $3, extend_target = $4
		WHERE id = $1`, later.ID, first.UserKey, from, expire)
	require.NoError(t, err)

	revoke := func(sourceID string) int64 {
		var id int64
		require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO revocations (source, source_id, payment_intent_id, action, reason)
			VALUES ('refund', $1, 'pi_cs_test_lifted_later', 'blacklist', 'Payment refunded') RETURNING id`, sourceID).Scan(&id))
		_, err := b.pool.Exec(ctx, `UPDATE orders SET status = 'revoked', revocation_id = $2 WHERE checkout_session_id = $1`,
			later.CheckoutSessionID, id)
		require.NoError(t, err)
		return id
	}
	lifted := revoke("re_lifted_first")

	deps := b.deps
	deps.Luarmor = &patchHook{Luarmor: b.deps.Luarmor, before: func() {
		_, err := b.pool.Exec(ctx, `UPDATE revocations SET status = 'lifted', lifted_at = now() WHERE id = $1`, lifted)
		require.NoError(t, err)
	}}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)
	job, err := client.Insert(ctx, jobs.RevokeKeyArgs{OrderKeyID: later.ID, RevocationID: lifted}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var state string
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, job.Job.ID).Scan(&state))
		return state == "completed"
	}, 20*time.Second, 20*time.Millisecond, "the retry finds the refund lifted")
	_, err = client.Insert(ctx, jobs.LiftRevocationArgs{RevocationID: lifted}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		o, err := postgres.GetOrder(ctx, b.pool, later.CheckoutSessionID)
		return err == nil && o.Status == order.StatusFulfilled
	}, 20*time.Second, 20*time.Millisecond)
	u, err := b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
	require.NoError(t, err)
	require.Equal(t, expire, u.AuthExpire, "the lifted refund took nothing")

	// Another purchase adds 20 days; then the payment is refunded again.
	added := expire + 20*86400
	require.NoError(t, b.deps.Luarmor.UpdateUser(ctx, project, luarmor.UpdateUserRequest{UserKey: first.UserKey, AuthExpire: &added}))
	again := revoke("re_lifted_again")
	_, err = client.Insert(ctx, jobs.RevokeKeyArgs{OrderKeyID: later.ID, RevocationID: again}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		k, err := postgres.GetKey(ctx, b.pool, later.ID)
		return err == nil && k.Status == order.KeyReverted
	}, 20*time.Second, 20*time.Millisecond)
	u, err = b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
	require.NoError(t, err)
	require.Equal(t, added-14*86400, u.AuthExpire, "only the refunded purchase's 14 days come off; the 20 added since stay")
}
