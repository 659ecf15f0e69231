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

// A writer records what it is about to send before its first request:
// only under its own lease, adding to what earlier writers sent and never
// recorded (without repeats), until a record clears it all.
func TestRecordIntentAddsUpUnderTheWritersLeaseUntilARecord(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_intent")
	expire := func(v int64) *int64 { return &v }

	require.ErrorIs(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-a", expire(1900086400), false, false), postgres.ErrLedgerLeaseLost,
		"no lease, no intent: nothing is sent")
	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-a", expire(1900086400), true, false))
	// writer-a dies; its lease runs out; writer-b sends again, then other values.
	_, err := pool.Exec(ctx, `UPDATE ledger_keys SET lease_until = now() - interval '1 second' WHERE id = $1`, l.ID)
	require.NoError(t, err)
	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-b", time.Minute))
	require.ErrorIs(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-a", expire(1), false, false), postgres.ErrLedgerLeaseLost,
		"a writer whose lease was taken sends nothing")
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-b", expire(1900086400), false, false))
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-b", expire(1900172800), false, false))
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-b", nil, false, true))
	got, err := postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.Equal(t, postgres.Intent{Expires: []int64{1900086400, 1900172800}, Ban: true, Unban: true}, got.Intent,
		"every value sent since the last record, the earlier writer's ban and the later one's unban too")
	require.True(t, got.Intent.SentExpire(1900086400))
	require.False(t, got.Intent.SentExpire(l.Applied.Expire))

	applied := got.Applied
	applied.Expire = 1900172800
	stale, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: got.Version, Applied: applied, Owner: "writer-b"})
	require.NoError(t, err)
	require.False(t, stale)
	got, err = postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.False(t, got.Intent.Pending(), "the record cleared it")
	require.Equal(t, applied, got.Applied)
}

// A writer that sent no access records the state it read only while no
// value sent by another is left unrecorded: that one died after sending,
// Luarmor may hold what it sent, and the state read does not say so. The
// record is stale and writes nothing, so the writer runs again and reads
// Luarmor.
func TestRecordAppliedOfAWriterThatSentNothingIsStaleWhileAnIntentIsPending(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_intent_pending")
	read := l.Applied

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-a", nil, true, false))
	// writer-a dies after sending its ban; its lease runs out.
	_, err := pool.Exec(ctx, `UPDATE ledger_keys SET lease_until = now() - interval '1 second' WHERE id = $1`, l.ID)
	require.NoError(t, err)

	stale, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: read, Read: &read})
	require.NoError(t, err)
	require.True(t, stale, "the writer runs again")
	got, err := postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.True(t, got.Intent.Ban, "the ban sent stays on record as sent")
}

// A writer whose lease ran out before its record, and which another writer
// took since, records nothing: the other read Luarmor after this one's
// requests ended and records what it finds; written over it, this record
// could be the older, and would end the other's lease while it sends.
func TestRecordAppliedOfAWriterWhoseLeaseWasTakenWritesNothing(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_lease_taken")

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	_, err := pool.Exec(ctx, `UPDATE ledger_keys SET lease_until = now() - interval '1 second' WHERE id = $1`, l.ID)
	require.NoError(t, err)
	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-b", time.Minute))
	require.NoError(t, postgres.RecordIntent(ctx, pool, l.ID, "writer-b", nil, true, false))

	older := l.Applied
	older.Expire += 86400
	_, err = recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: older, Owner: "writer-a"})
	require.ErrorIs(t, err, postgres.ErrLedgerLeaseLost)
	got, err := postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.Equal(t, l.Applied, got.Applied, "nothing written")
	require.True(t, got.Intent.Ban, "writer-b's intent stands")
	var owner string
	require.NoError(t, pool.QueryRow(ctx, `SELECT lease_owner FROM ledger_keys WHERE id = $1`, l.ID).Scan(&owner))
	require.Equal(t, "writer-b", owner)
}

// A writer whose Discord link failed after it sent access records that
// access and keeps its lease: the link's request may still be on its way.
func TestRecordAppliedCanKeepTheWritersLease(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	l := newLedgerKey(t, pool, "key_keep_lease")

	require.NoError(t, postgres.TakeLedgerLease(ctx, pool, l.ID, "writer-a", time.Minute))
	sent := l.Applied
	sent.Expire += 86400
	stale, err := recordApplied(t, pool, l.ID, postgres.AppliedRecord{Version: l.Version, Applied: sent, Owner: "writer-a", KeepLease: true})
	require.NoError(t, err)
	require.False(t, stale)
	var owner string
	var until time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT lease_owner, lease_until FROM ledger_keys WHERE id = $1`, l.ID).Scan(&owner, &until))
	require.Equal(t, "writer-a", owner)
	require.WithinDuration(t, time.Now().Add(time.Minute), until, 10*time.Second)
	got, err := postgres.ReadLedger(ctx, pool, l.ID, "suspended", "support")
	require.NoError(t, err)
	require.Equal(t, sent, got.Applied)
}
