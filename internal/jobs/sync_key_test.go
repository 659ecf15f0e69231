package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// readHook runs before once, before the first read of a key: what commits
// while the writer is between its read of the ledger and its requests.
type readHook struct {
	jobs.Luarmor
	once   sync.Once
	before func()
}

func (h *readHook) GetUser(ctx context.Context, projectID, userKey string) (*luarmor.User, error) {
	h.once.Do(h.before)
	return h.Luarmor.GetUser(ctx, projectID, userKey)
}

// sharedKey makes two purchases of one customer hold one Luarmor key, as
// a Discord ID's extension does: the first unit made the key, the later
// one's grant joins its ledger. It returns both units, with the key's
// clock started now, after both were paid, so expiries are absolute.
func sharedKey(t *testing.T, b *testBundle, prefix string) (first, later order.Key, ledgerID int64) {
	t.Helper()
	ctx := context.Background()
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.purchase(t, plain, prefix+"_first", 1)
	b.purchase(t, plain, prefix+"_later", 1)
	w := b.start(t, plain)
	first = b.waitFulfilled(t, w, prefix+"_first").Keys[0]
	later = b.waitFulfilled(t, w, prefix+"_later").Keys[0]
	require.NoError(t, plain.Stop(ctx))
	started := time.Now().Unix()
	require.NoError(t, b.pool.QueryRow(ctx, `UPDATE ledger_keys SET started_at = $3
		WHERE project_id = $1 AND user_key = $2 RETURNING id`, project, first.UserKey, started).Scan(&ledgerID))
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET user_key = $2, extended_existing = true WHERE id = $1`, later.ID, first.UserKey)
	require.NoError(t, err)
	later.UserKey = first.UserKey
	return first, later, ledgerID
}

func syncNow(t *testing.T, client *river.Client[pgx.Tx], ledgerID int64) {
	t.Helper()
	_, err := client.Insert(context.Background(), jobs.SyncKeyArgs{LedgerKeyID: ledgerID}, nil)
	require.NoError(t, err)
}

// waitApplied waits until the writer applied the ledger's last change and
// let go of it.
func waitApplied(t *testing.T, b *testBundle, w *fulfillertest.JobWatch, ledgerID int64) {
	t.Helper()
	waitUntil(t, w, fmt.Sprintf("ledger %d applied", ledgerID), func() bool {
		var done bool
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT applied_version = version AND lease_owner IS NULL
			FROM ledger_keys WHERE id = $1`, ledgerID).Scan(&done))
		return done
	})
}

func revocation(t *testing.T, b *testBundle, source, sourceID string) *order.Revocation {
	t.Helper()
	var id int64
	require.NoError(t, b.pool.QueryRow(context.Background(), `INSERT INTO revocations (source, source_id, action, reason)
		VALUES ($1, $2, 'blacklist', 'Payment refunded') RETURNING id`, source, sourceID).Scan(&id))
	r, err := postgres.GetRevocation(context.Background(), b.pool, id)
	require.NoError(t, err)
	return r
}

func revokeGrants(t *testing.T, b *testBundle, unit int64, r *order.Revocation, state entitlement.State) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, err := postgres.RevokeGrants(context.Background(), tx, []int64{unit}, r, state, entitlement.ActionBlacklist, "")
		return err
	})
	require.NoError(t, err)
}

