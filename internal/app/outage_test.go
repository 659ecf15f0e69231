package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/testdb"
)

// Phases of the outage test, as the load generator sees them.
const (
	phaseUp   int32 = iota // PostgreSQL runs (before, between and after outages)
	phaseDown              // PostgreSQL is stopped
)

// outageDown is how long PostgreSQL stays down: well past a connection
// attempt (refused at once) and past the pool's one-second ping threshold,
// so every pooled connection is dead by the restart.
const outageDown = 4 * time.Second

// purchase is one order the load generator paid for.
type purchase struct {
	sessionID string
	quantity  int
}

// loadGenerator buys continuously, as the shop's customers would, and
// re-sends every event Stripe would re-send: anything but a 2xx.
type loadGenerator struct {
	b      *bundle
	client *http.Client
	phase  atomic.Int32

	mu        sync.Mutex
	purchases []purchase
	// statuses counts webhook answers by the phase they were sent and
	// answered in (answers that straddle a phase change are not counted).
	statuses map[int32]map[int]int
	problems []string
}

func newLoadGenerator(b *bundle) *loadGenerator {
	return &loadGenerator{b: b, client: &http.Client{Timeout: time.Minute},
		statuses: map[int32]map[int]int{phaseUp: {}, phaseDown: {}}}
}

func (g *loadGenerator) problem(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.problems = append(g.problems, fmt.Sprintf(format, args...))
}

// run buys until ctx ends; the purchase in flight then still retries its
// event until it is accepted.
func (g *loadGenerator) run(ctx context.Context, t *testing.T, buyer int) {
	for n := 0; ctx.Err() == nil; n++ {
		qty := 1 + (buyer+n)%3
		s := g.b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: int64(qty)})
		obj, _ := g.b.Stripe.SessionJSON(s.ID)
		body := fulfillertest.Event(t, "checkout.session.completed", obj)
		if !g.deliver(body) {
			return
		}
		g.mu.Lock()
		g.purchases = append(g.purchases, purchase{sessionID: s.ID, quantity: qty})
		g.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// deliver posts an event until it is accepted, freshly signed each time as
// Stripe does, for at most two minutes.
func (g *loadGenerator) deliver(body []byte) bool {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		sentIn := g.phase.Load()
		req, err := http.NewRequest(http.MethodPost, g.b.URL+"/webhooks/stripe", bytes.NewReader(body))
		if err != nil {
			g.problem("building a webhook request: %v", err)
			return false
		}
		req.Header.Set("Stripe-Signature", fulfillertest.Sign(body, g.b.Secret, time.Now()))
		resp, err := g.client.Do(req)
		if err != nil {
			g.problem("webhook request failed without an answer: %v", err)
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if answeredIn := g.phase.Load(); answeredIn == sentIn {
			g.mu.Lock()
			g.statuses[sentIn][resp.StatusCode]++
			g.mu.Unlock()
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return true
		case http.StatusServiceUnavailable:
			time.Sleep(100 * time.Millisecond) // Stripe backs off far longer
		default:
			g.problem("webhook answered %d: only 200 and 503 are expected", resp.StatusCode)
			return false
		}
	}
	g.problem("an event was refused for two minutes")
	return false
}

