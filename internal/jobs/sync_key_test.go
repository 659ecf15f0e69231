package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
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
	client, w := startWriters(t, b, deps)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	started := ledgerStart(t, b, ledgerID)
	u := luarmorUser(t, b, later.UserKey)
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
		first, later, ledgerID := sharedKey(t, b, "cs_test_sync_both")
		client, w := startWriters(t, b, b.deps)
		units := []int64{first.ID, later.ID}
		if !firstRevoked {
			units[0], units[1] = units[1], units[0]
		}
		revokeGrants(t, b, units[0], revocation(t, b, "refund", "ch_one"), entitlement.Revoked)
		syncNow(t, client, ledgerID)
		waitApplied(t, b, w, ledgerID)
		u := luarmorUser(t, b, first.UserKey)
		require.False(t, u.IsBanned())

		revokeGrants(t, b, units[1], revocation(t, b, "refund", "ch_two"), entitlement.Revoked)
		syncNow(t, client, ledgerID)
		waitApplied(t, b, w, ledgerID)
		u = luarmorUser(t, b, first.UserKey)
		require.True(t, u.IsBanned())
		require.Equal(t, "Payment refunded", u.BanReason)
		// The purchase refunded while the other held the key shows its
		// days taken back; the last one, the ban.
		requireKeyStatus(t, b, units[0], order.KeyReverted)
		requireKeyStatus(t, b, units[1], order.KeyBlacklisted)
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
	plain, pw := startWriters(t, b, b.deps)
	r := revocation(t, b, "dispute", "dp_sync_support")
	revokeGrants(t, b, first.ID, r, entitlement.Banned)
	syncNow(t, plain, ledgerID)
	waitApplied(t, b, pw, ledgerID)
	u := luarmorUser(t, b, first.UserKey)
	require.True(t, u.IsBanned())
	require.NoError(t, plain.Stop(ctx))

	// The dispute is won: its grants stand again.
	restoreGrants(t, b, r)
	deps := b.deps
	deps.Luarmor = &readHook{Luarmor: b.deps.Luarmor, before: func() {
		_, err := b.pool.Exec(ctx, `UPDATE order_keys SET support_ban = true WHERE id = $1`, first.ID)
		require.NoError(t, err)
	}}
	client, w := startWriters(t, b, deps)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	u = luarmorUser(t, b, first.UserKey)
	require.True(t, u.IsBanned(), "support's ban holds in Luarmor")
	requireKeyStatus(t, b, first.ID, order.KeyBlacklisted)
}

// requireKeyStatus requires unit id to be in status.
func requireKeyStatus(t *testing.T, b *testBundle, id int64, status order.KeyStatus, msgAndArgs ...any) {
	t.Helper()
	k, err := postgres.GetKey(context.Background(), b.pool, id)
	require.NoError(t, err)
	require.Equal(t, status, k.Status, msgAndArgs...)
}

// restoreGrants stands the grants revocation r took away again (a
// dispute won, a refund reversed).
func restoreGrants(t *testing.T, b *testBundle, r *order.Revocation) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, err := postgres.RestoreGrants(context.Background(), tx, r.ID, false)
		return err
	}))
}

// startCutWriter runs the key writers against Luarmor behind hook, with a
// lease short enough that a writer hook cut off is followed within a
// second.
func startCutWriter(t *testing.T, b *testBundle, hook *sendHook) (*river.Client[pgx.Tx], *fulfillertest.JobWatch) {
	t.Helper()
	deps := b.deps
	deps.CreateLease = time.Second // a dead writer's lease runs out
	deps.Luarmor = hook
	return startWriters(t, b, deps)
}

// startWriters runs the service's workers with deps until the test ends.
func startWriters(t *testing.T, b *testBundle, deps jobs.Deps) (*river.Client[pgx.Tx], *fulfillertest.JobWatch) {
	t.Helper()
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	return client, b.start(t, client)
}

