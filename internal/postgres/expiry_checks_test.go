package postgres_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/migrations"
)

// expiryCheckDays is the window of the checks below: MAIL_EXPIRY_NOTICE_DAYS'
// default.
const expiryCheckDays = 3 * 24 * time.Hour

// expiringOrder inserts a fulfilled subscription order with an address and
// one delivered key of a recurring price that ends in two days, as a
// subscription that renews has: in the window, owing nothing. It returns
// the order's session and the key's id.
func expiringOrder(t *testing.T, pool *pgxpool.Pool, name string) (string, int64) {
	t.Helper()
	ctx := context.Background()
	session := "cs_test_expiry_" + name
	_, err := pool.Exec(ctx, `INSERT INTO orders (checkout_session_id, status, mode, customer_email, subscription_id, subscription_status)
		VALUES ($1, 'fulfilled', 'subscription', 'buyer@example.com', 'sub_' || $1, 'active')`, session)
	require.NoError(t, err)
	var keyID int64
	err = pool.QueryRow(ctx, `INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days,
			reference, status, user_key, auth_expire, recurring)
		VALUES ($1, 'li_1', 1, 'price_month', 'proj_expiry', 30, 'ref_' || $1, 'active', 'key_' || $1, $2, true)
		RETURNING id`, session, time.Now().Add(48*time.Hour).Unix()).Scan(&keyID)
	require.NoError(t, err)
	return session, keyID
}

// checkExpiring runs one batch of the buyer's expiry check as the job does,
// recording the notice of each key owing one in the same transaction, and
// returns how many keys it checked and the keys it recorded a notice for.
func checkExpiring(t *testing.T, pool *pgxpool.Pool) (int, []int64) {
	t.Helper()
	ctx := context.Background()
	var checked int
	var noticed []int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		n, owed, err := postgres.ExpiringKeys(ctx, tx, time.Now(), expiryCheckDays, 500)
		checked = n
		for _, k := range owed {
			_, err := postgres.RecordLifecycleEmail(ctx, tx, k.SessionID, postgres.LifecycleEmail{OrderKeyID: k.OrderKeyID,
				Kind: "expiring", Event: postgres.ExpiryNoticeEvent(k.OrderKeyID, k.Expire), MessageID: fmt.Sprint(k.OrderKeyID)})
			if err != nil {
				return err
			}
			noticed = append(noticed, k.OrderKeyID)
		}
		return err
	})
	require.NoError(t, err)
	return checked, noticed
}

// A key checked once is not read again while nothing its notice depends on
// changes, however often the check runs; each way a key inside the window
// can come to owe a notice makes the next run read it again and record its
// notice, once.
func TestExpiryCheckReadsAKeyAgainWhenItMayComeToOweANotice(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// before puts the key or its order in a state owing nothing (the
		// key as inserted renews); change makes it owe the notice. $1 is
		// the order's session.
		before, change []string
	}{
		{name: "subscription_cancelled",
			change: []string{`UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`}},
		{name: "set_to_cancel_at_period_end",
			change: []string{`UPDATE orders SET subscription_cancel_at_period_end = true WHERE checkout_session_id = $1`}},
		{name: "key_left_its_subscription",
			change: []string{`UPDATE order_keys SET ending = true WHERE checkout_session_id = $1`}},
		{name: "key_no_longer_recurring",
			change: []string{`UPDATE order_keys SET recurring = false WHERE checkout_session_id = $1`}},
		{name: "order_fulfilled_late",
			before: []string{`UPDATE orders SET status = 'pending', subscription_status = 'canceled' WHERE checkout_session_id = $1`},
			change: []string{`UPDATE orders SET status = 'fulfilled' WHERE checkout_session_id = $1`}},
		{name: "revocation_lifted",
			before: []string{`UPDATE orders SET status = 'revoked', subscription_status = 'canceled' WHERE checkout_session_id = $1`},
			change: []string{`UPDATE orders SET status = 'fulfilled' WHERE checkout_session_id = $1`}},
		{name: "key_delivered_late",
			before: []string{`UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`,
				`UPDATE order_keys SET status = 'pending', user_key = NULL, auth_expire = NULL WHERE checkout_session_id = $1`},
			change: []string{`UPDATE order_keys SET status = 'active', user_key = 'key_' || $1,
				auth_expire = extract(epoch FROM now() + interval '1 day')::bigint WHERE checkout_session_id = $1`}},
		{name: "address_added",
			before: []string{`UPDATE orders SET customer_email = '', subscription_status = 'canceled' WHERE checkout_session_id = $1`},
			change: []string{`UPDATE orders SET customer_email = 'late@example.com' WHERE checkout_session_id = $1`}},
		{name: "key_unbanned",
			before: []string{`UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`,
				`UPDATE order_keys SET status = 'blacklisted' WHERE checkout_session_id = $1`},
			change: []string{`UPDATE order_keys SET status = 'active' WHERE checkout_session_id = $1`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pool := postgrestest.NewPool(t)
			ctx := context.Background()
			session, keyID := expiringOrder(t, pool, c.name)
			for _, q := range c.before {
				_, err := pool.Exec(ctx, q, session)
				require.NoError(t, err)
			}
			_, noticed := checkExpiring(t, pool)
			require.Empty(t, noticed, "the key owes no notice yet")
			checked, _ := checkExpiring(t, pool)
			require.Zero(t, checked, "a key checked for its expiry is not read again while nothing changed")

			for _, q := range c.change {
				_, err := pool.Exec(ctx, q, session)
				require.NoError(t, err)
			}
			checked, noticed = checkExpiring(t, pool)
			require.Equal(t, 1, checked, "the change makes the key read again")
			require.Equal(t, []int64{keyID}, noticed)
			checked, noticed = checkExpiring(t, pool)
			require.Zero(t, checked)
			require.Empty(t, noticed)
			requireNotices(t, pool, keyID, 1)
		})
	}
}

