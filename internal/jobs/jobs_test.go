package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

const project = "proj_jobs"

type testBundle struct {
	pool    *pgxpool.Pool
	sandbox *sandbox.Sandbox
	stripe  *stripefake.Fake
	deps    jobs.Deps
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Limit: 100000})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	sf := stripefake.New("sk_test_jobs")
	sfSrv := httptest.NewServer(sf)
	t.Cleanup(sfSrv.Close)
	pool := postgrestest.NewPool(t)
	return &testBundle{pool: pool, sandbox: sb, stripe: sf, deps: jobs.Deps{
		Pool:            pool,
		Stripe:          stripeapi.New("sk_test_jobs", sfSrv.URL, nil),
		Luarmor:         luarmor.NewClient(sandbox.DefaultAPIKey, luarmor.WithBaseURL(sbSrv.URL)),
		Catalog:         &catalog.Catalog{Prices: map[string]catalog.Product{"price_a": {ProjectID: project, KeyDays: 14}}},
		Logger:          slog.New(slog.DiscardHandler),
		RateLimitWindow: 300 * time.Millisecond,
	}}
}

// start runs a River client until the test ends.
func (b *testBundle) start(t *testing.T, client *river.Client[pgx.Tx]) {
	t.Helper()
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(ctx)
	})
}

// purchase records a paid session of quantity units and enqueues its
// fulfilment, as the webhook does.
func (b *testBundle) purchase(t *testing.T, client *river.Client[pgx.Tx], id string, quantity int64) {
	t.Helper()
	b.stripe.PutSession(stripefake.Session{ID: id, Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: "jobs@example.com", PaymentIntent: "pi_" + id, Items: []stripefake.Item{{PriceID: "price_a", Quantity: quantity}}})
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.RecordSession(ctx, tx, client, order.SessionDetails{CheckoutSessionID: id, PaymentStatus: "paid", SessionStatus: "complete"})
		return err
	})
	require.NoError(t, err)
}

func (b *testBundle) waitFulfilled(t *testing.T, id string) *order.Order {
	t.Helper()
	var o *order.Order
	require.Eventually(t, func() bool {
		var err error
		o, err = postgres.GetOrder(context.Background(), b.pool, id)
		return err == nil && o.Status == order.StatusFulfilled
	}, 20*time.Second, 20*time.Millisecond)
	return o
}

func (b *testBundle) calls(method, suffix string) int {
	n := 0
	for _, c := range b.sandbox.Calls() {
		if c.Method == method && strings.HasSuffix(c.Path, suffix) {
			n++
		}
	}
	return n
}

func TestCrashAfterLuarmorCallBeforeCommitFindsTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var crashes atomic.Int32
	client, err := jobs.NewClientWithCrash(b.deps, jobs.Config{}, func(ctx context.Context) error {
		if crashes.Add(1) == 1 {
			return errors.New("process killed after Luarmor created the key")
		}
		return nil
	})
	require.NoError(t, err)
	b.start(t, client)

	b.purchase(t, client, "cs_test_crash0001", 1)
	o := b.waitFulfilled(t, "cs_test_crash0001")

	require.Len(t, o.Keys, 1)
	require.Len(t, b.sandbox.Users(project), 1, "exactly one key exists in Luarmor")
	require.Equal(t, b.sandbox.Users(project)[0].UserKey, o.Keys[0].UserKey, "the recorded key is the one the crashed attempt created")
	require.Equal(t, 1, b.calls(http.MethodPost, "/users"), "the retry did not create again")
	require.Equal(t, 1, b.calls(http.MethodGet, "/users"), "the retry looked the key up once")
	require.Equal(t, 2, o.Keys[0].CreateAttempts, "each run claims an attempt before it may send a create")
	require.EqualValues(t, 1, crashes.Load(), "the retry delivered the found key without a second create")
}

func TestRateLimitedCreateWaitsWithoutUsingAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sandbox.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRateLimit, Times: 2})
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)

	b.purchase(t, client, "cs_test_ratelimit01", 1)
	o := b.waitFulfilled(t, "cs_test_ratelimit01")
	require.Len(t, o.Keys, 1)
	require.Len(t, b.sandbox.Users(project), 1)

	var attempt int
	var snoozes int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT attempt, COALESCE((metadata->>'snoozes')::int, 0) FROM river_job WHERE kind = 'create_key'`).Scan(&attempt, &snoozes))
	require.Equal(t, 1, attempt, "429s do not use attempts")
	require.Equal(t, 2, snoozes)
}

func TestRepeatedJobsForOneUnitCreateOneKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)
	b.purchase(t, client, "cs_test_repeat0001", 3)
	o := b.waitFulfilled(t, "cs_test_repeat0001")

	// Every job kind runs again, as after a rescue or an operator's retry.
	ctx := context.Background()
	_, err = client.Insert(ctx, jobs.FulfilOrderArgs{OrderID: o.ID}, nil)
	require.NoError(t, err)
	for _, k := range o.Keys {
		_, err = client.Insert(ctx, jobs.CreateKeyArgs{OrderKeyID: k.ID}, nil)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state <> 'completed'`).Scan(&n))
		return n == 0
	}, 10*time.Second, 20*time.Millisecond)

	again, err := postgres.GetOrder(ctx, b.pool, "cs_test_repeat0001")
	require.NoError(t, err)
	require.Equal(t, o.Keys, again.Keys)
	require.Len(t, b.sandbox.Users(project), 3)
	require.Equal(t, 3, b.calls(http.MethodPost, "/users"))
}