// ledgerStart is when a key's ledger started its paid time (unix seconds).
func ledgerStart(t *testing.T, b *testBundle, ledgerID int64) int64 {
	t.Helper()
	var started int64
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT started_at FROM ledger_keys WHERE id = $1`, ledgerID).Scan(&started))
	return started
}

// recordedLedger reads a key's ledger once its writer recorded what it
// sent: no intent left pending.
func recordedLedger(t *testing.T, b *testBundle, ledgerID int64) *postgres.Ledger {
	t.Helper()
	l, err := postgres.ReadLedger(context.Background(), b.pool, ledgerID, jobs.SuspendBanReason, jobs.DefaultSupportBanReason)
	require.NoError(t, err)
	require.False(t, l.Intent.Pending(), "the record cleared the intent")
	return l
}

// errWriterDied stands for the writer's process dying right after Luarmor
// applied its request: the answer never reaches the writer, and nothing
// it would have recorded is.
var errWriterDied = errors.New("the writer died after Luarmor applied its request")

// sendHook is Luarmor whose first request of a kind (a ban: "blacklist";
// an expiry: "update") is applied, then cuts its writer off: between
// the two, after runs (what changes before the retry).
type sendHook struct {
	jobs.Luarmor
	request string
	once    sync.Once
	after   func()
}

func (h *sendHook) cut(request string, err error) error {
	if err != nil || request != h.request {
		return err
	}
	cut := false
	h.once.Do(func() { h.after(); cut = true })
	if cut {
		return errWriterDied
	}
	return nil
}

func (h *sendHook) Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error {
	return h.cut("blacklist", h.Luarmor.Blacklist(ctx, projectID, req))
}

func (h *sendHook) Unban(ctx context.Context, projectID, unbanToken string) error {
	return h.cut("unban", h.Luarmor.Unban(ctx, projectID, unbanToken))
}

func (h *sendHook) UpdateUser(ctx context.Context, projectID string, req luarmor.UpdateUserRequest) error {
	return h.cut("update", h.Luarmor.UpdateUser(ctx, projectID, req))
}

// A chargeback bans a shared key; the writer's ban reaches Luarmor and the
// writer dies before recording it; the dispute is won before the retry.
// The ledger then asks for no ban and records none: only the ban the
// writer recorded it was about to send tells the retry the ban Luarmor
// holds is the service's, and it lifts it.
func TestABanSentAndNeverRecordedIsLiftedWhenTheLedgerNoLongerBans(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, _, ledgerID := sharedKey(t, b, "cs_test_sync_cut_ban")
	r := revocation(t, b, "dispute", "dp_sync_cut_ban")
	revokeGrants(t, b, first.ID, r, entitlement.Banned)

	client, w := startCutWriter(t, b, &sendHook{Luarmor: b.deps.Luarmor, request: "blacklist", after: func() {
		u := luarmorUser(t, b, first.UserKey)
		require.True(t, u.IsBanned(), "the ban reached Luarmor")
		restoreGrants(t, b, r)
	}})
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	u := luarmorUser(t, b, first.UserKey)
	require.False(t, u.IsBanned(), "the service's own ban, never recorded, is lifted")
	l := recordedLedger(t, b, ledgerID)
	require.Equal(t, entitlement.NotBanned, l.Applied.Ban)
	requireKeyStatus(t, b, first.ID, order.KeyActive)
}

// A dispute bans a shared key and the ban is applied. The dispute is won:
// the writer records the unban it is about to send, the unban reaches
// Luarmor and the writer dies before recording it; the dispute is reopened
// with the same reason before the retry. The ledger bans as the applied
// state says, so only a pending intent makes the retry read the key from
// Luarmor rather than find nothing to do; it bans it again.
func TestAnUnbanSentAndNeverRecordedIsUndoneWhenTheBanComesBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, _, ledgerID := sharedKey(t, b, "cs_test_sync_cut_unban")
	r := revocation(t, b, "dispute", "dp_sync_cut_unban")
	revokeGrants(t, b, first.ID, r, entitlement.Banned)
	client, w := startCutWriter(t, b, &sendHook{Luarmor: b.deps.Luarmor, request: "unban", after: func() {
		u := luarmorUser(t, b, first.UserKey)
		require.False(t, u.IsBanned(), "the unban reached Luarmor")
		l, err := postgres.ReadLedger(ctx, b.pool, ledgerID, jobs.SuspendBanReason, jobs.DefaultSupportBanReason)
		require.NoError(t, err)
		require.True(t, l.Intent.Unban, "the unban was recorded as about to be sent")
		revokeGrants(t, b, first.ID, r, entitlement.Banned)
	}})
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	u := luarmorUser(t, b, first.UserKey)
	require.True(t, u.IsBanned(), "the dispute's ban is applied")

	restoreGrants(t, b, r)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	u = luarmorUser(t, b, first.UserKey)
	require.True(t, u.IsBanned(), "the ban back in the ledger is back in Luarmor")
	l := recordedLedger(t, b, ledgerID)
	require.NotEqual(t, entitlement.NotBanned, l.Applied.Ban)
}

// A ban the seller set in the dashboard is not the service's: a key whose
// ledger never banned it keeps it, intents or not.
func TestASellersBanStaysWhileTheWriterSendsTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, later, ledgerID := sharedKey(t, b, "cs_test_sync_seller_ban")
	require.NoError(t, b.deps.Luarmor.Blacklist(ctx, project, luarmor.BlacklistRequest{UserKey: first.UserKey, BanReason: "seller"}))
	revokeGrants(t, b, later.ID, revocation(t, b, "refund", "ch_sync_seller_ban"), entitlement.Revoked)
	client, w := startWriters(t, b, b.deps)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	started := ledgerStart(t, b, ledgerID)
	u := luarmorUser(t, b, first.UserKey)
	require.Equal(t, started+14*86400, u.AuthExpire, "the refund's days are taken back")
	require.True(t, u.IsBanned(), "the seller's ban stays")
	require.Equal(t, "seller", u.BanReason)
}

// A refund of a shared key is reversed: the writer sends the 14 days back
// to Luarmor and dies before recording them; the payment is refunded
// again before the retry. The ledger then derives exactly what was last
// recorded, so without the intent the retry would find nothing to do, and
// would take the 14 days Luarmor holds beyond the ledger for the seller's
// own. The expiry the writer recorded it was about to send is the
// service's: the retry takes it back.
func TestTimeSentAndNeverRecordedIsTakenBackWhenItsPaymentIsRefunded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, later, ledgerID := sharedKey(t, b, "cs_test_sync_cut_time")
	started := ledgerStart(t, b, ledgerID)
	refund := revocation(t, b, "refund", "ch_sync_cut_time")
	revokeGrants(t, b, later.ID, refund, entitlement.Revoked)
	plain, pw := startWriters(t, b, b.deps)
	syncNow(t, plain, ledgerID)
	waitApplied(t, b, pw, ledgerID)
	require.NoError(t, plain.Stop(ctx))

	// The refund is reversed: the 14 days stand again.
	restoreGrants(t, b, refund)
	client, w := startCutWriter(t, b, &sendHook{Luarmor: b.deps.Luarmor, request: "update", after: func() {
		u := luarmorUser(t, b, later.UserKey)
		require.Equal(t, started+28*86400, u.AuthExpire, "the 14 days reached Luarmor")
		revokeGrants(t, b, later.ID, revocation(t, b, "refund", "ch_sync_cut_time_again"), entitlement.Revoked)
	}})
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)

	u := luarmorUser(t, b, later.UserKey)
	require.Equal(t, started+14*86400, u.AuthExpire, "the refunded days, sent and never recorded, are taken back")
	l := recordedLedger(t, b, ledgerID)
	require.Equal(t, started+14*86400, l.Applied.Expire)
}

// linkHook is Luarmor refusing every Discord link.
type linkHook struct{ jobs.Luarmor }

var errLinkRefused = errors.New("luarmor refused the link")

func (linkHook) LinkDiscord(context.Context, string, luarmor.LinkDiscordRequest) error {
	return errLinkRefused
}

// A refund takes a shared key's days back while its buyer's verified
// Discord account waits to be linked. The days reach Luarmor; the link
// fails. What was sent is recorded all the same (the key's expiry, its
// units' status), and only the link is left to the retry.
func TestAccessSentBeforeAFailedDiscordLinkIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, later, ledgerID := sharedKey(t, b, "cs_test_sync_link_fails")
	o, err := postgres.GetOrder(ctx, b.pool, first.CheckoutSessionID)
	require.NoError(t, err)
	var verified []int64
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		verified, err = postgres.VerifyDiscord(ctx, tx, o.ID, "123456789012345678", "buyer")
		return err
	})
	require.NoError(t, err)
	require.Equal(t, []int64{ledgerID}, verified, "the key carries the verified account")
	revokeGrants(t, b, later.ID, revocation(t, b, "refund", "ch_sync_link_fails"), entitlement.Revoked)

	deps := b.deps
	deps.Luarmor = linkHook{b.deps.Luarmor}
	client, w := startWriters(t, b, deps)
	syncNow(t, client, ledgerID)
	w.WaitFor(t, "the writer's run to fail on the link", func(ev *river.Event) bool {
		return ev.Kind == river.EventKindJobFailed && ev.Job.Kind == (jobs.SyncKeyArgs{}).Kind()
	})
	require.NoError(t, client.Stop(ctx))

	started := ledgerStart(t, b, ledgerID)
	u := luarmorUser(t, b, first.UserKey)
	require.Equal(t, started+14*86400, u.AuthExpire, "the refund's days were taken back in Luarmor")
	require.Empty(t, u.DiscordID, "the link failed")
	l, err := postgres.ReadLedger(ctx, b.pool, ledgerID, jobs.SuspendBanReason, jobs.DefaultSupportBanReason)
	require.NoError(t, err)
	require.Equal(t, l.Version, l.AppliedVersion, "what was sent is recorded for the version read")
	require.Equal(t, started+14*86400, l.Applied.Expire)
	require.False(t, l.Intent.Pending())
	require.True(t, entitlement.DiscordDue(l.Applied, entitlement.Derive(l.Grants, l.Facts, entitlement.Policy{})), "the link is still to do")
	k, err := postgres.GetKey(ctx, b.pool, later.ID)
	require.NoError(t, err)
	require.Equal(t, order.KeyReverted, k.Status, "the refunded unit shows its days taken back")
	require.Equal(t, started+14*86400, *k.AuthExpire, "the order shows the expiry sent")
}

// A key nobody claimed, whose expiry Luarmor kept as key_days, runs past
// its paid time. Its writer sends the passed expiry once, which ends the
// key instead of leaving days for a first use to start, and nothing after:
// the key is lapsed. A first use later finds it over.
func TestAnUnclaimedKeyWhosePaidTimeRanOutIsEndedOnceAndLeftAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, _, ledgerID := sharedKey(t, b, "cs_test_sync_unclaimed_over")
	b.sandbox.SetUnclaimedExpiryAsKeyDays(true)
	client, w := startWriters(t, b, b.deps)
	syncNow(t, client, ledgerID)
	waitApplied(t, b, w, ledgerID)
	l, err := postgres.ReadLedger(ctx, b.pool, ledgerID, jobs.SuspendBanReason, jobs.DefaultSupportBanReason)
	require.NoError(t, err)
	require.True(t, l.Applied.AwaitingClaim, "Luarmor kept the expiry as key_days")
	require.Equal(t, 28, l.Applied.WaitingDays)

	// Sixty days pass: the 28 paid days ran out, unclaimed.
	_, err = b.pool.Exec(ctx, `UPDATE ledger_keys SET started_at = started_at - 60 * 86400,
		applied_expire = applied_expire - 60 * 86400 WHERE id = $1`, ledgerID)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE key_grants g SET valid_from = g.valid_from - 60 * 86400
		FROM order_keys k WHERE k.id = g.order_key_id AND k.user_key = $1`, first.UserKey)
	require.NoError(t, err)
	patches := b.sandbox.CallCount("PATCH", "/users")
	sync := func() {
		job, err := client.Insert(ctx, jobs.SyncKeyArgs{LedgerKeyID: ledgerID}, nil)
		require.NoError(t, err)
		ended := waitJobs(t, w, job.Job.ID)
		require.Equal(t, rivertype.JobStateCompleted, ended[job.Job.ID].State)
	}
	sync()
	require.Equal(t, patches+1, b.sandbox.CallCount("PATCH", "/users"), "the passed expiry is sent once")
	u := luarmorUser(t, b, first.UserKey)
	require.NotEqual(t, luarmor.NeverExpires, u.AuthExpire, "no days kept for a first use to start")
	require.LessOrEqual(t, u.AuthExpire, time.Now().Unix(), "unclaimed, the key is over")
	require.Zero(t, u.KeyDays)
	calls := len(b.sandbox.Calls())
	sync()
	require.Equal(t, patches+1, b.sandbox.CallCount("PATCH", "/users"), "an ended key is sent nothing again")
	require.Equal(t, calls, len(b.sandbox.Calls()), "an ended key is not even read")

	// A first use now finds it over: no days start.
	require.ErrorContains(t, b.sandbox.Execute(project, first.UserKey, "hwid-claim"), "expired")
}