// Two purchases of 14 days share a key: it runs 28 days from its start.
// One is refunded while the writer is between reading the ledger and
// sending: the run that follows applies it. Days are never lost to, nor
// left by, a change recorded during a write.
func TestALedgerChangeDuringAWriteIsAppliedByTheNextRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, later, ledgerID := sharedKey(t, b, "cs_test_sync_during")
	r := revocation(t, b, "refund", "ch_sync_during")

	deps := b.deps
	deps.Luarmor = &readHook{Luarmor: b.deps.Luarmor, before: func() { revokeGrants(t, b, later.ID, r, entitlement.Revoked) }}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	var started int64
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT started_at FROM ledger_keys WHERE id = $1`, ledgerID).Scan(&started))
	u, err := b.deps.Luarmor.GetUser(ctx, project, later.UserKey)
	require.NoError(t, err)
	require.Equal(t, started+14*86400, u.AuthExpire, "only the standing purchase's 14 days")
	require.False(t, u.IsBanned(), "the key is not banned: another payment holds it")
	got, err := postgres.GetKey(ctx, b.pool, later.ID)
	require.NoError(t, err)
	require.Equal(t, order.KeyReverted, got.Status)
}

// Both purchases of a shared key are refunded, one after the other: the
// last payment holding the key takes it with it, whichever order.
func TestSharedKeyRefundedByBothPurchasesIsBanned(t *testing.T) {
	t.Parallel()
	for _, firstRevoked := range []bool{true, false} {
		b := setup(t)
		ctx := context.Background()
		first, later, ledgerID := sharedKey(t, b, "cs_test_sync_both")
		client, err := jobs.NewClient(b.deps, jobs.Config{})
		require.NoError(t, err)
		w := b.start(t, client)
		units := []int64{first.ID, later.ID}
		if !firstRevoked {
			units[0], units[1] = units[1], units[0]
		}
		revokeGrants(t, b, units[0], revocation(t, b, "refund", "ch_one"), entitlement.Revoked)
		syncNow(t, client, ledgerID)
		waitApplied(t, b, w, ledgerID)
		u, err := b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
		require.NoError(t, err)
		require.False(t, u.IsBanned())

		revokeGrants(t, b, units[1], revocation(t, b, "refund", "ch_two"), entitlement.Revoked)
		syncNow(t, client, ledgerID)
		waitApplied(t, b, w, ledgerID)
		u, err = b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
		require.NoError(t, err)
		require.True(t, u.IsBanned())
		require.Equal(t, "Payment refunded", u.BanReason)
		// The purchase refunded while the other held the key shows its
		// days taken back; the last one, the ban.
		k, err := postgres.GetKey(ctx, b.pool, units[0])
		require.NoError(t, err)
		require.Equal(t, order.KeyReverted, k.Status)
		k, err = postgres.GetKey(ctx, b.pool, units[1])
		require.NoError(t, err)
		require.Equal(t, order.KeyBlacklisted, k.Status)
	}
}

// A chargeback's ban is lifted while support bans the same key: the lift's
// run read the ledger before support's ban was recorded and unbans; the
// change makes the writer run again, and support's ban holds.
func TestSupportBanDuringALiftHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, _, ledgerID := sharedKey(t, b, "cs_test_sync_support")
	plain, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	pw := b.start(t, plain)
	r := revocation(t, b, "dispute", "dp_sync_support")
	revokeGrants(t, b, first.ID, r, entitlement.Banned)
	syncNow(t, plain, ledgerID)
	waitApplied(t, b, pw, ledgerID)
	u, err := b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
	require.NoError(t, err)
	require.True(t, u.IsBanned())
	require.NoError(t, plain.Stop(ctx))

	// The dispute is won: its grants stand again.
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := postgres.RestoreGrants(ctx, tx, r.ID, false)
		return err
	})
	require.NoError(t, err)
	deps := b.deps
	deps.Luarmor = &readHook{Luarmor: b.deps.Luarmor, before: func() {
		_, err := b.pool.Exec(ctx, `UPDATE order_keys SET support_ban = true WHERE id = $1`, first.ID)
		require.NoError(t, err)
	}}
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	u, err = b.deps.Luarmor.GetUser(ctx, project, first.UserKey)
	require.NoError(t, err)
	require.True(t, u.IsBanned(), "support's ban holds in Luarmor")
	k, err := postgres.GetKey(ctx, b.pool, first.ID)
	require.NoError(t, err)
	require.Equal(t, order.KeyBlacklisted, k.Status)
}