// A key already noticed for its expiry is noticed again once a renewal or
// a refund moves the expiry, and never twice for one expiry, even when a
// change to its order makes it read again.
func TestExpiryCheckNoticesAMovedExpiryOnce(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	session, keyID := expiringOrder(t, pool, "moved")
	_, err := pool.Exec(ctx, `UPDATE orders SET subscription_cancel_at_period_end = true WHERE checkout_session_id = $1`, session)
	require.NoError(t, err)
	_, noticed := checkExpiring(t, pool)
	require.Equal(t, []int64{keyID}, noticed)

	// A refund takes a day back: the new expiry is announced.
	_, err = pool.Exec(ctx, `UPDATE order_keys SET auth_expire = auth_expire - 86400 WHERE id = $1`, keyID)
	require.NoError(t, err)
	_, noticed = checkExpiring(t, pool)
	require.Equal(t, []int64{keyID}, noticed)
	requireNotices(t, pool, keyID, 2)

	// The order changes back and forth: read again, nothing owed twice.
	for _, cancel := range []bool{false, true} {
		_, err = pool.Exec(ctx, `UPDATE orders SET subscription_cancel_at_period_end = $2 WHERE checkout_session_id = $1`, session, cancel)
		require.NoError(t, err)
		checked, noticed := checkExpiring(t, pool)
		require.Equal(t, 1, checked)
		require.Empty(t, noticed)
	}
	requireNotices(t, pool, keyID, 2)
}

// A change to an order committed while its key is being checked is not
// lost: whether it was still open when the check read the key, or made
// while the check's transaction was open, the next check reads the key as
// the change left it. Neither waits for the other.
func TestExpiryCheckDoesNotLoseAChangeMadeDuringIt(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	cancel := `UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`

	// The change is open first: the check reads the key as it was.
	session, keyID := expiringOrder(t, pool, "open_change")
	change, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer change.Rollback(ctx) //nolint:errcheck // no-op after Commit
	_, err = change.Exec(ctx, cancel, session)
	require.NoError(t, err)
	_, noticed := checkExpiring(t, pool)
	require.Empty(t, noticed, "the subscription still renews as committed when the check reads it")
	require.NoError(t, change.Commit(ctx))
	_, noticed = checkExpiring(t, pool)
	require.Equal(t, []int64{keyID}, noticed)

	// The check is open first: the change commits meanwhile.
	session, keyID = expiringOrder(t, pool, "open_check")
	check, checked, owed := openExpiryCheck(ctx, t, pool, 500)
	require.Equal(t, 1, checked)
	require.Empty(t, owed, "the subscription still renews when the check reads it")
	_, err = pool.Exec(ctx, cancel, session)
	require.NoError(t, err, "the change does not wait for the check")
	require.NoError(t, check.Commit(ctx))
	_, noticed = checkExpiring(t, pool)
	require.Equal(t, []int64{keyID}, noticed)
}

