package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/app"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"

	"fulfiller/internal/logging/logtest"
)

// waitFailed waits until the order failed, which a job records, and
// returns it as stored. It reads the database, not the order API, whose
// success-page path would itself confirm the session with Stripe.
func (b *bundle) waitFailed(t *testing.T, id string) *order.Order {
	t.Helper()
	var o *order.Order
	b.WaitJobsUntil(t, "order "+id+" failed", func() bool {
		var err error
		o, err = postgres.GetOrder(context.Background(), b.Pool, id)
		return err == nil && o.Status == order.StatusFailed
	})
	return o
}

func TestHugeQuantityFailsTheOrderBeforeAnythingIsAllocated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1_000_000_000})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureTooManyUnits, o.FailureCode)
	require.Contains(t, o.FailureReason, "MAX_UNITS_PER_ORDER (100)")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM order_keys WHERE checkout_session_id = $1", s.ID), "no unit was recorded")
	require.Zero(t, b.creates())
}

func TestPriceMaxQuantityFailsTheOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Catalog.Put("price_capped", catalog.Product{ProjectID: project, KeyDays: 7, MaxQuantity: 2})
	s := b.paidSession(t, stripefake.Item{PriceID: "price_capped", Quantity: 3})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureTooManyUnits, o.FailureCode)
	require.Contains(t, o.FailureReason, "max_quantity of 2")

	// The operator raises the cap and retries: the order is delivered.
	b.Catalog.Put("price_capped", catalog.Product{ProjectID: project, KeyDays: 7, MaxQuantity: 5})
	b.retry(t, s.ID, http.StatusAccepted)
	require.Len(t, b.WaitOrder(t, s.ID, "fulfilled").Keys, 3)
}

func (b *bundle) retry(t *testing.T, id string, want int) {
	t.Helper()
	require.Equal(t, want, b.retryStatus(t, id))
}

// retryStatus asks for an order's retry as support does.
func (b *bundle) retryStatus(t *testing.T, id string) int {
	t.Helper()
	return b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+id+"/retry", "", adminToken).status
}

// A catalog mistake (a project Luarmor does not know) fails the order
// with the project named; after the fix, the retry plans the units of that
// project again from the catalog: those Luarmor refused and the one it
// never got to.
func TestRetryReplansUnitsRefusedForTheirProjectFromTheCurrentCatalog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Catalog.Put("price_typo", catalog.Product{ProjectID: "project_with_a_typo", KeyDays: 7})
	s := b.paidSession(t, stripefake.Item{PriceID: "price_typo", Quantity: 3})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureLuarmorRefused, o.FailureCode)
	require.Contains(t, o.FailureReason, "project_with_a_typo")
	require.Contains(t, o.FailureReason, "Project not found")

	b.Catalog.Put("price_typo", catalog.Product{ProjectID: project, KeyDays: 14})
	// The order fails on the first refusal; the other unit's create may
	// still be on its way, and the retry is refused (409) until its job
	// settles it.
	b.WaitJobsUntil(t, "the retry accepted", func() bool {
		code := b.retryStatus(t, s.ID)
		require.Contains(t, []int{http.StatusAccepted, http.StatusConflict}, code)
		return code == http.StatusAccepted
	})
	done := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, done.Keys, 3)
	for _, k := range done.Keys {
		require.Equal(t, project, k.ProjectID)
		require.Equal(t, 14, k.KeyDays)
		require.Equal(t, 14, b.user(t, k.UserKey).KeyDays)
	}
	require.Zero(t, b.Count(t, "SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND replan", s.ID),
		"planned again once")
}

// A unit keeps the project and key_days it was sold with: Luarmor refused
// its create for a reason other than its project, the catalog moved the
// price to another project with other key_days meanwhile, and the retry
// delivers what was paid for.
func TestRetryDeliversTheTermsTheUnitWasSoldWith(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRefuse})
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureLuarmorRefused, o.FailureCode)
	require.Contains(t, o.FailureReason, "Request refused.")

	b.Catalog.Put(priceMonth, catalog.Product{ProjectID: project2, KeyDays: 7})
	b.retry(t, s.ID, http.StatusAccepted)
	done := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, done.Keys, 1)
	k := done.Keys[0]
	require.Equal(t, project, k.ProjectID, "the project it was sold with")
	require.Equal(t, 30, k.KeyDays, "the key_days it was sold with")
	require.Equal(t, 30, b.user(t, k.UserKey).KeyDays)
	require.Empty(t, b.Luarmor.Users(project2))
}

// An open session reporting no_payment_required (a 100% discount before
// the buyer finished) is never fulfilled, even through the success page.
func TestOnlyCompleteSessionsAreFulfilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	s.Status, s.PaymentStatus = "open", "no_payment_required"
	b.Stripe.PutSession(s)

	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "pending", o.Status)
	b.waitIdle(t)
	require.Zero(t, b.creates())
	require.Zero(t, b.Count(t, "SELECT count(*) FROM order_keys WHERE checkout_session_id = $1", s.ID))
}

