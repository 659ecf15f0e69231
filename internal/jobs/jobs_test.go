package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

func TestThreeReplicasDrainABacklogWithinTheBudget(t *testing.T) {
	t.Parallel()
	const (
		count  = 60
		window = time.Second
		orders = 100
		units  = 3 // 300 keys
	)
	sb := fulfillertest.StartLuarmor(t, sandbox.Options{Limit: count, Window: window})
	sf := fulfillertest.StartStripe(t, stripeKey)
	url := postgrestest.NewURL(t)
	cat := &catalog.Catalog{Prices: map[string]catalog.Product{"price_a": {ProjectID: project, KeyDays: 14}}}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var clients []*river.Client[pgx.Tx]
	var firstPool *pgxpool.Pool
	for i := 0; i < 3; i++ {
		// Each replica has its own pool, budget and River client, as a
		// separate process would.
		pool, err := pgxpool.New(ctx, url)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		if i == 0 {
			firstPool = pool
		}
		b := budget.New(pool, budget.Config{Count: count, Window: window, Replica: fmt.Sprintf("r%d", i),
			Logger: slog.New(slog.DiscardHandler)})
		go b.Run(ctx)
		client, err := jobs.NewClient(jobs.Deps{
			Pool:            pool,
			Stripe:          sf.Client(),
			Luarmor:         &budget.Client{Budget: b, Luarmor: sb.Client()},
			Catalog:         cat,
			Logger:          fulfillertest.Logger(t, slog.LevelWarn),
			RateLimitWindow: window,
		}, jobs.Config{})
		require.NoError(t, err)
		clients = append(clients, client)
	}
	b := &testBundle{pool: firstPool, sandbox: sb, stripe: sf}
	// The backlog is queued before any replica works.
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = fmt.Sprintf("cs_test_backlog%04d", i)
		b.purchase(t, clients[0], ids[i], units)
	}
	w := fulfillertest.WatchJobs(t, clients[0], clients[1:]...)
	for _, c := range clients {
		fulfillertest.StartRiver(t, c)
	}
	for _, id := range ids {
		o := b.waitFulfilled(t, w, id)
		require.Len(t, o.Keys, units)
	}
	calls := sb.Calls()
	for _, c := range calls {
		require.NotEqual(t, http.StatusTooManyRequests, c.Status, "no request was refused")
	}
	require.Len(t, sb.Users(project), orders*units, "every key delivered exactly once")
	require.Len(t, calls, orders*units, "one Luarmor request per key")
	require.LessOrEqual(t, mostInWindow(calls, window), count)
}

