// Package e2e_test runs the built fulfiller binary as real processes and
// kills them with SIGKILL while they deliver keys: "durable, exactly once"
// holds only if it survives a process that stops between any two
// instructions.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/testdb"
)

// The size of a run. `make test` runs the small default; `make crash-test`
// a larger one. Flags win over the environment.
var (
	crashKills    = flag.Int("crash.kills", envInt("CRASH_KILLS", 2), "SIGKILLs in TestSurvivesSIGKILL (env CRASH_KILLS)")
	crashOrders   = flag.Int("crash.orders", envInt("CRASH_ORDERS", 10), "orders in TestSurvivesSIGKILL (env CRASH_ORDERS)")
	crashReplicas = flag.Int("crash.replicas", envInt("CRASH_REPLICAS", 2), "processes running at once (env CRASH_REPLICAS)")
	crashSeed     = flag.Uint64("crash.seed", uint64(envInt("CRASH_SEED", 0)), "seed of the kill timing and the Luarmor latency; 0 picks one (env CRASH_SEED)")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

const (
	project    = "3f98888f9999c9999e99a2"
	priceMonth = "price_month30"
	priceLife  = "price_lifetime"
	stripeKey  = "sk_test_crash"
	luarmorKey = "luarmor-crash-key"
	secret     = "whsec_crash_test_secret_0123456789abcdef0123"
	day        = int64(86400)

	// recoveryBound is how soon after a SIGKILL every order that was in
	// flight must be delivered, the restart included.
	recoveryBound = 60 * time.Second
	// A Luarmor call takes 50-200 ms: one leg of 25-100 ms before Luarmor
	// applies the request (the sandbox's latency), one after it on the way
	// back (luarmorFront). A kill then lands as often after Luarmor made a
	// key as before.
	luarmorLegMin = 25 * time.Millisecond
	luarmorLegMax = 100 * time.Millisecond
	// maxKillDelay bounds the random wait between seeing a key creation in
	// flight and the kill: about a call's length, so kills land before
	// Luarmor applies a create, after it, and between its answer and the
	// commit that records the key.
	maxKillDelay = 150 * time.Millisecond
	// stockKillWait is how long every second kill waits for stock work in
	// flight (a refill create, a sold key's note rewrite) before it takes
	// any create: stock work comes in short bursts after sales.
	stockKillWait = 3 * time.Second
)

// priceStocked is sold from a stock of stockSize keys made in advance:
// small, so sales empty it and refills run while processes are killed.
const (
	priceStocked = "price_week_stocked"
	stockKeyDays = 7
	stockSize    = 3
)

func TestSurvivesSIGKILL(t *testing.T) {
	testdb.Long(t, "builds the binary and kills it repeatedly")
	kills, orders, replicas := *crashKills, *crashOrders, *crashReplicas
	require.GreaterOrEqual(t, orders, max(kills, 1), "-crash.orders must give every kill at least one order")
	require.Positive(t, replicas, "-crash.replicas")
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("%d kills, %d orders, %d replicas, seed %d (replay with -crash.seed=%d)", kills, orders, replicas, seed, seed)

	c := newCluster(t, seed)
	purchases := c.plan(orders)
	c.watchStock()
	for i := range replicas {
		c.start(i)
	}
	c.waitStockFull(time.Now().Add(recoveryBound))

	var recoveries []time.Duration
	for n, wave := range waves(purchases, max(kills, 1)) {
		sending := c.feed(wave)
		if n < kills {
			recoveries = append(recoveries, c.killAndRecover(n+1, purchases))
		}
		sending.Wait()
	}
	if !c.waitDelivered(purchases, time.Now().Add(recoveryBound)) {
		t.Fatalf("orders not delivered within %s after the last kill\n%s", recoveryBound, c.stateReport(purchases))
	}
	c.waitIdle(time.Now().Add(recoveryBound))
	if len(recoveries) > 0 {
		t.Logf("recovery after a SIGKILL: max %s over %d kills (bound %s)", slices.Max(recoveries).Round(time.Millisecond), len(recoveries), recoveryBound)
	}
	c.logExercisedPaths()

	c.checkOrders(purchases)
	c.checkLuarmorHoldsExactlyTheRecordedKeys()
	c.checkStock()
	c.checkJobs()
}

// ---- The fleet under test ----

// cluster is the service's processes, the fakes they talk to and the
// database they share.
type cluster struct {
	t       *testing.T
	ctx     context.Context // cancelled when the test ends: senders stop
	bin     string
	dir     string
	env     []string // settings every process gets
	sandbox *sandbox.Sandbox
	front   *httptest.Server // the sandbox, seen through per-process paths
	stripe  *fulfillertest.Stripe
	pool    *pgxpool.Pool
	http    *http.Client
	senders sync.WaitGroup
	resent  atomic.Int64 // webhook deliveries repeated after a failed POST
	// stockPeak is the most keys for sale (ready and pending) the stocked
	// price was seen holding at once.
	stockPeak atomic.Int64

	mu        sync.Mutex
	rng       *rand.Rand
	replicas  []*replica // by slot; each slot holds its latest process
	byName    map[string]*replica
	processes []*replica // every process started, for the logs
}

// replica is one `fulfiller serve` process.
type replica struct {
	slot     int
	name     string
	cmd      *exec.Cmd
	addr     string
	admin    string // the internal listener: probes and the admin API
	log      string
	exited   chan struct{}
	alive    atomic.Bool
	creating atomic.Int64 // its Luarmor creates in flight (a unit's key or a stock key)
	editing  atomic.Int64 // its Luarmor key edits in flight (a sold stock key's note, a renewal)
	stocking atomic.Int64 // its stock work in flight: refill creates and sold keys' note rewrites
}

func newCluster(t *testing.T, seed uint64) *cluster {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{
		t: t, ctx: ctx, dir: t.TempDir(), rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		byName: map[string]*replica{}, http: &http.Client{Timeout: 10 * time.Second},
	}
	c.bin = buildBinary(t, c.dir)

	c.sandbox = sandbox.New(sandbox.Options{APIKey: luarmorKey, Projects: []string{project}, Limit: 100000, Seed: seed})
	c.sandbox.SetLatencyRange(luarmorLegMin, luarmorLegMax)
	c.front = httptest.NewServer(http.HandlerFunc(c.luarmorFront))
	t.Cleanup(c.front.Close)
	c.stripe = fulfillertest.StartStripe(t, stripeKey)

	catalog := filepath.Join(c.dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(catalog, []byte(fmt.Sprintf(
		"prices:\n  %s:\n    project_id: %s\n    key_days: 30\n  %s:\n    project_id: %s\n    key_days: 0\n"+
			"  %s:\n    project_id: %s\n    key_days: %d\n    stock: %d\n",
		priceMonth, project, priceLife, project, priceStocked, project, stockKeyDays, stockSize)), 0o600))
	dbURL := postgrestest.NewURL(t)
	c.env = []string{
		"DATABASE_URL=" + dbURL,
		"STRIPE_WEBHOOK_SECRET=" + secret,
		"STRIPE_API_KEY=" + stripeKey,
		"STRIPE_API_BASE=" + c.stripe.URL,
		"LUARMOR_API_KEY=" + luarmorKey,
		"CATALOG_FILE=" + catalog,
		// Roomy: this test is about crashes, not the budget.
		"LUARMOR_RATE_LIMIT=6000/1m",
		"LOG_LEVEL=info",
	}
	var err error
	c.pool, err = pgxpool.New(ctx, dbURL)
	require.NoError(t, err)

	// Cleanups run last-registered first: senders stop, processes die and
	// logs are shown before the database and the temporary folder go.
	t.Cleanup(c.pool.Close)
	t.Cleanup(c.showLogsOnFailure)
	t.Cleanup(func() {
		cancel()
		c.senders.Wait()
		for _, p := range c.live() {
			c.kill(p)
		}
	})
	return c
}

// buildBinary builds cmd/fulfiller as deployed: without the race detector,
// which would slow the processes under test several fold.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	// go test puts GOROOT/bin first on the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the service: %v", err)
	}
	bin := filepath.Join(dir, "fulfiller")
	start := time.Now()
	out, err := exec.Command(goTool, "build", "-o", bin, "fulfiller/cmd/fulfiller").CombinedOutput()
	require.NoError(t, err, "building the binary: %s", out)
	t.Logf("built the binary in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// luarmorFront serves the sandbox under /p/{process}/ so the test knows
// which process has a key creation or edit in flight: the moment to kill
// it. The
// answer, once Luarmor applied the request, takes a while to travel back:
// a process killed meanwhile never learns of the change.
func (c *cluster) luarmorFront(w http.ResponseWriter, r *http.Request) {
	name, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/p/"), "/")
	c.mu.Lock()
	p := c.byName[name]
	c.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the caller is gone
	}
	if p != nil && strings.HasSuffix(path, "/users") {
		switch r.Method {
		case http.MethodPost:
			p.creating.Add(1)
			defer p.creating.Add(-1)
			if strings.HasPrefix(createNote(sandbox.Call{Body: body}), jobs.StockNote("")) {
				p.stocking.Add(1)
				defer p.stocking.Add(-1)
			}
		case http.MethodPatch:
			p.editing.Add(1)
			defer p.editing.Add(-1)
			if createNote(sandbox.Call{Body: body}) != "" { // only a sold stock key's note is edited
				p.stocking.Add(1)
				defer p.stocking.Add(-1)
			}
		}
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.URL.Path, r.URL.RawPath = "/"+path, ""
	answer := httptest.NewRecorder()
	c.sandbox.ServeHTTP(answer, r)
	if !sleepCtx(r.Context(), luarmorLegMin+c.randDuration(luarmorLegMax-luarmorLegMin)) {
		return // the caller is gone: the answer is lost
	}
	for k, v := range answer.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(answer.Code)
	_, _ = w.Write(answer.Body.Bytes())
}

// start runs a new process in slot and waits until it is ready. A start
// that fails, as when the chosen port was taken meanwhile, is tried again
// on another port.
func (c *cluster) start(slot int) *replica {
	c.t.Helper()
	var lastErr error
	for range 3 {
		p, err := c.spawn(slot)
		if err == nil {
			return p
		}
		lastErr = err
	}
	c.t.Fatalf("starting a process in slot %d: %v", slot, lastErr)
	return nil
}

func (c *cluster) spawn(slot int) (*replica, error) {
	c.mu.Lock()
	name := fmt.Sprintf("replica%d.%d", slot, len(c.processes)+1)
	p := &replica{slot: slot, name: name, log: filepath.Join(c.dir, name+".log"), exited: make(chan struct{})}
	c.processes = append(c.processes, p)
	c.byName[name] = p
	c.mu.Unlock()

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(adminPort)
	p.admin = adminAddr
	logFile, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(c.bin, "serve", "--migrate")
	// Replicas share a host here: each has an internal listener (probes)
	// of its own.
	p.cmd.Env = append(slices.Clone(c.env), "LISTEN_ADDR="+p.addr, "ADMIN_ADDR="+adminAddr, "LUARMOR_BASE_URL="+c.front.URL+"/p/"+name)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close() // the start error is the one to report
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = logFile.Close() // the log is only read to explain a failure
		p.alive.Store(false)
		close(p.exited)
	}()

	// Polled: a process of its own announces nothing to the test but its
	// answer on /readyz.
	deadline := time.Now().Add(recoveryBound)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%s); its log is shown at the end", name, p.cmd.ProcessState)
		default:
		}
		if resp, err := c.http.Get("http://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.alive.Store(true)
				c.mu.Lock()
				if slot < len(c.replicas) {
					c.replicas[slot] = p
				} else {
					c.replicas = append(c.replicas, p)
				}
				c.mu.Unlock()
				return p, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.kill(p)
	return nil, fmt.Errorf("%s was not ready within %s", name, recoveryBound)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }() // only its port was wanted
	return l.Addr().(*net.TCPAddr).Port, nil
}