// requireNotices requires n expiry notices recorded for keyID.
func requireNotices(t *testing.T, pool *pgxpool.Pool, keyID int64, n int) {
	t.Helper()
	var got int
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*) FROM lifecycle_emails WHERE order_key_id = $1 AND kind = 'expiring'`, keyID).Scan(&got))
	require.Equal(t, n, got)
}

// queuedChecks returns the checks keyID is queued for (expiry_checks_due),
// each with the expiry it was last queued with.
func queuedChecks(t *testing.T, pool *pgxpool.Pool, keyID int64) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT check_kind, auth_expire FROM expiry_checks_due WHERE order_key_id = $1 ORDER BY id`, keyID)
	require.NoError(t, err)
	queued := map[string]int64{}
	var kind string
	var expire int64
	_, err = pgx.ForEachRow(rows, []any{&kind, &expire}, func() error {
		queued[kind] = expire
		return nil
	})
	require.NoError(t, err)
	return queued
}

// keyVersions returns each key's row version (its ctid and the
// transaction that wrote it): a row written again has another.
func keyVersions(t *testing.T, pool *pgxpool.Pool) map[int64]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, ctid::text || '/' || xmin::text FROM order_keys`)
	require.NoError(t, err)
	versions := map[int64]string{}
	var id int64
	var version string
	_, err = pgx.ForEachRow(rows, []any{&id, &version}, func() error {
		versions[id] = version
		return nil
	})
	require.NoError(t, err)
	return versions
}

// A run of either check, whether the keys it reads owe a notice or not,
// takes them off its queue and leaves every order_keys row as it was: no
// key is written to record that it was checked.
func TestExpiryCheckWritesNothingToOrderKeys(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, renewing := expiringOrder(t, pool, "writes_nothing_renewing")
	ending, endingKey := expiringOrder(t, pool, "writes_nothing_ending")
	_, err := pool.Exec(ctx, `UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`, ending)
	require.NoError(t, err)
	before := keyVersions(t, pool)

	// A row per change: the ending key was queued when it was delivered
	// and again when its subscription was cancelled.
	checked, noticed := checkExpiring(t, pool)
	require.Equal(t, 3, checked)
	require.Equal(t, []int64{endingKey}, noticed)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		checked, owed, err := postgres.KeysExpiringUnannounced(ctx, tx, time.Now(), expiryCheckDays, 500)
		require.Equal(t, 3, checked)
		require.Len(t, owed, 1)
		return err
	})
	require.NoError(t, err)

	require.Equal(t, before, keyVersions(t, pool), "a run rewrote a key's row")
	require.Empty(t, queuedChecks(t, pool, renewing), "both checks took the key off their queue")
	require.Empty(t, queuedChecks(t, pool, endingKey))
}

// Only a delivered, active key with an expiry ahead is queued: a key not
// delivered yet, a lifetime key and a key whose expiry has passed are not,
// and a key whose expiry moves is queued with the new one.
func TestExpiryCheckQueuesOnlyKeysStillRunningToAnExpiry(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, keyID := expiringOrder(t, pool, "queued")
	// The key's own expiry, as it was delivered: a second may pass
	// between its delivery and any clock read here.
	var expire int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT auth_expire FROM order_keys WHERE id = $1`, keyID).Scan(&expire))
	require.InDelta(t, time.Now().Add(48*time.Hour).Unix(), expire, 60, "expiring in two days")
	require.Equal(t, map[string]int64{"mail": expire, "event": expire}, queuedChecks(t, pool, keyID))

	// The expiry moves (a renewal): queued with the new expiry.
	_, err := pool.Exec(ctx, `UPDATE order_keys SET auth_expire = auth_expire + 86400 WHERE id = $1`, keyID)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"mail": expire + 86400, "event": expire + 86400}, queuedChecks(t, pool, keyID))

	for name, change := range map[string]string{
		"pending":  `UPDATE order_keys SET status = 'pending', user_key = NULL, auth_expire = NULL WHERE id = $1`,
		"lifetime": `UPDATE order_keys SET auth_expire = -1 WHERE id = $1`,
		"passed":   `UPDATE order_keys SET auth_expire = extract(epoch FROM now() - interval '1 hour')::bigint WHERE id = $1`,
	} {
		_, other := expiringOrder(t, pool, "not_queued_"+name)
		_, err := pool.Exec(ctx, `DELETE FROM expiry_checks_due WHERE order_key_id = $1`, other)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, change, other)
		require.NoError(t, err)
		require.Empty(t, queuedChecks(t, pool, other), name)
	}
}

