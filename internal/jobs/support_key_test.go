package jobs_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// support is the support operations over client's queue, as the admin
// API and the CLI build them.
func (b *testBundle) support(client *river.Client[pgx.Tx]) *jobs.Support {
	return &jobs.Support{Pool: b.pool, River: client, Logger: b.deps.Logger,
		Orders: &jobs.Orders{Pool: b.pool, River: client, Logger: b.deps.Logger}}
}

// keyAction asks for a support action on a key and waits for its outcome.
func keyAction(t *testing.T, s *jobs.Support, action jobs.KeyAction, userKey, reason string) *jobs.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := s.KeyAction(ctx, jobs.ActorCLI, jobs.KeyRequest{Action: action, UserKey: userKey, Reason: reason})
	require.NoError(t, err)
	out, err := s.Wait(ctx, q)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, out.State, "%s: %s", action, out.Error)
	return out
}

// cutOffBan is Luarmor whose first ban is applied but its answer lost on
// the way back: the run that sent it is cut off mid-call.
type cutOffBan struct {
	jobs.Luarmor
	cut atomic.Bool
}

func (c *cutOffBan) Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error {
	if err := c.Luarmor.Blacklist(ctx, projectID, req); err != nil || c.cut.Swap(true) {
		return err
	}
	return fmt.Errorf("the connection dropped after the ban was sent: %w", luarmor.ErrOutcomeUnknown)
}

// One fulfilled purchase of 14 days, with its key's clock started.
func bought(t *testing.T, b *testBundle, id string) (order.Key, int64) {
	t.Helper()
	ctx := context.Background()
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.purchase(t, plain, id, 1)
	w := b.start(t, plain)
	k := b.waitFulfilled(t, w, id).Keys[0]
	require.NoError(t, plain.Stop(ctx))
	var ledgerID int64
	require.NoError(t, b.pool.QueryRow(ctx, `UPDATE ledger_keys SET started_at = $3
		WHERE project_id = $1 AND user_key = $2 RETURNING id`, project, k.UserKey, time.Now().Unix()).Scan(&ledgerID))
	return k, ledgerID
}

func luarmorUser(t *testing.T, b *testBundle, userKey string) *luarmor.User {
	t.Helper()
	u, err := b.deps.Luarmor.GetUser(context.Background(), project, userKey)
	require.NoError(t, err)
	return u
}

// The process dies right after support's blacklist committed, before any
// worker ran; in the next process the writer's ban is cut off after
// Luarmor applied it. The key ends banned, with one ban sent, and a
// second blacklist sends nothing.
func TestSupportBlacklistCutOffEndsBannedWithOneBan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	k, ledgerID := bought(t, b, "cs_test_support_cutoff")

	dead, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	q, err := b.support(dead).KeyAction(ctx, jobs.ActorCLI, jobs.KeyRequest{Action: jobs.ActionBlacklistKey, UserKey: k.UserKey, Reason: "Key shared"})
	require.NoError(t, err)
	var held bool
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT support_ban FROM order_keys WHERE id = $1`, k.ID).Scan(&held))
	require.True(t, held, "the ban is a fact of the ledger from the request's commit on")
	require.False(t, luarmorUser(t, b, k.UserKey).IsBanned(), "nothing was sent yet")

	deps := b.deps
	deps.Luarmor = &cutOffBan{Luarmor: b.deps.Luarmor}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	s := b.support(client)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := s.Wait(wctx, q)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, out.State, out.Error)
	require.Equal(t, order.KeyBlacklisted, out.Key.Status, "the outcome shows what the writer applied")
	waitApplied(t, b, w, ledgerID)

	out = keyAction(t, s, jobs.ActionBlacklistKey, k.UserKey, "Key shared")
	require.Equal(t, order.KeyBlacklisted, out.Key.Status)
	u := luarmorUser(t, b, k.UserKey)
	require.True(t, u.IsBanned())
	require.Equal(t, "Key shared", u.BanReason)
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodPost, "/users/blacklist"), "the retry read the key banned; the repeat changed no fact")
}

// Two purchases share a key; support bans it, then a dispute of the later
// purchase bans it too. Support's unban lifts support's ban only: the
// dispute's holds, in Luarmor and in the units' state.
func TestSupportUnbanLeavesADisputesBan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, later, ledgerID := sharedKey(t, b, "cs_test_support_dispute")
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	s := b.support(client)
	keyAction(t, s, jobs.ActionBlacklistKey, first.UserKey, "Key shared")

	r := revocation(t, b, "dispute", "dp_support_unban")
	revokeGrants(t, b, later.ID, r, entitlement.Banned)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	out := keyAction(t, s, jobs.ActionUnbanKey, first.UserKey, "")
	require.False(t, out.Key.SupportBan, "support's ban is lifted")
	require.True(t, luarmorUser(t, b, first.UserKey).IsBanned(), "the dispute's ban holds")
	require.Zero(t, b.sandbox.CallCount(http.MethodGet, "/users/unban"), "nothing was unbanned")
	require.Equal(t, order.KeyBlacklisted, out.Key.Status)
	waitApplied(t, b, w, ledgerID)

	// The dispute is won: nothing holds the key banned any more.
	err = pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, err := postgres.RestoreGrants(context.Background(), tx, r.ID, false)
		return err
	})
	require.NoError(t, err)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	require.False(t, luarmorUser(t, b, first.UserKey).IsBanned())
}

// A key support banned stays banned through every later change of its
// ledger (days added, a sync), with support's reason; support's unban then
// gives it the time its payments hold in one go.
func TestSupportBanSurvivesLaterSyncs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, later, ledgerID := sharedKey(t, b, "cs_test_support_survives")
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	s := b.support(client)
	r := revocation(t, b, "refund", "ch_support_survives")
	revokeGrants(t, b, later.ID, r, entitlement.Revoked)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	keyAction(t, s, jobs.ActionBlacklistKey, first.UserKey, "Key shared")
	// The refund is cancelled: the later purchase's 14 days stand again.
	restoreGrants(t, b, r)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	u := luarmorUser(t, b, first.UserKey)
	require.True(t, u.IsBanned(), "support's ban holds")
	require.Equal(t, "Key shared", u.BanReason)
	for _, id := range []int64{first.ID, later.ID} {
		k, err := postgres.GetKey(ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, order.KeyBlacklisted, k.Status)
	}

	out := keyAction(t, s, jobs.ActionUnbanKey, first.UserKey, "")
	require.Equal(t, order.KeyActive, out.Key.Status)
	var started int64
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT started_at FROM ledger_keys WHERE id = $1`, ledgerID).Scan(&started))
	u = luarmorUser(t, b, first.UserKey)
	require.False(t, u.IsBanned())
	require.Equal(t, started+28*86400, u.AuthExpire, "both purchases' days, set by the unban's writer")
}

