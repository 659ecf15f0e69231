package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// readHook runs before the first read of a key: what commits meanwhile.
type readHook struct {
	jobs.Luarmor
	once   sync.Once
	before func()
}

func (h *readHook) GetUser(ctx context.Context, projectID, userKey string) (*luarmor.User, error) {
	h.once.Do(h.before)
	return h.Luarmor.GetUser(ctx, projectID, userKey)
}

// A dispute won lifts its ban while support bans the same key (or a
// reissue retires it, which is support's ban too): support's ban, recorded
// after the unban read the key, holds.
func TestSupportBanDuringADisputesUnbanHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.purchase(t, plain, "cs_test_unbanrace1", 1)
	b.start(t, plain)
	k := b.waitFulfilled(t, "cs_test_unbanrace1").Keys[0]
	require.NoError(t, plain.Stop(ctx))

	// The dispute's ban, recorded.
	require.NoError(t, b.deps.Luarmor.Blacklist(ctx, project, luarmor.BlacklistRequest{UserKey: k.UserKey, BanReason: "Payment disputed"}))
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET status = 'blacklisted' WHERE id = $1`, k.ID)
	require.NoError(t, err)

	deps := b.deps
	deps.Luarmor = &readHook{Luarmor: b.deps.Luarmor, before: func() {
		// Support blacklists the key the dispute banned: no Luarmor call
		// (it is banned already), its ban recorded.
		_, err := b.pool.Exec(ctx, `UPDATE order_keys SET support_ban = true WHERE id = $1`, k.ID)
		require.NoError(t, err)
	}}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)
	res, err := client.Insert(ctx, jobs.UnbanKeyArgs{OrderKeyID: k.ID}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		j, err := client.JobGet(ctx, res.Job.ID)
		return err == nil && j.State == rivertype.JobStateCompleted
	}, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		u, err := b.deps.Luarmor.GetUser(ctx, project, k.UserKey)
		got, err2 := postgres.GetKey(ctx, b.pool, k.ID)
		return err == nil && err2 == nil && u.IsBanned() && got.Status == order.KeyBlacklisted && got.SupportBan
	}, 20*time.Second, 50*time.Millisecond, "support's ban holds in Luarmor and in the database")
}