// Each check drops the keys queued for it whose expiry has passed, in
// batches, counted as checked, and only its own: no notice is owed for an
// expiry gone, so the queue holds only the expiries still ahead. A check
// that is off (an empty window) drops them too. A key that was banned
// after it was queued stays queued until its row comes due, and is then
// dropped without a notice.
func TestExpiryCheckDropsTheExpiriesThatPassed(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	cancel := `UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`
	session, banned := expiringOrder(t, pool, "banned")
	_, err := pool.Exec(ctx, cancel, session)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE order_keys SET status = 'blacklisted' WHERE id = $1`, banned)
	require.NoError(t, err)
	require.Len(t, queuedChecks(t, pool, banned), 2, "queued while it was active")
	checked, noticed := checkExpiring(t, pool)
	require.Equal(t, 2, checked, "the banned key's rows came due: queued when delivered and when its subscription was cancelled")
	require.Empty(t, noticed, "a banned key owes no notice")
	require.Equal(t, []string{"event"}, slices.Collect(maps.Keys(queuedChecks(t, pool, banned))))

	var keys []int64
	for i := range 3 {
		session, keyID := expiringOrder(t, pool, fmt.Sprint("passed_", i))
		_, err := pool.Exec(ctx, cancel, session)
		require.NoError(t, err)
		keys = append(keys, keyID)
	}
	// The hour after the keys ran out (in two days), in batches of two:
	// each key has two rows, queued when it was delivered and when its
	// subscription was cancelled.
	later := time.Now().Add(49 * time.Hour)
	var checks []int
	for range 4 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			checked, owed, err := postgres.ExpiringKeys(ctx, tx, later, expiryCheckDays, 2)
			require.Empty(t, owed)
			checks = append(checks, checked)
			return err
		})
		require.NoError(t, err)
	}
	require.Equal(t, []int{2, 2, 2, 0}, checks, "three batches drop the six rows of the expiries that passed")
	for _, keyID := range keys {
		require.Equal(t, []string{"event"}, slices.Collect(maps.Keys(queuedChecks(t, pool, keyID))),
			"the mail check drops its own rows only")
	}

	// The event check, off: an empty window drops the rest.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		checked, owed, err := postgres.KeysExpiringUnannounced(ctx, tx, later, 0, 500)
		require.Equal(t, 8, checked)
		require.Empty(t, owed)
		return err
	})
	require.NoError(t, err)
	var left int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM expiry_checks_due`).Scan(&left))
	require.Zero(t, left, "the queue holds no expiry that passed")
	for _, keyID := range append(keys, banned) {
		requireNotices(t, pool, keyID, 0)
	}
}

// A queued row of a key since deleted (the queue has no foreign key) is
// dropped when it comes due and counted as checked, like any row taken:
// a batch full of them is a full batch, so the run goes on to the keys
// queued behind them instead of taking it for the end of the queue.
func TestExpiryCheckCountsTheRowsOfKeysSinceDeleted(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	session, keyID := expiringOrder(t, pool, "behind_deleted")
	_, err := pool.Exec(ctx, `UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`, session)
	require.NoError(t, err)
	// Two rows of keys gone, due before the key's own two (its delivery
	// and its subscription's end).
	_, err = pool.Exec(ctx, `INSERT INTO expiry_checks_due (order_key_id, check_kind, auth_expire)
		SELECT $1 + n, 'mail', extract(epoch FROM now() + interval '1 hour')::bigint FROM generate_series(1000, 1001) n`, keyID)
	require.NoError(t, err)

	batch := func() (int, []int64) {
		var checked int
		var owed []int64
		tx(t, pool, func(tx pgx.Tx) error {
			n, keys, err := postgres.ExpiringKeys(ctx, tx, time.Now(), expiryCheckDays, 2)
			checked = n
			for _, k := range keys {
				owed = append(owed, k.OrderKeyID)
			}
			return err
		})
		return checked, owed
	}
	checked, owed := batch()
	require.Equal(t, 2, checked, "the rows of the keys gone fill the batch")
	require.Empty(t, owed)
	checked, owed = batch()
	require.Equal(t, 2, checked, "the next batch takes the key's rows")
	require.Equal(t, []int64{keyID}, owed)
	checked, owed = batch()
	require.Zero(t, checked)
	require.Empty(t, owed)
}