// kill sends SIGKILL and waits for the process to be gone; it returns when
// the signal was sent.
func (c *cluster) kill(p *replica) time.Time {
	p.alive.Store(false)
	at := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	return at
}

func (c *cluster) live() []*replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*replica
	for _, p := range c.replicas {
		if p.alive.Load() {
			out = append(out, p)
		}
	}
	return out
}

func (c *cluster) randN(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.IntN(n)
}

func (c *cluster) randDuration(most time.Duration) time.Duration {
	return time.Duration(c.randN(int(most) + 1))
}

// showLogsOnFailure prints the end of every process's output.
func (c *cluster) showLogsOnFailure() {
	if !c.t.Failed() {
		return
	}
	const most = 32 << 10
	for _, p := range c.processes {
		b, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		if len(b) > most {
			b = append([]byte("...\n"), b[len(b)-most:]...)
		}
		c.t.Logf("---- output of %s ----\n%s", p.name, b)
	}
}

// waitStockFull waits for the first refill to fill the stock, as a shop's
// would be before a sale: the stocked orders then sell from it until it
// runs out, and its refills race the kills.
func (c *cluster) waitStockFull(deadline time.Time) {
	c.t.Helper()
	start := time.Now()
	// Polled: stock rows notify nothing, and the jobs run in other processes.
	for {
		var ready int
		require.NoError(c.t, c.pool.QueryRow(c.ctx, `SELECT count(*) FROM stock_keys WHERE price_id = $1 AND status = 'ready'`,
			priceStocked).Scan(&ready))
		if ready >= stockSize {
			c.t.Logf("stock of %s filled %s after the processes were ready", priceStocked, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the stock of %s holds %d of %d keys %s after start-up\n%s", priceStocked, ready, stockSize, recoveryBound, c.jobReport())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// watchStock samples, until the test ends, how many keys the stocked
// price holds for sale, keeping the peak: a refill cut off and run again
// must never plan a key past the stock's size.
func (c *cluster) watchStock() {
	c.senders.Add(1)
	go func() {
		defer c.senders.Done()
		for sleepCtx(c.ctx, 20*time.Millisecond) {
			var forSale int64
			if err := c.pool.QueryRow(c.ctx, `SELECT count(*) FROM stock_keys
				WHERE price_id = $1 AND status IN ('ready', 'pending')`, priceStocked).Scan(&forSale); err != nil {
				continue // not migrated yet, or the test is ending: the next sample counts
			}
			if forSale > c.stockPeak.Load() { // this goroutine is the only writer
				c.stockPeak.Store(forSale)
			}
		}
	}()
}

// ---- Purchases and their events ----

// purchase is one order and the events Stripe sends for it.
type purchase struct {
	label     string // names the order in reports; its session ID stays out of them
	session   stripefake.Session
	units     int
	disputed  bool  // a charge.dispute.created follows the checkout
	stocked   bool  // of priceStocked: units are sold from its stock while it lasts
	periodEnd int64 // a renewal paid through this time follows; 0 if none
	events    [][]byte
	sentAt    atomic.Int64 // unix nanoseconds of the first delivery attempt
}

// plan registers n paid orders with the Stripe fake: 1, 2 and 5 units,
// one-off and subscription, every fourth of the stocked price (the first
// of them, of 5 units, takes more than the stock holds). The first one-off
// order is disputed and the first subscription renewed, both in the first
// wave of events.
func (c *cluster) plan(n int) []*purchase {
	var out []*purchase
	for i := range n {
		qty := []int64{1, 2, 5}[i%3]
		s := newPaidSession()
		kind := "one-off"
		switch i % 4 {
		case 1:
			kind = "subscription"
			s.Mode, s.PaymentIntent = "subscription", ""
			s.Subscription, s.Invoice = fulfillertest.NewID("sub_"), fulfillertest.NewID("in_")
			s.Items = []stripefake.Item{{PriceID: priceMonth, Quantity: qty, Recurring: true}}
		case 2:
			kind = "one-off, stocked"
			s.Items = []stripefake.Item{{PriceID: priceStocked, Quantity: qty}}
		case 3:
			s.Items = []stripefake.Item{{PriceID: priceLife, Quantity: qty}}
		default:
			s.Items = []stripefake.Item{{PriceID: priceMonth, Quantity: qty}}
		}
		c.stripe.PutSession(s)
		p := &purchase{session: s, units: int(qty), stocked: i%4 == 2}
		checkout := c.sessionEvent("checkout.session.completed", s.ID)
		// Stripe repeats itself: every event is delivered twice.
		p.events = [][]byte{checkout}
		switch i {
		case 0:
			p.disputed = true
			dispute := c.disputeEvent(s.PaymentIntent)
			p.events = append(p.events, dispute, checkout, dispute)
			kind += ", disputed"
		case 1:
			p.periodEnd = time.Now().Unix() + 60*day
			paid := c.invoicePaidEvent(s.Subscription, priceMonth, qty, p.periodEnd)
			p.events = append(p.events, checkout, paid, paid)
			kind += ", renewed"
		default:
			p.events = append(p.events, checkout)
		}
		p.label = fmt.Sprintf("order %d (%s, %d units)", i+1, kind, qty)
		out = append(out, p)
	}
	return out
}

// newPaidSession is a paid one-off Checkout Session with no items yet.
func newPaidSession() stripefake.Session {
	return stripefake.Session{
		ID: fulfillertest.NewID("cs_test_"), Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: "buyer@example.com", Customer: fulfillertest.NewID("cus_"), PaymentIntent: fulfillertest.NewID("pi_"),
	}
}

// waves splits purchases into n consecutive groups: one per kill.
func waves(purchases []*purchase, n int) [][]*purchase {
	var out [][]*purchase
	for i := range n {
		out = append(out, purchases[i*len(purchases)/n:(i+1)*len(purchases)/n])
	}
	return out
}

// event wraps object in a Stripe event of the service's API version.
func (c *cluster) event(typ string, object any) []byte {
	c.t.Helper()
	raw, err := json.Marshal(object)
	require.NoError(c.t, err)
	return fulfillertest.Event(c.t, typ, raw)
}

func (c *cluster) sessionEvent(typ, sessionID string) []byte {
	c.t.Helper()
	obj, ok := c.stripe.SessionJSON(sessionID)
	require.True(c.t, ok)
	return fulfillertest.Event(c.t, typ, obj)
}

// disputeEvent registers a charge of the payment and a dispute opened on
// it, and returns the dispute's event.
func (c *cluster) disputeEvent(paymentIntent string) []byte {
	charge := fulfillertest.NewID("ch_")
	c.stripe.PutObject(stripefake.KindCharge, charge, map[string]any{"payment_intent": paymentIntent, "amount": 1000, "paid": true})
	dispute := map[string]any{
		"id": fulfillertest.NewID("dp_"), "object": "dispute", "charge": charge, "payment_intent": paymentIntent,
		"status": "needs_response", "reason": "fraudulent", "amount": 1000,
	}
	c.stripe.PutObject(stripefake.KindDispute, dispute["id"].(string), dispute)
	return c.event("charge.dispute.created", dispute)
}

// invoicePaidEvent registers a paid renewal invoice of the subscription:
// seats of price for the month up to periodEnd.
func (c *cluster) invoicePaidEvent(subscription, price string, seats, periodEnd int64) []byte {
	id := fulfillertest.NewID("in_")
	lines := []map[string]any{{
		"object": "line_item", "type": "subscription", "proration": false, "subscription": subscription, "amount": 1000,
		"price": map[string]any{"id": price, "object": "price"}, "quantity": seats,
		"period": map[string]any{"start": periodEnd - 30*day, "end": periodEnd},
	}}
	inv := map[string]any{
		"id": id, "object": "invoice", "subscription": subscription, "billing_reason": "subscription_cycle",
		"status": "paid", "paid": true, "customer": fulfillertest.NewID("cus_"), "payment_intent": fulfillertest.NewID("pi_"),
		"charge": fulfillertest.NewID("ch_"),
	}
	withLines := map[string]any{"lines": lines}
	for k, v := range inv {
		withLines[k] = v
	}
	c.stripe.PutObject(stripefake.KindInvoice, id, withLines)
	inv["lines"] = map[string]any{"object": "list", "data": lines, "has_more": false}
	return c.event("invoice.paid", inv)
}

// feed delivers the wave's events in the background, each purchase's in
// order and the purchases staggered, as Stripe would.
func (c *cluster) feed(wave []*purchase) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, p := range wave {
		stagger := c.randDuration(200 * time.Millisecond)
		pause := c.randDuration(300 * time.Millisecond)
		wg.Add(1)
		c.senders.Add(1)
		go func() {
			defer wg.Done()
			defer c.senders.Done()
			if !sleepCtx(c.ctx, stagger) {
				return
			}
			p.sentAt.Store(time.Now().UnixNano())
			for i, body := range p.events {
				if i > 0 && !sleepCtx(c.ctx, pause) {
					return
				}
				c.send(p.label, body)
			}
		}()
	}
	return &wg
}

// send delivers a signed event to a live process until one answers 200,
// re-sending, as Stripe does, when the process died or answered 5xx.
func (c *cluster) send(label string, body []byte) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if c.ctx.Err() != nil {
			return
		}
		if attempt > 1 {
			c.resent.Add(1)
		}
		status, answer, err := c.post(body)
		switch {
		case err == nil && status == http.StatusOK:
			return
		case err == nil && status < 500:
			c.t.Errorf("%s: the service refused an event with HTTP %d: %s", label, status, answer)
			return
		case time.Since(start) > 2*time.Minute:
			c.t.Errorf("%s: an event was not accepted in %d attempts over two minutes; last: HTTP %d %v", label, attempt, status, err)
			return
		}
		if !sleepCtx(c.ctx, 50*time.Millisecond) {
			return
		}
	}
}

func (c *cluster) post(body []byte) (int, string, error) {
	live := c.live()
	if len(live) == 0 {
		return 0, "", errors.New("no process is up")
	}
	p := live[c.randN(len(live))]
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, "http://"+p.addr+"/webhooks/stripe", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", fulfillertest.Sign(body, secret, time.Now()))
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, string(answer), nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ---- Kills and recovery ----

// killAndRecover waits for a key creation or edit in flight, kills a process at a
// random moment around it, restarts it, and measures how long after the
// kill every order then in flight is delivered.
func (c *cluster) killAndRecover(n int, all []*purchase) time.Duration {
	c.t.Helper()
	victim, busy := c.pickVictim(n%2 == 0, 20*time.Second)
	time.Sleep(c.randDuration(maxKillDelay))
	inFlight := c.undelivered(all, true)
	creating, editing, stocking := victim.creating.Load(), victim.editing.Load(), victim.stocking.Load()
	killedAt := c.kill(victim)
	c.start(victim.slot)
	restart := time.Since(killedAt)

	if !c.waitDelivered(inFlight, killedAt.Add(recoveryBound)) {
		c.t.Fatalf("kill %d of %s: orders in flight at the kill were not delivered within %s of it (restart took %s)\n%s",
			n, victim.name, recoveryBound, restart.Round(time.Millisecond), c.stateReport(inFlight))
	}
	recovered := time.Since(killedAt)
	note := ""
	if !busy {
		note = " (no create or edit was in flight anywhere: killed at random)"
	}
	c.t.Logf("kill %d: SIGKILL %s with %d Luarmor creates and %d edits in flight, %d of them stock work%s; %d orders in flight; restarted in %s; all delivered %s after the kill",
		n, victim.name, creating, editing, stocking, note, len(inFlight), restart.Round(time.Millisecond), recovered.Round(time.Millisecond))
	return recovered
}

// pickVictim returns a live process with a Luarmor create or edit in
// flight, or any live one if none has one within wait. Asked to prefer the
// stock, it first waits a while for a refill create or an edit (a sold
// key's note rewrite) in flight: rarer moments than a unit's create.
func (c *cluster) pickVictim(preferStock bool, wait time.Duration) (*replica, bool) {
	start := time.Now()
	deadline := start.Add(wait)
	for {
		live := c.live()
		stockFirst := preferStock && time.Since(start) < stockKillWait
		var busy []*replica
		for _, p := range live {
			if p.stocking.Load() > 0 || !stockFirst && (p.creating.Load() > 0 || p.editing.Load() > 0) {
				busy = append(busy, p)
			}
		}
		if len(busy) > 0 {
			return busy[c.randN(len(busy))], true
		}
		if time.Now().After(deadline) && len(live) > 0 {
			return live[c.randN(len(live))], false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// orderState is what the database says of one order.
type orderState struct {
	status                 string
	active, pending, total int
}

func (c *cluster) states(ps []*purchase) map[string]orderState {
	c.t.Helper()
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.session.ID
	}
	rows, err := c.pool.Query(c.ctx, `
		SELECT o.checkout_session_id, o.status,
		       count(k.id) FILTER (WHERE k.status = 'active'),
		       count(k.id) FILTER (WHERE k.status = 'pending'),
		       count(k.id)
		  FROM orders o LEFT JOIN order_keys k USING (checkout_session_id)
		 WHERE o.checkout_session_id = ANY($1)
		 GROUP BY 1, 2`, ids)
	require.NoError(c.t, err)
	out := map[string]orderState{}
	for rows.Next() {
		var id string
		var s orderState
		require.NoError(c.t, rows.Scan(&id, &s.status, &s.active, &s.pending, &s.total))
		out[id] = s
	}
	require.NoError(c.t, rows.Err())
	return out
}

// delivered reports whether an order reached its end: every unit's key
// active, or, for the disputed order, revoked with no usable key.
func (p *purchase) delivered(s orderState) bool {
	if p.disputed {
		return s.status == "revoked" && s.active == 0
	}
	return s.status == "fulfilled" && s.active == p.units && s.total == p.units
}

// undelivered lists the purchases not delivered yet; sentOnly keeps only
// those whose events were already being sent.
func (c *cluster) undelivered(ps []*purchase, sentOnly bool) []*purchase {
	states := c.states(ps)
	var out []*purchase
	for _, p := range ps {
		if sentOnly && p.sentAt.Load() == 0 {
			continue
		}
		if !p.delivered(states[p.session.ID]) {
			out = append(out, p)
		}
	}
	return out
}

func (c *cluster) waitDelivered(ps []*purchase, deadline time.Time) bool {
	// Polled: the orders change in other processes, and a reading every
	// 25 ms is as fine as the recovery times it measures need.
	for len(c.undelivered(ps, false)) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(25 * time.Millisecond)
	}
	return true
}

// waitIdle waits until no job is left to run.
func (c *cluster) waitIdle(deadline time.Time) {
	c.t.Helper()
	// Polled: River's job events reach only the client that ran the job,
	// in another process.
	for {
		var waiting int
		require.NoError(c.t, c.pool.QueryRow(c.ctx, `SELECT count(*) FROM river_job
			WHERE state IN ('available', 'pending', 'retryable', 'running', 'scheduled')`).Scan(&waiting))
		if waiting == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("jobs still waiting or running %s after the orders were delivered\n%s", recoveryBound, c.jobReport())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stateReport says, for each purchase not delivered, where it stands, and
// which jobs are unfinished: what a failed recovery needs explained.
func (c *cluster) stateReport(ps []*purchase) string {
	states := c.states(ps)
	var r strings.Builder
	for _, p := range c.undelivered(ps, false) {
		s, ok := states[p.session.ID]
		if !ok {
			fmt.Fprintf(&r, "%s: no order recorded yet\n", p.label)
			continue
		}
		fmt.Fprintf(&r, "%s: %s, %d of %d keys active, %d pending\n", p.label, s.status, s.active, p.units, s.pending)
	}
	r.WriteString(c.jobReport())
	return r.String()
}

// jobReport lists the unfinished jobs.
func (c *cluster) jobReport() string {
	rows, err := c.pool.Query(c.ctx, `
		SELECT kind, state, attempt, coalesce(attempted_by[cardinality(attempted_by)], ''),
		       coalesce(extract(epoch FROM now() - attempted_at), 0)::float8, coalesce(left(errors[cardinality(errors)]->>'error', 160), '')
		  FROM river_job WHERE state NOT IN ('completed', 'cancelled') ORDER BY id`)
	if err != nil {
		return fmt.Sprintf("unfinished jobs unreadable: %v\n", err)
	}
	defer rows.Close()
	var r strings.Builder
	r.WriteString("unfinished jobs:\n")
	for rows.Next() {
		var kind, state, by, lastErr string
		var attempt int
		var since float64
		if err := rows.Scan(&kind, &state, &attempt, &by, &since, &lastErr); err != nil {
			return fmt.Sprintf("unfinished jobs unreadable: %v\n", err)
		}
		fmt.Fprintf(&r, "  %s %s, attempt %d by %s, %.1fs since it started %s\n", kind, state, attempt, by, since, lastErr)
	}
	return r.String()
}

// ---- End state ----

// recordedKey is one order_keys row, and the stock key sold as it if any.
type recordedKey struct {
	reference, status string
	userKey           *string
	createAttempts    int
	stockKey          *string // the Luarmor key of the stock key sold to the unit; nil when made to order
}

func (c *cluster) keysOf(p *purchase) []recordedKey {
	c.t.Helper()
	rows, err := c.pool.Query(c.ctx, `SELECT k.reference, k.status, k.user_key, k.create_attempts, s.user_key
		FROM order_keys k LEFT JOIN stock_keys s ON s.order_key_id = k.id
		WHERE k.checkout_session_id = $1`, p.session.ID)
	require.NoError(c.t, err)
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (recordedKey, error) {
		var k recordedKey
		return k, row.Scan(&k.reference, &k.status, &k.userKey, &k.createAttempts, &k.stockKey)
	})
	require.NoError(c.t, err)
	return keys
}

// createsByReference counts the creates Luarmor received, applied or not,
// by the reference in their note.
func (c *cluster) createsByReference() map[string]int {
	out := map[string]int{}
	for _, call := range c.sandbox.Calls() {
		if call.Method == http.MethodPost && strings.HasSuffix(call.Path, "/users") {
			out[jobs.ParseNote(createNote(call)).Reference]++
		}
	}
	return out
}

// createNote is the note a create or edit call asked for.
func createNote(call sandbox.Call) string {
	var body struct {
		Note string `json:"note"`
	}
	_ = json.Unmarshal(call.Body, &body)
	return body.Note
}

// checkOrders requires every order to hold exactly its keys: one active
// key per unit, none usable for the disputed payment, renewals applied; a
// unit of the stocked price holds a key of its key_days, untouched, labelled
// as its own, and a unit sold from stock holds that key and no other.
func (c *cluster) checkOrders(ps []*purchase) {
	t := c.t
	creates := c.createsByReference()
	for _, p := range ps {
		var status string
		var paidThrough *int64
		require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT status, paid_through FROM orders WHERE checkout_session_id = $1`,
			p.session.ID).Scan(&status, &paidThrough), p.label)
		keys := c.keysOf(p)
		if p.disputed {
			// A dispute recorded before the order was expanded keeps its
			// units from ever being recorded; otherwise they all are.
			require.Contains(t, []int{0, p.units}, len(keys), "%s: no unit rows, or one per purchased unit", p.label)
			require.Equal(t, "revoked", status, p.label)
			recorded := map[string]bool{}
			for _, k := range keys {
				require.NotEqual(t, "active", k.status, "%s: no usable key for a disputed payment", p.label)
				if k.userKey != nil {
					require.Equal(t, "blacklisted", k.status, p.label)
					recorded[*k.userKey] = true
				}
			}
			for _, u := range c.sandbox.Users(project) {
				if strings.Contains(u.Note, p.session.ID) {
					require.True(t, u.IsBanned(), "%s: key %s… in Luarmor is not blacklisted (recorded on the order: %t; a process that made it may have died before recording it)",
						p.label, u.UserKey[:6], recorded[u.UserKey])
				}
			}
			continue
		}
		require.Len(t, keys, p.units, "%s: one unit row per purchased unit", p.label)
		require.Equal(t, "fulfilled", status, p.label)
		for _, k := range keys {
			require.Equal(t, "active", k.status, p.label)
			require.NotNil(t, k.userKey, p.label)
			u, ok := c.sandbox.User(project, *k.userKey)
			require.True(t, ok, "%s: a delivered key exists in Luarmor", p.label)
			require.False(t, u.IsBanned(), p.label)
			require.Contains(t, u.Note, p.session.ID, p.label)
			require.Contains(t, u.Note, "ref:"+k.reference, "%s: the key is the unit's own", p.label)
			if p.periodEnd != 0 {
				require.Equal(t, p.periodEnd+day, u.AuthExpire, "%s: the renewal extended the key once", p.label)
			}
			if p.stocked {
				require.Equal(t, stockKeyDays, u.KeyDays, "%s: a key of the stocked price grants its key_days", p.label)
				require.Equal(t, luarmor.NeverExpires, u.AuthExpire, "%s: the key's timer waits for its first use", p.label)
				require.Equal(t, k.reference, jobs.ParseNote(u.Note).Reference,
					"%s: the key's note names the unit's reference alone (a sold stock key's note was rewritten): %q", p.label, u.Note)
			}
			if k.stockKey == nil {
				continue
			}
			require.True(t, p.stocked, "%s: only a unit of the stocked price is sold from its stock", p.label)
			require.Equal(t, *k.stockKey, *k.userKey, "%s: the unit's key is the stock key sold to it", p.label)
			require.Zero(t, k.createAttempts, "%s: no create was sent for a unit sold from stock", p.label)
			require.Zero(t, creates[k.reference], "%s: Luarmor got a create for a unit sold from stock: it would hold a second key", p.label)
		}
		if p.periodEnd != 0 {
			require.NotNil(t, paidThrough, p.label)
			require.Equal(t, p.periodEnd, *paidThrough, p.label)
		}
	}
}

// checkLuarmorHoldsExactlyTheRecordedKeys requires every key in Luarmor to
// be recorded once, as a unit's key or as a stock key for sale, and every
// recorded key to exist, its note naming the reference it is recorded
// under: a key minted twice, minted and forgotten, or sold to two units
// shows up here.
func (c *cluster) checkLuarmorHoldsExactlyTheRecordedKeys() {
	t := c.t
	type holder struct{ what, reference string } // what: "unit" or "stock"
	rows, err := c.pool.Query(c.ctx, `
		SELECT user_key, 'unit', reference FROM order_keys WHERE user_key IS NOT NULL
		UNION ALL
		SELECT user_key, 'stock', reference FROM stock_keys WHERE user_key IS NOT NULL AND status IN ('ready', 'retiring')`)
	require.NoError(t, err)
	holders := map[string][]holder{}
	for rows.Next() {
		var key string
		var h holder
		require.NoError(t, rows.Scan(&key, &h.what, &h.reference))
		holders[key] = append(holders[key], h)
	}
	require.NoError(t, rows.Err())

	inLuarmor := map[string]bool{}
	references := map[string]int{}
	var orphans, lost, twice []string
	for _, u := range c.sandbox.Users(project) {
		inLuarmor[u.UserKey] = true
		references[jobs.ParseNote(u.Note).Reference]++
		hs := holders[u.UserKey]
		switch {
		case len(hs) == 0:
			orphans = append(orphans, u.UserKey[:6]+"…")
		case len(hs) > 1:
			twice = append(twice, fmt.Sprintf("%s… (%v)", u.UserKey[:6], hs))
		case hs[0].what == "stock":
			require.Equal(t, jobs.StockNote(hs[0].reference), u.Note, "stock key %s… is labelled as stock with its own reference", u.UserKey[:6])
		default:
			require.Equal(t, hs[0].reference, jobs.ParseNote(u.Note).Reference,
				"key %s… of a unit names the unit's reference (a sold stock key has its note rewritten): %q", u.UserKey[:6], u.Note)
		}
	}
	for k := range holders {
		if !inLuarmor[k] {
			lost = append(lost, k[:6]+"…")
		}
	}
	require.Empty(t, orphans, "keys in Luarmor that no order or stock records (minted twice or forgotten)")
	require.Empty(t, twice, "keys recorded twice: for two units, or for a unit and as stock for sale")
	require.Empty(t, lost, "recorded keys that Luarmor does not hold")
	for ref, n := range references {
		require.Equal(t, 1, n, "Luarmor holds %d keys for reference %s", n, ref)
	}
}

// checkStock requires the stocked price never to have held more keys for
// sale than its size, and, once idle, to be full again with no key half
// made; every stock key sold is its unit's key.
func (c *cluster) checkStock() {
	t := c.t
	var ready, pending, retiring, sold int
	require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'retiring'), count(*) FILTER (WHERE status = 'sold')
		FROM stock_keys WHERE price_id = $1`, priceStocked).Scan(&ready, &pending, &retiring, &sold))
	peak := c.stockPeak.Load()
	t.Logf("stock of %s once idle: %d ready, %d pending, %d sold; at most %d for sale at once (size %d)", priceStocked, ready, pending, sold, peak, stockSize)
	require.LessOrEqual(t, peak, int64(stockSize), "the stock never holds more keys for sale (ready and pending) than its size, a refill cut off included")
	require.LessOrEqual(t, ready+pending, stockSize, "the stock holds at most its size")
	require.Zero(t, pending, "once idle, no stock key is left half made")
	require.Zero(t, retiring, "no stock key is taken out of sale: the price stays stocked")
	require.Equal(t, stockSize, ready, "once idle, every key sold was replaced")
	var notTheUnitsKey int
	require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT count(*) FROM stock_keys s JOIN order_keys k ON k.id = s.order_key_id
		WHERE s.status = 'sold' AND k.user_key IS DISTINCT FROM s.user_key`).Scan(&notTheUnitsKey))
	require.Zero(t, notTheUnitsKey, "every stock key sold is the key of the unit it was sold to")
}

// checkJobs requires that no job was left running by a dead process and
// none was given up.
func (c *cluster) checkJobs() {
	t := c.t
	var running, discarded int
	require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT count(*) FILTER (WHERE state = 'running'),
		count(*) FILTER (WHERE state = 'discarded') FROM river_job`).Scan(&running, &discarded))
	require.Zero(t, running, "jobs left running\n%s", c.jobReport())
	require.Zero(t, discarded, "jobs given up\n%s", c.jobReport())
}

// logExercisedPaths reports which dangerous moments the kills hit. From
// Luarmor's call log: a create cut before Luarmor applied it, and a key
// Luarmor made whose answer its process never recorded, found again by its
// reference, for units and for the stock; a sold key's note rewrite cut
// off or sent again. From the database: the stocked price's units sold from
// stock and made to order, and the jobs a killed process was running,
// handed to another (a refill, a sale, a rewrite cut off).
func (c *cluster) logExercisedPaths() {
	type reference struct {
		stock    bool
		applied  []time.Time // creates Luarmor applied
		lookedUp []time.Time // searches for the reference
	}
	refs := map[string]*reference{}
	get := func(ref string) *reference {
		if refs[ref] == nil {
			refs[ref] = &reference{}
		}
		return refs[ref]
	}
	type tally struct{ creates, cut, found int }
	var units, stock tally
	rewrites, rewritesCut := 0, 0
	rewritten := map[string]int{} // sold key → note rewrites Luarmor applied
	for _, call := range c.sandbox.Calls() {
		if !strings.HasSuffix(call.Path, "/users") {
			continue
		}
		switch call.Method {
		case http.MethodPost:
			note := createNote(call)
			r := get(jobs.ParseNote(note).Reference)
			r.stock = strings.HasPrefix(note, jobs.StockNote(""))
			n := &units
			if r.stock {
				n = &stock
			}
			n.creates++
			switch call.Status {
			case 0:
				n.cut++
			case http.StatusOK:
				r.applied = append(r.applied, call.Time)
			}
		case http.MethodGet:
			q, _ := url.ParseQuery(call.Query)
			if ref := q.Get("search"); strings.HasPrefix(ref, "fk_") {
				r := get(ref)
				r.lookedUp = append(r.lookedUp, call.Time)
			}
		case http.MethodPatch:
			var body struct {
				UserKey string  `json:"user_key"`
				Note    *string `json:"note"`
			}
			if json.Unmarshal(call.Body, &body) != nil || body.Note == nil {
				continue
			}
			rewrites++
			switch call.Status {
			case 0:
				rewritesCut++
			case http.StatusOK:
				rewritten[body.UserKey]++
			}
		}
	}
	for _, r := range refs {
		if len(r.applied) == 1 && slices.ContainsFunc(r.lookedUp, func(t time.Time) bool { return t.After(r.applied[0]) }) {
			if r.stock {
				stock.found++
			} else {
				units.found++
			}
		}
	}
	rewrittenAgain := 0
	for _, n := range rewritten {
		if n > 1 {
			rewrittenAgain++
		}
	}

	var fromStock, madeToOrder int
	require.NoError(c.t, c.pool.QueryRow(c.ctx, `SELECT count(s.id), count(*) - count(s.id)
		FROM order_keys k LEFT JOIN stock_keys s ON s.order_key_id = k.id
		WHERE k.price_id = $1 AND k.user_key IS NOT NULL`, priceStocked).Scan(&fromStock, &madeToOrder))
	var rescued []string
	rows, err := c.pool.Query(c.ctx, `SELECT j.kind || CASE WHEN j.kind = 'create_key' AND EXISTS (
				SELECT 1 FROM stock_keys s WHERE s.order_key_id = (j.args->>'order_key_id')::bigint) THEN ' (sold from stock)' ELSE '' END,
			count(*)
		FROM river_job j WHERE j.metadata->>'rescued_from' IS NOT NULL GROUP BY 1 ORDER BY 1`)
	require.NoError(c.t, err)
	for rows.Next() {
		var kind string
		var n int
		require.NoError(c.t, rows.Scan(&kind, &n))
		rescued = append(rescued, fmt.Sprintf("%s %d", kind, n))
	}
	require.NoError(c.t, rows.Err())
	if len(rescued) == 0 {
		rescued = []string{"none"}
	}

	c.t.Logf("Luarmor creates for units: %d; cut off by a kill before Luarmor applied them: %d; keys made by a process that died before recording them, found again by reference: %d; webhook deliveries repeated after a failed POST: %d",
		units.creates, units.cut, units.found, c.resent.Load())
	c.t.Logf("stock of %s: units sold from stock %d, made to order %d; refill creates %d, cut off before Luarmor applied them %d, made by a process that died before recording them and found again by reference %d; sold keys' note rewrites %d, cut off %d, keys rewritten more than once %d",
		priceStocked, fromStock, madeToOrder, stock.creates, stock.cut, stock.found, rewrites, rewritesCut, rewrittenAgain)
	c.t.Logf("jobs a killed process was running, handed to another process: %s", strings.Join(rescued, ", "))
}