// mostInWindow is the most calls the sandbox received in any window.
func mostInWindow(calls []sandbox.Call, window time.Duration) int {
	most, lo := 0, 0
	for hi := range calls {
		for !calls[lo].Time.After(calls[hi].Time.Add(-window)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

func TestBlacklistOvertakesABacklogOfRenewals(t *testing.T) {
	t.Parallel()
	const (
		count    = 20
		window   = time.Second
		renewals = 200
	)
	sb := fulfillertest.StartLuarmor(t, sandbox.Options{Limit: 100000, Window: window})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	direct := sb.Client()
	url := postgrestest.NewURL(t)
	seedPool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(seedPool.Close)

	// One subscription order with renewals+1 delivered keys, each with a
	// paid period its key does not have yet.
	_, err = seedPool.Exec(ctx, `INSERT INTO orders (checkout_session_id, status, mode, payment_status, subscription_id, items_loaded_at)
		VALUES ('cs_test_priority', 'fulfilled', 'subscription', 'paid', 'sub_priority', now())`)
	require.NoError(t, err)
	var keyIDs, ledgerIDs []int64
	for i := 0; i <= renewals; i++ {
		key, err := direct.CreateUser(ctx, project, luarmor.CreateUserRequest{KeyDays: 30})
		require.NoError(t, err)
		var id, ledgerID int64
		require.NoError(t, seedPool.QueryRow(ctx, `INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id,
			key_days, reference, status, user_key, delivered_at, recurring) VALUES ('cs_test_priority', 'li_1', $1, 'price_a', $2, 30, $3, 'active', $4, now(), true)
			RETURNING id`, i+1, project, fmt.Sprintf("fk_priority%04d", i), key).Scan(&id))
		_, err = seedPool.Exec(ctx, `INSERT INTO key_grants (order_key_id, source, kind, valid_from, valid_to, line)
			VALUES ($1, 'invoice:in_priority', 'period', extract(epoch FROM now())::bigint - 86400,
			        extract(epoch FROM now())::bigint + 90*86400, 'sub_priority')`, id)
		require.NoError(t, err)
		require.NoError(t, seedPool.QueryRow(ctx, `INSERT INTO ledger_keys (project_id, user_key, waiting_days, applied_waiting_days)
			VALUES ($1, $2, 30, 30) RETURNING id`, project, key).Scan(&ledgerID))
		keyIDs = append(keyIDs, id)
		ledgerIDs = append(ledgerIDs, ledgerID)
	}
	// The seeding spent the sandbox's budget outside the fleet's count:
	// let its window pass.
	time.Sleep(window + 50*time.Millisecond)
	sb.SetLimit(count, window)
	sb.ResetCalls()

	// When the blacklist asked the budget for a slot: the job's own work
	// before that (reads, on a machine this busy) is not the budget's wait.
	var blacklistAsked atomic.Pointer[time.Time]
	var clients []*river.Client[pgx.Tx]
	for i := 0; i < 3; i++ {
		pool, err := pgxpool.New(ctx, url)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		b := budget.New(pool, budget.Config{Count: count, Window: window, Replica: fmt.Sprintf("r%d", i),
			Logger: slog.New(slog.DiscardHandler)})
		go b.Run(ctx)
		client, err := jobs.NewClient(jobs.Deps{
			Pool: pool, Luarmor: &blacklistTimer{Client: &budget.Client{Budget: b, Luarmor: direct}, asked: &blacklistAsked},
			Logger: fulfillertest.Logger(t, slog.LevelWarn), RateLimitWindow: window,
		}, jobs.Config{})
		require.NoError(t, err)
		clients = append(clients, client)
	}
	params := make([]river.InsertManyParams, renewals)
	for i := range params {
		params[i] = river.InsertManyParams{Args: jobs.SyncKeyArgs{LedgerKeyID: ledgerIDs[i]}}
	}
	_, err = clients[0].InsertMany(ctx, params)
	require.NoError(t, err)
	w := fulfillertest.WatchJobs(t, clients[0], clients[1:]...)
	for _, c := range clients {
		fulfillertest.StartRiver(t, c)
	}
	waitUntil(t, w, "renewals under way and contending for the budget", func() bool {
		var n int
		require.NoError(t, seedPool.QueryRow(ctx, "SELECT count(*) FROM ledger_keys WHERE applied_version > 0").Scan(&n))
		return n >= 15
	})

	// A dispute arrives: its blacklist must not wait behind the backlog.
	var revocationID int64
	require.NoError(t, seedPool.QueryRow(ctx, `INSERT INTO revocations (source, source_id, subscription_id, action, reason)
		VALUES ('dispute', 'dp_priority', 'sub_priority', 'blacklist', 'Payment disputed') RETURNING id`).Scan(&revocationID))
	last := keyIDs[renewals]
	_, err = clients[1].Insert(ctx, jobs.RevokeKeyArgs{OrderKeyID: last, RevocationID: revocationID}, nil)
	require.NoError(t, err)
	waitUntil(t, w, "the disputed key blacklisted", func() bool {
		k, err := postgres.GetKey(ctx, seedPool, last)
		return err == nil && k.Status == order.KeyBlacklisted
	})

	var sent time.Time
	asked := *blacklistAsked.Load()
	require.NoError(t, seedPool.QueryRow(ctx, `SELECT taken_at FROM luarmor_calls WHERE class = 'revoke'`).Scan(&sent))
	var overtaken int
	require.NoError(t, seedPool.QueryRow(ctx, `SELECT count(*) FROM luarmor_calls WHERE class = 'renew' AND taken_at > $1 AND taken_at < $2`,
		asked, sent).Scan(&overtaken))
	pending := listJobs(t, clients[0], river.NewJobListParams().Kinds(jobs.SyncKeyArgs{}.Kind()).Queues(jobs.QueueLuarmorRenew).
		States(statesBut(rivertype.JobStateCompleted)...))
	require.NotEmpty(t, pending, "the backlog was still queued when the blacklist went out")
	require.LessOrEqual(t, overtaken, 1, "the blacklist waited at most one slot behind renewals")
	u, ok := sb.User(project, mustKey(t, seedPool, last))
	require.True(t, ok)
	require.True(t, u.IsBanned())
	for _, c := range sb.Calls() {
		require.NotEqual(t, http.StatusTooManyRequests, c.Status)
	}
}

func mustKey(t *testing.T, pool *pgxpool.Pool, id int64) string {
	t.Helper()
	k, err := postgres.GetKey(context.Background(), pool, id)
	require.NoError(t, err)
	return k.UserKey
}

// blacklistTimer notes when a blacklist asks the budget for its slot.
type blacklistTimer struct {
	*budget.Client
	asked *atomic.Pointer[time.Time]
}

func (c *blacklistTimer) Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error {
	now := time.Now()
	c.asked.CompareAndSwap(nil, &now)
	return c.Client.Blacklist(ctx, projectID, req)
}

// River hands a job still running to another replica after
// RescueStuckJobsAfter: a job allowed to run longer would run twice at
// once on live replicas.
func TestNoJobOutlivesItsRescue(t *testing.T) {
	t.Parallel()
	for name, timeout := range map[string]time.Duration{
		"create_key":       (&jobs.CreateKeyWorker{}).Timeout(nil),
		"refill_stock":     (&jobs.RefillStockWorker{}).Timeout(nil),
		"reconcile_stock":  (&jobs.ReconcileStockWorker{}).Timeout(nil),
		"delete_stock":     (&jobs.DeleteStockWorker{}).Timeout(nil),
		"refresh_keys":     (&jobs.RefreshKeysWorker{}).Timeout(nil),
		"support_key":      (&jobs.SupportKeyWorker{}).Timeout(nil),
		"apply_key_state":  (&jobs.ApplyKeyStateWorker{}).Timeout(nil),
		"send_order_email": (&jobs.SendOrderEmailWorker{}).Timeout(nil),
	} {
		require.Less(t, timeout, jobs.RescueStuckJobsAfter, "%s may run past its rescue", name)
	}
}