// Two runs at once take each other's rows never, and neither waits for
// the other: the second skips the rows the first holds and takes the rest.
func TestExpiryCheckRunsAtOnceSkipEachOthersRows(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	var keys []int64
	for i, name := range []string{"at_once_first", "at_once_second"} {
		session, keyID := expiringOrder(t, pool, name)
		_, err := pool.Exec(ctx, `UPDATE orders SET subscription_status = 'canceled' WHERE checkout_session_id = $1`, session)
		require.NoError(t, err)
		// One row per key, the first key's due first.
		_, err = pool.Exec(ctx, `DELETE FROM expiry_checks_due WHERE order_key_id = $1`, keyID)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `INSERT INTO expiry_checks_due (order_key_id, check_kind, auth_expire)
			SELECT $1, 'mail', auth_expire - $2 FROM order_keys WHERE id = $1`, keyID, 3600*(2-i))
		require.NoError(t, err)
		keys = append(keys, keyID)
	}

	first, checked, owed := openExpiryCheck(ctx, t, pool, 1)
	require.Equal(t, 1, checked)
	require.Len(t, owed, 1)
	require.Equal(t, keys[0], owed[0].OrderKeyID)

	waitless, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	second, err := pool.Begin(waitless)
	require.NoError(t, err)
	defer second.Rollback(ctx) //nolint:errcheck // no-op after Commit
	checked, owed, err = postgres.ExpiringKeys(waitless, second, time.Now(), expiryCheckDays, 500)
	require.NoError(t, err, "the second run does not wait for the first")
	require.Equal(t, 1, checked, "the second run skips the row the first holds")
	require.Len(t, owed, 1)
	require.Equal(t, keys[1], owed[0].OrderKeyID)
	require.NoError(t, second.Commit(ctx))
	require.NoError(t, first.Commit(ctx))

	checked, noticed := checkExpiring(t, pool)
	require.Zero(t, checked, "each row was taken once")
	require.Empty(t, noticed)
}

// A change to a key made while a run holds the key's row in the queue
// (its transaction still open) does not wait for the run: it queues the
// key again, and the next run checks the key as the change left it.
func TestExpiryCheckRereadsAKeyChangedWhileARunHeldIt(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	session, keyID := expiringOrder(t, pool, "held")

	run, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer run.Rollback(ctx) //nolint:errcheck // no-op after Commit
	checked, owed, err := postgres.ExpiringKeys(ctx, run, time.Now(), expiryCheckDays, 500)
	require.NoError(t, err)
	require.Equal(t, 1, checked)
	require.Empty(t, owed, "the key still renews when the run reads it")

	// The key leaves its subscription, on another connection.
	_, err = pool.Exec(ctx, `UPDATE order_keys SET ending = true WHERE checkout_session_id = $1`, session)
	require.NoError(t, err, "the change does not wait for the run")
	require.NoError(t, run.Commit(ctx))
	require.Contains(t, queuedChecks(t, pool, keyID), "mail", "the change queued the key again")

	checked, noticed := checkExpiring(t, pool)
	require.Equal(t, 1, checked)
	require.Equal(t, []int64{keyID}, noticed)
	requireNotices(t, pool, keyID, 1)
}