func TestServiceRidesOutPostgreSQLOutages(t *testing.T) {
	testdb.Long(t, "stops and restarts a private PostgreSQL cluster")
	t.Parallel()
	ctx := context.Background()
	cluster := testdb.StartCluster(t)
	dbURL := cluster.CreateDatabase(t, "fulfiller")
	migratePool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	require.NoError(t, postgres.Migrate(ctx, migratePool, slog.New(slog.DiscardHandler)))
	migratePool.Close()

	// Luarmor answers slowly enough that outages cut key creations off
	// mid-call: their jobs must find the key instead of minting another.
	b := setup(t, func(o *options) { o.databaseURL, o.luarmorLatency = dbURL, 20*time.Millisecond })
	known, knownOrder := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})

	load := newLoadGenerator(b)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var buyers sync.WaitGroup
	for i := range 3 {
		buyers.Add(1)
		go func() { defer buyers.Done(); load.run(loadCtx, t, i) }()
	}
	t.Cleanup(func() { stopLoad(); buyers.Wait() }) // before the service stops
	// Purchases complete before the first outage.
	waitForPurchases(t, load, 20)

	for _, mode := range []testdb.ShutdownMode{testdb.ShutdownFast, testdb.ShutdownImmediate} {
		cluster.Stop(t, mode)
		load.phase.Store(phaseDown)
		for start := time.Now(); time.Since(start) < outageDown; {
			requireUnavailable(t, b.AdminURL+"/readyz")
			requireUnavailable(t, b.URL+"/v1/orders/"+known.ID)
			requireUnavailable(t, b.URL+"/v1/orders/cs_test_neverseen"+strconv.FormatInt(time.Now().UnixNano(), 10))
			live, err := http.Get(b.AdminURL + "/healthz")
			require.NoError(t, err)
			live.Body.Close()
			require.Equal(t, http.StatusOK, live.StatusCode, "the process stays live: restarting it would not bring the database back")
			time.Sleep(50 * time.Millisecond)
		}
		before := len(load.snapshot())
		load.phase.Store(phaseUp)
		cluster.Start(t)
		restarted := time.Now()
		// The service recovers by itself: purchases go through again.
		waitForPurchases(t, load, before+1)
		t.Logf("after a %s stop, the first purchase was accepted %s after pg_ctl start returned", mode, time.Since(restarted).Round(time.Millisecond))
		waitForPurchases(t, load, before+20)
	}
	stopLoad()
	buyers.Wait()

	load.mu.Lock()
	require.Empty(t, load.problems)
	require.Positive(t, load.statuses[phaseDown][http.StatusServiceUnavailable], "webhooks sent during the outages were answered 503")
	require.Equal(t, map[int]int{http.StatusServiceUnavailable: load.statuses[phaseDown][http.StatusServiceUnavailable]},
		load.statuses[phaseDown], "while PostgreSQL is down, every webhook is answered 503 and none 500")
	load.mu.Unlock()

	purchases := load.snapshot()
	t.Logf("%d purchases, %d webhooks answered 503 while PostgreSQL was down", len(purchases), load.statuses[phaseDown][http.StatusServiceUnavailable])
	loadStopped := time.Now()
	// Jobs failed on the outages retry with backoff: longer than the
	// harness's wait.
	require.True(t, fulfillertest.JobsUntil(b.Main.River, 3*time.Minute, func() bool {
		return b.Count(t, `SELECT count(*) FROM orders WHERE status <> 'fulfilled'`) == 0 &&
			b.Count(t, `SELECT count(*) FROM orders`) == len(purchases)+1
	}), "every paid order is fulfilled after the outages")
	require.True(t, fulfillertest.JobsUntil(b.Main.River, 3*time.Minute, func() bool {
		return b.Count(t, `SELECT count(*) FROM river_job
			WHERE state IN ('available', 'running', 'retryable', 'pending', 'scheduled') AND kind <> 'refresh_keys'`) == 0
	}), "no job is left running or waiting")
	t.Logf("all work finished %s after the load stopped; %d jobs failed on the outages and were retried", time.Since(loadStopped).Round(time.Millisecond),
		b.Count(t, `SELECT count(*) FROM river_job WHERE cardinality(errors) > 0`))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM river_job WHERE state IN ('discarded', 'cancelled')`), "no job gave up")

	// Every order has exactly its keys, and Luarmor holds exactly those.
	delivered := map[string]string{knownOrder.Keys[0].UserKey: known.ID}
	for _, p := range purchases {
		code, o := b.GetOrder(t, p.sessionID)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "fulfilled", o.Status)
		require.Len(t, o.Keys, p.quantity, "order %s", p.sessionID)
		require.Zero(t, o.KeysPending)
		for _, k := range o.Keys {
			require.NotContains(t, delivered, k.UserKey, "a key is delivered to one unit only")
			delivered[k.UserKey] = p.sessionID
		}
	}
	users := b.Luarmor.Users(project)
	require.Len(t, users, len(delivered), "Luarmor holds one key per paid unit: none lost, none twice")
	for _, u := range users {
		session, ok := delivered[u.UserKey]
		require.True(t, ok, "Luarmor key %s… belongs to a delivered unit", u.UserKey[:6])
		require.Contains(t, u.Note, session)
	}
}

func (g *loadGenerator) snapshot() []purchase {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]purchase(nil), g.purchases...)
}

// waitForPurchases waits until the load generator has made n purchases.
// A poll: a purchase is the generator's own webhook answered, no job or
// order change of the service.
func waitForPurchases(t *testing.T, g *loadGenerator, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(g.snapshot()) >= n }, 2*time.Minute, 10*time.Millisecond,
		"the load generator never reached %d purchases", n)
}

// requireUnavailable requires a 503 with Retry-After and a JSON error code.
func requireUnavailable(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct{ Error, Code string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s while PostgreSQL is down: %+v", url, body)
	require.Equal(t, "unavailable", body.Code)
	require.Contains(t, body.Error, "retry")
	after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is a number of seconds")
	require.Positive(t, after)
}
