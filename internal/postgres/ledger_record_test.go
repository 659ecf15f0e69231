package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// recordApplied records rec for ledger key id in a transaction of its own.
func recordApplied(t *testing.T, pool *pgxpool.Pool, id int64, rec postgres.AppliedRecord) (stale bool, err error) {
	t.Helper()
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		stale, _, err = postgres.RecordApplied(context.Background(), tx, id, rec)
		return err
	})
	return stale, err
}

func newLedgerKey(t *testing.T, pool *pgxpool.Pool, userKey string) *postgres.Ledger {
	t.Helper()
	ctx := context.Background()
	var id int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO ledger_keys (project_id, user_key, started_at, version, applied_version, applied_expire)
		VALUES ('proj_1', $1, extract(epoch FROM now())::bigint, 2, 2, 1900000000) RETURNING id`, userKey).Scan(&id))
	l, err := postgres.ReadLedger(ctx, pool, id, "suspended", "support")
	require.NoError(t, err)
	return l
}

// Two writers of one key: one read the ledger, found nothing to send, and
// records the applied state it read; the other sent a ban meanwhile and
// recorded it first. The stale state is not written over the ban (Luarmor
// holds the ban: recorded as lifted, no later run would lift it): the
// record is stale, and the writer runs again from the ban recorded.
func TestRecordAppliedNeverWritesAStaleStateOverOneSentSince(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_stale_read")
	read := l.Applied

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	banned := read
	banned.Ban, banned.BanReason = entitlement.BanPermanent, "Payment refunded"
	stale, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: banned, Owner: "writer-a"})
	require.NoError(t, err)
	require.False(t, stale)

	stale, err = recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: read, Read: &read})
	require.NoError(t, err)
	require.True(t, stale, "the writer runs again")
	now, err := postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.Equal(t, banned, now.Applied, "the ban sent stays recorded")

	// Read again, the same record is written.
	stale, err = recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: now.Version, Applied: now.Applied, Read: &now.Applied})
	require.NoError(t, err)
	require.False(t, stale)
}

// A writer that sent nothing does not record while another holds the
// key's lease: that one may be sending right now, and records what it
// sends. Its own lease, a writer that sent nothing lets go when its record
// is stale.
func TestRecordAppliedOfAWriterThatSentNothingWaitsForTheLease(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_leased")
	read := l.Applied

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	_, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: read, Read: &read})
	var held *postgres.LedgerLeaseHeldError
	require.ErrorAs(t, err, &held)
	require.WithinDuration(t, time.Now().Add(time.Minute), held.Until, 10*time.Second)
	var owner *string
	require.NoError(t, pool.QueryRow(ctx, `SELECT lease_owner FROM ledger_keys WHERE id = $1`, l.ID).Scan(&owner))
	require.Equal(t, "writer-a", *owner, "the lease stays with the writer sending")

	// The holder, having sent nothing (a Discord link only), records what
	// it read; someone recorded since, so it lets its lease go unwritten.
	_, err = pool.Exec(ctx, `UPDATE ledger_keys SET applied_expire = applied_expire + 86400 WHERE id = $1`, l.ID)
	require.NoError(t, err)
	stale, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: read, Read: &read, Owner: "writer-a"})
	require.NoError(t, err)
	require.True(t, stale)
	var expire int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT lease_owner, applied_expire FROM ledger_keys WHERE id = $1`, l.ID).Scan(&owner, &expire))
	require.Nil(t, owner, "the lease is let go")
	require.Equal(t, read.Expire+86400, expire, "what was recorded since stays")
}

// A writer renews its lease right before each request. While it waited
// for a Luarmor slot its lease may have run out: still its own, it is
// renewed; taken by another writer since, even one done and gone, it is
// lost, and the request is not sent.
func TestRenewLedgerLeaseNeverTakesBackALeaseAnotherWriterTook(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_renew")
	expire := func() {
		_, err := pool.Exec(ctx, `UPDATE ledger_keys SET lease_until = now() - interval '1 second' WHERE id = $1`, l.ID)
		require.NoError(t, err)
	}

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	expire()
	require.NoError(t, postgres.RenewLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute), "run out but still its own")

	expire()
	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-b", time.Minute))
	require.ErrorIs(t, postgres.RenewLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute), postgres.ErrLedgerLeaseLost)
	require.NoError(t, postgres.ReleaseLedgerLease(ctx, pool, l.ID, "writer-b", 0))
	require.ErrorIs(t, postgres.RenewLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute), postgres.ErrLedgerLeaseLost,
		"the other writer let it go: still not the first one's")
}