func TestLiveEventAgainstATestKeyFailsTheOrderWithTheReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	var ev map[string]any
	require.NoError(t, json.Unmarshal(b.SessionEvent(t, "checkout.session.completed", s.ID), &ev))
	ev["livemode"] = true
	b.Deliver(t, mustJSON(t, ev))

	o := b.waitFailed(t, s.ID)
	require.Equal(t, order.FailureLivemodeMismatch, o.FailureCode)
	require.Contains(t, o.FailureReason, "live-mode event")
	require.Zero(t, b.creates())
}

// An event reports a paid session that Stripe's API does not know (another
// account's key): the order fails with the reason instead of waiting.
func TestPaidSessionStripeDoesNotKnowFailsTheOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	obj := mustJSON(t, map[string]any{
		"id": fulfillertest.NewID("cs_test_"), "object": "checkout.session", "mode": "payment", "status": "complete",
		"payment_status": "paid", "customer_details": map[string]any{"email": defaultMail},
	})
	var id struct{ ID string }
	require.NoError(t, json.Unmarshal(obj, &id))
	b.Deliver(t, fulfillertest.Event(t, "checkout.session.completed", obj))

	o := b.waitFailed(t, id.ID)
	require.Equal(t, order.FailureSessionUnknown, o.FailureCode)
	require.Contains(t, o.FailureReason, "STRIPE_API_KEY")
}

func TestReadinessFailsWhileACredentialIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.StripeAPIKey = "sk_test_revoked" }))
	var body map[string]string
	// A poll: the credentials are checked by the process, not by a job,
	// and nothing announces the check's outcome.
	require.Eventually(t, func() bool {
		resp, err := http.Get(b.AdminURL + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		body = nil
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 10*time.Second, 50*time.Millisecond)
	require.Contains(t, body["error"], "STRIPE_API_KEY")

	// Webhooks are still recorded while the key is fixed.
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events WHERE object_id = $1", s.ID))
}

func TestReadinessFailsWhileLuarmorRefusesTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.LuarmorAPIKey = "not-the-key" }))
	// A poll: the credentials are checked by the process, not by a job.
	require.Eventually(t, func() bool {
		resp, err := http.Get(b.AdminURL + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body["error"], "LUARMOR_API_KEY")
	}, 10*time.Second, 50*time.Millisecond)
}

// A failing job is logged with its job and unit at warn, and at error
// once it keeps failing; River's own reports are below the level kept.
func TestJobFailuresAreLogged(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := setup(t, withLogger(logger))
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTTP500, Times: 5})
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	// Each failed attempt in turn (each wait within its retry's delay);
	// the fifth is the first logged at error.
	for attempt := 1; attempt <= 5; attempt++ {
		watch.WaitFor(t, fmt.Sprintf("create_key's failed attempt %d", attempt), func(ev *river.Event) bool {
			return ev.Kind == river.EventKindJobFailed && ev.Job.Kind == "create_key" && ev.Job.Attempt == attempt
		})
	}
	out := logs.String()
	require.Contains(t, out, `"level":"ERROR","msg":"job keeps failing; will retry"`)
	require.Contains(t, out, `"level":"WARN","msg":"job failed; will retry"`)
	require.Contains(t, out, `"kind":"create_key"`)
	require.Contains(t, out, `"order_key_id":`)
	require.NotContains(t, out, s.ID, "the Checkout Session ID is a capability and stays out of the log")

	b.WaitOrder(t, s.ID, "fulfilled")
	require.Equal(t, 1, b.luarmorUsersFor(s.ID))
}

// Deliveries are fair between orders: each order keeps only two units in
// the deliver queue, and each finished unit queues the next at the back,
// so a one-unit order placed behind a big one waits for a few of the big
// one's units, not all of them. The budget is 60 a minute scaled down to
// 20 per 10 s, so the test is short; the big order alone needs a minute.
func TestSmallOrderIsNotQueuedBehindABigOne(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) {
		c.LuarmorRateLimit, c.LuarmorRateWindow = 20, 10*time.Second
		c.MaxUnitsPerOrder = 500
	}))
	big := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 120})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", big.ID))
	delivered := func() int {
		return b.Count(t, "SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL", big.ID)
	}
	// The window's 20 calls are spent first; from then on every call
	// waits for a slot.
	b.WaitJobsUntil(t, "the big order to spend the budget", func() bool { return delivered() >= 20 })
	before := delivered()

	small := b.paidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	start := time.Now()
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", small.ID))
	b.WaitOrder(t, small.ID, "fulfilled") // within a window
	wait := time.Since(start)
	ahead := delivered() - before
	t.Logf("one-unit order behind a 120-unit order at 20/10s, budget spent: delivered after %s, %d of the big order's keys went first (%d left)",
		wait.Round(time.Millisecond), ahead, 120-before-ahead)
	require.LessOrEqual(t, ahead, 4, "the small order waited for a few units of the big one, not all")
}