// A revocation under REFUND_ACTION=delete deletes the key through its
// writer, counted once however often it is asked; the unit shows it.
func TestSupportRevokeDeletesPerPolicyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k, ledgerID := bought(t, b, "cs_test_support_delete")
	deps := b.deps
	deps.Policy.RefundAction = order.ActionDelete
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	s := b.support(client)
	s.Policy = deps.Policy
	for range 2 {
		out := keyAction(t, s, jobs.ActionRevokeKey, k.UserKey, "")
		require.Equal(t, order.KeyDeleted, out.Key.Status)
	}
	waitApplied(t, b, w, ledgerID)
	_, err = b.deps.Luarmor.GetUser(context.Background(), project, k.UserKey)
	require.ErrorIs(t, err, luarmor.ErrNotFound)
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodDelete, "/users"))
	out := keyAction(t, s, jobs.ActionUnbanKey, k.UserKey, "")
	require.Equal(t, order.KeyDeleted, out.Key.Status, "a deleted key stays deleted")
	require.True(t, out.Key.SupportBan)
}

// A key support banned before its bans were ledger facts (the support job
// sent the ban and marked the unit; the writer had nothing pending) keeps
// its ban and reason through the upgrade and later syncs, and support's
// unban after the upgrade lifts it.
func TestSupportBanFromBeforeTheUpgradeHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	k, ledgerID := bought(t, b, "cs_test_support_upgrade")
	_, err := b.pool.Exec(ctx, `
		DROP TRIGGER order_keys_bump_ledger ON order_keys;
		ALTER TABLE order_keys DROP COLUMN support_ban_reason, DROP COLUMN support_delete;
		CREATE TRIGGER order_keys_bump_ledger AFTER UPDATE OF user_key, support_ban, suspended ON order_keys
			FOR EACH ROW WHEN (NEW.user_key IS NOT NULL) EXECUTE FUNCTION bump_ledger_of_unit();
		DELETE FROM fulfiller_migrations WHERE version = 67`)
	require.NoError(t, err)
	// What the support job of the version before did.
	never := luarmor.NeverExpires
	require.NoError(t, b.deps.Luarmor.Blacklist(ctx, project, luarmor.BlacklistRequest{UserKey: k.UserKey, BanReason: "Fraud ring", BanExpire: &never}))
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET status = 'blacklisted', support_ban = true WHERE id = $1;`, k.ID)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `INSERT INTO support_audit (actor, action, reason, detail)
		VALUES ('cli', 'blacklist', 'Fraud ring', jsonb_build_object('order_key_id', $1::bigint))`, k.ID)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE ledger_keys SET applied_version = version WHERE id = $1`, ledgerID)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, b.pool, b.deps.Logger))
	l, err := postgres.ReadLedger(ctx, b.pool, ledgerID, jobs.SuspendBanReason, jobs.DefaultSupportBanReason)
	require.NoError(t, err)
	require.Equal(t, "Fraud ring", l.Facts.SupportBan, "the reason the audit log kept")
	d := entitlement.Derive(l.Grants, l.Facts, entitlement.Policy{})
	require.Equal(t, entitlement.BanPermanent, d.Ban)
	require.True(t, entitlement.SameAccess(l.Applied, d, time.Now().Unix()), "recorded as applied: nothing to send")

	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	u := luarmorUser(t, b, k.UserKey)
	require.True(t, u.IsBanned())
	require.Equal(t, "Fraud ring", u.BanReason)

	out := keyAction(t, b.support(client), jobs.ActionUnbanKey, k.UserKey, "")
	require.Equal(t, order.KeyActive, out.Key.Status)
	require.False(t, luarmorUser(t, b, k.UserKey).IsBanned(), "support's unban lifts the ban support made before")
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodPost, "/users/blacklist"))
}