func TestThreeReplicasDrainABacklogWithinTheBudget(t *testing.T) {
	t.Parallel()
	const (
		count  = 60
		window = time.Second
		orders = 100
		units  = 3 // 300 keys
	)
	sb := sandbox.New(sandbox.Options{Limit: count, Window: window})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	sf := stripefake.New("sk_test_jobs")
	sfSrv := httptest.NewServer(sf)
	t.Cleanup(sfSrv.Close)
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
			Stripe:          stripeapi.New("sk_test_jobs", sfSrv.URL, nil),
			Luarmor:         &budget.Client{Budget: b, Luarmor: luarmor.NewClient(sandbox.DefaultAPIKey, luarmor.WithBaseURL(sbSrv.URL))},
			Catalog:         cat,
			Logger:          slog.New(slog.DiscardHandler),
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
	for _, c := range clients {
		b.start(t, c)
	}
	for _, id := range ids {
		o := b.waitFulfilled(t, id)
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
	sb := sandbox.New(sandbox.Options{Limit: 100000, Window: window})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	direct := luarmor.NewClient(sandbox.DefaultAPIKey, luarmor.WithBaseURL(sbSrv.URL))
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
			Logger: slog.New(slog.DiscardHandler), RateLimitWindow: window,
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
	tb := &testBundle{pool: seedPool, sandbox: sb}
	for _, c := range clients {
		tb.start(t, c)
	}
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, seedPool.QueryRow(ctx, "SELECT count(*) FROM ledger_keys WHERE applied_version > 0").Scan(&n))
		return n >= 15
	}, 20*time.Second, 10*time.Millisecond, "renewals are under way and contending for the budget")

	// A dispute arrives: its blacklist must not wait behind the backlog.
	var revocationID int64
	require.NoError(t, seedPool.QueryRow(ctx, `INSERT INTO revocations (source, source_id, subscription_id, action, reason)
		VALUES ('dispute', 'dp_priority', 'sub_priority', 'blacklist', 'Payment disputed') RETURNING id`).Scan(&revocationID))
	last := keyIDs[renewals]
	_, err = clients[1].Insert(ctx, jobs.RevokeKeyArgs{OrderKeyID: last, RevocationID: revocationID}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		k, err := postgres.GetKey(ctx, seedPool, last)
		return err == nil && k.Status == order.KeyBlacklisted
	}, 20*time.Second, 10*time.Millisecond)

	var sent time.Time
	asked := *blacklistAsked.Load()
	require.NoError(t, seedPool.QueryRow(ctx, `SELECT taken_at FROM luarmor_calls WHERE class = 'revoke'`).Scan(&sent))
	var overtaken, pending int
	require.NoError(t, seedPool.QueryRow(ctx, `SELECT count(*) FROM luarmor_calls WHERE class = 'renew' AND taken_at > $1 AND taken_at < $2`,
		asked, sent).Scan(&overtaken))
	require.NoError(t, seedPool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'sync_key' AND queue = 'luarmor_renew' AND state <> 'completed'`).Scan(&pending))
	require.Positive(t, pending, "the backlog was still queued when the blacklist went out")
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

func TestRefreshLearnsTheExpiryOnceTheKeyIsFirstUsed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	b.start(t, client)
	b.purchase(t, client, "cs_test_refresh0001", 2)
	o := b.waitFulfilled(t, "cs_test_refresh0001")
	require.Nil(t, o.Keys[0].AuthExpire, "the timer waits for first use")

	// The buyer runs the script with the first key; the check is due.
	require.NoError(t, b.sandbox.Execute(project, o.Keys[0].UserKey, "hwid-1"))
	ctx := context.Background()
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET delivered_at = now() - interval '2 hours'`)
	require.NoError(t, err)
	run, err := client.Insert(ctx, jobs.RefreshKeysArgs{}, nil)
	require.NoError(t, err)

	want, _ := b.sandbox.User(project, o.Keys[0].UserKey)
	require.Eventually(t, func() bool {
		got, err := postgres.GetOrder(ctx, b.pool, "cs_test_refresh0001")
		require.NoError(t, err)
		return got.Keys[0].AuthExpire != nil && *got.Keys[0].AuthExpire == want.AuthExpire
	}, 10*time.Second, 20*time.Millisecond)
	// The first key's expiry can be recorded before the second key is
	// looked up: count once the run is over.
	require.Eventually(t, func() bool {
		var state string
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, run.Job.ID).Scan(&state))
		return state == "completed"
	}, 10*time.Second, 20*time.Millisecond, "the refresh run completes")
	got, err := postgres.GetOrder(ctx, b.pool, "cs_test_refresh0001")
	require.NoError(t, err)
	require.Nil(t, got.Keys[1].AuthExpire, "the unused key still waits")
	require.Equal(t, 2, b.calls(http.MethodGet, "/users"), "one look-up per key")
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