// restart starts a new process of the service on the same database, as
// after a restart or on another replica, and points the bundle at it.
func (b *bundle) restart(t *testing.T) {
	t.Helper()
	m := &app.Main{Config: b.Main.Config, Catalog: b.Catalog, Logger: b.Main.Logger}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	b.Main, b.Pool, b.URL = m, m.Pool, m.URL()
}

// A stopping process lets a running job finish within SHUTDOWN_TIMEOUT.
func TestGracefulStopLetsRunningJobsFinish(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.ShutdownTimeout = 5 * time.Second }))
	b.Luarmor.SetLatency(700 * time.Millisecond)
	s := b.paidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	// A poll: the stop must come while the create is on its way, before
	// its job ends.
	require.Eventually(t, func() bool { return b.creates() == 1 }, 10*time.Second, 5*time.Millisecond)

	require.NoError(t, b.Main.Close(), "a graceful stop ends cleanly")
	pool, err := pgxpool.New(context.Background(), b.Main.Config.DatabaseURL)
	require.NoError(t, err)
	defer pool.Close()
	o, err := postgres.GetOrder(context.Background(), pool, s.ID)
	require.NoError(t, err)
	require.Equal(t, order.StatusFulfilled, o.Status, "the running create finished before the process stopped")
}

// A job still running when SHUTDOWN_TIMEOUT ends is cancelled mid-call and
// picked up by the next process, which waits out the cancelled create's
// lease and then makes the unit's one key.
func TestStopPastTheTimeoutHandsTheJobOn(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.ShutdownTimeout = time.Second }))
	b.Luarmor.SetLatency(4 * time.Second)
	s := b.paidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	// A poll: the stop must come while the create is on its way, before
	// its job ends.
	require.Eventually(t, func() bool { return b.creates() == 1 }, 10*time.Second, 5*time.Millisecond)

	stopped := time.Now()
	require.NoError(t, b.Main.Close())
	b.Luarmor.SetLatency(0)
	b.restart(t)
	// Longer than the harness's wait: the cancelled create's lease runs out first.
	require.True(t, fulfillertest.JobsUntil(b.Main.River, time.Minute, func() bool {
		o, err := postgres.GetOrder(context.Background(), b.Pool, s.ID)
		return err == nil && o.Status == order.StatusFulfilled
	}), "the next process delivers the order")
	t.Logf("delivered %s after the stop", time.Since(stopped).Round(time.Millisecond))
	require.Equal(t, 1, b.luarmorUsersFor(s.ID), "one key")
}

// TestCancelledKeyWriteIsResumed: an operator cancels the waiting job that
// would take a refunded buyer's key away (the River UI allows it); the
// sweep queues the key's writer again, and the key stops working.
func TestCancelledKeyWriteIsResumed(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	ctx := context.Background()
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	// The delivery's own writer (renew queue) must be done: run after the
	// refund, it would apply the refund itself.
	b.waitIdle(t)

	err := b.Main.River.QueuePause(ctx, jobs.QueueLuarmorRevoke, nil)
	require.NoError(t, err)
	b.Deliver(t, b.refund(t, fulfillertest.NewID("ch_"), s.PaymentIntent, "", 1000))
	var writer int64
	b.WaitJobsUntil(t, "the refund's key writer queued", func() bool {
		return b.Pool.QueryRow(ctx, `SELECT id FROM river_job WHERE kind = 'sync_key' AND state = 'available'
			AND queue = $1`, jobs.QueueLuarmorRevoke).Scan(&writer) == nil
	})

	header := login(adminUser, adminPassword)
	header.Set("Content-Type", "application/json")
	status, _, body := send(t, http.MethodPost, b.AdminURL+"/riverui/api/jobs/cancel", fmt.Sprintf(`{"ids":["%d"]}`, writer), header)
	require.Equal(t, http.StatusOK, status, body)
	err = b.Main.River.QueueResume(ctx, jobs.QueueLuarmorRevoke, nil)
	require.NoError(t, err)
	require.Zero(t, b.user(t, key).Banned, "the cancelled job left the refunded key working")

	// The sweep leaves alone a ledger changed within the last minute;
	// the refund is made a minute older rather than waited for.
	_, err = b.Pool.Exec(ctx, `UPDATE ledger_keys SET updated_at = now() - interval '2 minutes' WHERE user_key = $1`, key)
	require.NoError(t, err)
	res, err := b.Main.River.Insert(ctx, jobs.ResumeOrdersArgs{}, nil)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, b.waitJob(t, res.Job.ID))
	b.waitIdle(t)
	gone := true
	for _, u := range b.Luarmor.Users(project) {
		if u.UserKey == key {
			gone = u.Banned != 0
		}
	}
	require.True(t, gone, "the refunded key is banned or deleted after the sweep")
}