// Upgrading from the marks on order_keys (0057), the queue starts with
// each check's keys that still run to an expiry and were not checked for
// it yet; a key already checked is not read again, nor are keys that owe
// nothing any more (expired, banned, lifetime).
func TestExpiryQueueMigrationQueuesTheKeysNotCheckedYet(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	// The schema as 0057 left it.
	marks, err := fs.ReadFile(migrations.FS, "0057_expiry_checks.sql")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `
		DROP FUNCTION order_keys_queue_expiry_checks(), orders_queue_expiry_checks() CASCADE;
		DROP FUNCTION queue_expiry_checks(bigint, bigint);
		DROP TABLE expiry_checks_due;
		DELETE FROM fulfiller_migrations WHERE version = 63;
		CREATE INDEX order_keys_expiring_idx ON order_keys (auth_expire);`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, string(marks))
	require.NoError(t, err)

	keys := map[string]int64{}
	for name, marked := range map[string]string{
		"mail_checked":      `UPDATE order_keys SET expiry_mail_checked = auth_expire WHERE id = $1`,
		"both_checked":      `UPDATE order_keys SET expiry_mail_checked = auth_expire, expiry_event_checked = auth_expire WHERE id = $1`,
		"mail_checked_old":  `UPDATE order_keys SET expiry_mail_checked = auth_expire - 86400, expiry_event_checked = auth_expire WHERE id = $1`,
		"unchecked_expired": `UPDATE order_keys SET auth_expire = extract(epoch FROM now() - interval '1 hour')::bigint WHERE id = $1`,
		"unchecked_banned":  `UPDATE order_keys SET status = 'blacklisted' WHERE id = $1`,
		"unchecked_forever": `UPDATE order_keys SET auth_expire = -1 WHERE id = $1`,
	} {
		_, keyID := expiringOrder(t, pool, "upgrade_"+name)
		_, err := pool.Exec(ctx, marked, keyID)
		require.NoError(t, err)
		keys[name] = keyID
	}

	require.NoError(t, postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	queued := map[string][]string{}
	for name, keyID := range keys {
		if kinds := slices.Sorted(maps.Keys(queuedChecks(t, pool, keyID))); len(kinds) > 0 {
			queued[name] = kinds
		}
	}
	require.Equal(t, map[string][]string{
		"mail_checked":     {"event"},
		"mail_checked_old": {"mail"},
	}, queued)
	var columns int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'order_keys' AND column_name LIKE 'expiry\_%\_checked'`).Scan(&columns))
	require.Zero(t, columns, "the marks are gone from order_keys")
}

// A sale changes a key and its order several times in one commit: the key
// is queued once per check at its expiry, however many of those changes
// queue it; a change in a later commit queues it again.
func TestExpiryCheckQueuesAKeyOncePerCommitAndExpiry(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	var session string
	var keyID int64
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		session = "cs_test_expiry_one_commit"
		if _, err := tx.Exec(ctx, `INSERT INTO orders (checkout_session_id, status, mode, customer_email)
			VALUES ($1, 'pending', 'payment', 'buyer@example.com')`, session); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference)
			VALUES ($1, 'li_1', 1, 'price_month', 'proj_expiry', 30, 'ref_one_commit') RETURNING id`, session).Scan(&keyID); err != nil {
			return err
		}
		expire := time.Now().Add(48 * time.Hour).Unix()
		if _, err := tx.Exec(ctx, `UPDATE order_keys SET status = 'active', user_key = 'key_one_commit', auth_expire = $2 WHERE id = $1`, keyID, expire); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE order_keys SET ending = true WHERE id = $1`, keyID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE orders SET status = 'fulfilled' WHERE checkout_session_id = $1`, session)
		return err
	}))
	count := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM expiry_checks_due WHERE order_key_id = $1`, keyID).Scan(&n))
		return n
	}
	require.Equal(t, 2, count(), "one row per check")

	_, err := pool.Exec(ctx, `UPDATE orders SET customer_email = 'new@example.com' WHERE checkout_session_id = $1`, session)
	require.NoError(t, err)
	require.Equal(t, 4, count(), "a later commit queues the key again")
}

// openExpiryCheck runs a check of at most limit queue rows in a
// transaction it leaves open (rolled back at the test's end unless
// committed), as a run still holding the rows it took.
func openExpiryCheck(ctx context.Context, t *testing.T, pool *pgxpool.Pool, limit int) (pgx.Tx, int, []postgres.ExpiringKey) {
	t.Helper()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) }) // no-op after Commit
	checked, owed, err := postgres.ExpiringKeys(ctx, tx, time.Now(), expiryCheckDays, limit)
	require.NoError(t, err)
	return tx, checked, owed
}
