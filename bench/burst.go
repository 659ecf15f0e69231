package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/luarmor/sandbox"
)

// The burst scenario's fixed choices, those of the hosted order page
// (page.js) where a buyer's behaviour is concerned.
const (
	// burstLongPoll is the ?wait= of each order API request
	// (LONG_POLL_SECONDS).
	burstLongPoll = httpapi.MaxWait
	// burstPace is the least time between two order API requests of a
	// buyer whose answers come back at once.
	burstPace = time.Second
	// burstNotFoundRetry is the pause after a 404, and burstMaxBackoff the
	// longest after a failure (MAX_BACKOFF_MS).
	burstNotFoundRetry = 5 * time.Second
	burstMaxBackoff    = time.Minute
	// burstSettleBound bounds the wait for the buyers' first requests to
	// reach the service before the webhooks are sent.
	burstSettleBound = 15 * time.Second
	// burstSettleQuiet is how long the count of orders the buyers'
	// look-ups recorded must hold still before the webhooks go out: on a
	// busy machine a request written may take a while to be looked up.
	burstSettleQuiet = 100 * time.Millisecond
)

// The goals the burst figures are held to: time from webhook sent to key
// seen on the 2-core machine, PostgreSQL with fsync on.
const (
	burstStockP50Goal = 60 * time.Millisecond
	burstStockP99Goal = 300 * time.Millisecond
	burstIdleGoal     = 30 * time.Millisecond
	burstMadeP50Goal  = 90 * time.Millisecond
)

// The runs of the burst scenario, in the order they are measured.
const (
	burstIdleStocked = "idle_stocked"
	burstStocked     = "burst_stocked"
	burstMadeToOrder = "burst_made_to_order"
)

// burstOptions shapes the burst scenario.
type burstOptions struct {
	purchases int
	// spread is the time the webhooks are sent over, evenly; zero sends
	// them all at once.
	spread  time.Duration
	latency time.Duration // Luarmor's answer time
	idle    int           // stocked purchases one at a time at idle
	// timeout runs from a purchase's webhook; a key not seen by then fails
	// the run.
	timeout     time.Duration
	fillTimeout time.Duration
	// statements is how many of a run's statements the report lists, most
	// executed first (with pg_stat_statements loaded).
	statements int
	// cpuProfile, when set, is the prefix of the files that receive a CPU
	// profile of each burst's measured window (the whole process: the
	// service, the buyers and the fakes): PREFIX-burst-<run>.pprof.
	cpuProfile string
}

// BurstReport is the burst scenario's outcome.
type BurstReport struct {
	Purchases        int     `json:"purchases"`
	SpreadMs         float64 `json:"spread_ms"`
	LuarmorLatencyMs float64 `json:"luarmor_latency_ms"`
	IdleRepeats      int     `json:"idle_repeats"`
	// PGSettings are the server's durability settings during the runs.
	PGSettings string      `json:"postgresql_settings"`
	Runs       []BurstRun  `json:"runs"`
	Goals      []BurstGoal `json:"goals"`
	// Failures are the correctness checks that failed; any fails the run.
	Failures []string `json:"failures,omitempty"`
}

// BurstRun is one run: purchases at idle, or one burst.
type BurstRun struct {
	Key       string `json:"key"`
	Name      string `json:"name"`
	Stock     int    `json:"stock"`
	Purchases int    `json:"purchases"`
	// Seen counts the orders whose key their buyer saw in the order API.
	Seen int `json:"seen"`
	// From the webhook sent to the key seen, over the seen orders.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// The webhook POST's own answer time.
	WebhookP50Ms float64 `json:"webhook_p50_ms"`
	WebhookP99Ms float64 `json:"webhook_p99_ms"`
	WebhookMaxMs float64 `json:"webhook_max_ms"`
	// SentOverMs runs from the first webhook sent to the last.
	SentOverMs float64 `json:"sent_over_ms"`
	// RecordedByPage counts orders the buyer's first request recorded,
	// unpaid, from its look-up in Stripe before the webhook came.
	RecordedByPage int `json:"recorded_by_page"`
	// EarlyAnswers counts order API answers before the key: 200s still
	// pending that came back before their wait ended, and others than 200.
	EarlyAnswers int `json:"early_answers"`
	// LuarmorCreates counts the key creations (POST .../users) whose note
	// names one of the run's orders; LuarmorCalls every call in the
	// measured windows (refills and note rewrites included).
	LuarmorCreates int `json:"luarmor_creates"`
	LuarmorCalls   int `json:"luarmor_calls"`
	// CPU time per purchase over the measured windows (from the first
	// webhook sent to the last key seen): this Go process (the service,
	// the buyers and senders, the fakes) and the PostgreSQL server; nil
	// when not measured. MachineBusy is the busy share of all cores.
	GoCPUPerPurchaseMs *float64 `json:"go_cpu_per_purchase_ms,omitempty"`
	PGCPUPerPurchaseMs *float64 `json:"pg_cpu_per_purchase_ms,omitempty"`
	MachineBusy        *float64 `json:"machine_busy,omitempty"`
	// Statements and commits PostgreSQL ran per purchase in the database
	// over the measured windows (pg_stat_statements, when the server
	// preloads it: scripts/with-postgres --statements), and the most
	// executed statements; nil when not counted.
	StatementsPerPurchase *float64         `json:"statements_per_purchase,omitempty"`
	CommitsPerPurchase    *float64         `json:"commits_per_purchase,omitempty"`
	Statements            []StatementCount `json:"statements,omitempty"`
	Steps                 []StockStep      `json:"steps,omitempty"`
	StepsError            string           `json:"steps_error,omitempty"`
}

// BurstGoal is one goal checked against a run.
type BurstGoal struct {
	Goal string `json:"goal"`
	Run  string `json:"run"`
	Met  bool   `json:"met"`
}

// burstScenario measures stocked purchases at idle and in a burst on one
// service, then the same burst made to order on another, each on a fresh
// database.
func burstScenario(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, o burstOptions,
	progress func(string, ...any)) (*BurstReport, error) {
	rep := &BurstReport{Purchases: o.purchases, SpreadMs: ms(o.spread), LuarmorLatencyMs: ms(o.latency), IdleRepeats: o.idle}
	var err error
	if rep.PGSettings, err = pgSettings(ctx, dbs); err != nil {
		return nil, err
	}
	stocked, err := burstStockedRuns(ctx, dbs, tmpl, logger, o, progress)
	if err != nil {
		return nil, fmt.Errorf("stocked: %w", err)
	}
	made, err := burstMadeToOrderRun(ctx, dbs, tmpl, logger, o, progress)
	if err != nil {
		return nil, fmt.Errorf("made to order: %w", err)
	}
	for _, r := range append(stocked, made) {
		rep.Runs = append(rep.Runs, r.BurstRun)
		rep.Failures = append(rep.Failures, r.failures...)
	}
	rep.Goals = burstGoals(rep.Runs)
	return rep, nil
}

// burstRunResult is a run with its failed checks.
type burstRunResult struct {
	BurstRun
	failures []string
	waves    []*waveResult
}

// burstStockedRuns fills a stock of o.purchases keys through the real
// refill_stock, sells o.idle of them one at a time at idle (the stock
// refilled and the service quiet before each), then sells a burst of
// o.purchases with the stock full again.
func burstStockedRuns(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, o burstOptions,
	progress func(string, ...any)) (runs []burstRunResult, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, err := startService(ctx, dbURL, logger, serviceOptions{stock: o.purchases, behindProxy: true})
	if err != nil {
		return nil, err
	}
	defer svc.close()
	// The stock fills at once; its refills answer as slowly as any call.
	progress("burst: filling a stock of %d keys through refill_stock", o.purchases)
	if err := waitForStock(ctx, svc, o.purchases, o.fillTimeout); err != nil {
		return nil, err
	}
	svc.sandbox.SetLatency(o.latency)
	b, err := newBurstBuyers(ctx, svc, o)
	if err != nil {
		return nil, err
	}
	defer b.client.CloseIdleConnections()

	progress("burst: %d stocked purchases one at a time at idle", o.idle)
	idle := newBurstRunResult(burstIdleStocked, "stocked, one purchase at idle", o.purchases)
	for range o.idle {
		if err := waitForStock(ctx, svc, o.purchases, o.fillTimeout); err != nil {
			return nil, err
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return nil, ctx.Err()
		}
		w, err := b.wave(ctx, 1, 0, "")
		if err != nil {
			return nil, err
		}
		idle.add(w)
	}
	idle.finish(ctx, b, true, true)

	if err := waitForStock(ctx, svc, o.purchases, o.fillTimeout); err != nil {
		return nil, err
	}
	progress("burst: %d stocked purchases, webhooks sent %s", o.purchases, spreadWords(o.spread))
	burst := newBurstRunResult(burstStocked, "stocked, burst", o.purchases)
	w, err := b.wave(ctx, o.purchases, o.spread, o.profileOf(burstStocked))
	if err != nil {
		return nil, err
	}
	burst.add(w)
	burst.finish(ctx, b, true, true)
	return []burstRunResult{*idle, *burst}, nil
}

// burstMadeToOrderRun sends the same burst to a service without stock.
func burstMadeToOrderRun(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, o burstOptions,
	progress func(string, ...any)) (run burstRunResult, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, err := startService(ctx, dbURL, logger, serviceOptions{behindProxy: true})
	if err != nil {
		return run, err
	}
	defer svc.close()
	svc.sandbox.SetLatency(o.latency)
	b, err := newBurstBuyers(ctx, svc, o)
	if err != nil {
		return run, err
	}
	defer b.client.CloseIdleConnections()
	// The service checks its Luarmor key at start-up: past that, quiet.
	if !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
		return run, ctx.Err()
	}
	progress("burst: %d purchases made to order, Luarmor answering in %s, webhooks sent %s", o.purchases, o.latency, spreadWords(o.spread))
	r := newBurstRunResult(burstMadeToOrder, "made to order, burst", 0)
	w, err := b.wave(ctx, o.purchases, o.spread, o.profileOf(burstMadeToOrder))
	if err != nil {
		return run, err
	}
	r.add(w)
	r.finish(ctx, b, false, true)
	return *r, nil
}

// profileOf is the file of run's CPU profile, "" when none is asked for.
func (o burstOptions) profileOf(run string) string {
	if o.cpuProfile == "" {
		return ""
	}
	return o.cpuProfile + "-burst-" + run + ".pprof"
}

func spreadWords(spread time.Duration) string {
	if spread == 0 {
		return "all at once"
	}
	return "evenly over " + spread.String()
}

// burstBuyers buys from one service: buyers and webhooks.
type burstBuyers struct {
	svc        *service
	o          burstOptions
	client     *http.Client
	maker      *eventMaker
	postmaster int  // the PostgreSQL server's process, 0 if not readable
	statements bool // whether pg_stat_statements counts the database's statements
	next       int  // the next buyer's number, which gives its address
}

func newBurstBuyers(ctx context.Context, svc *service, o burstOptions) (*burstBuyers, error) {
	maker, err := newEventMaker("paid", benchItems)
	if err != nil {
		return nil, err
	}
	client := newSender(o.purchases)
	// A long-poll is answered after up to burstLongPoll seconds.
	client.Timeout = burstLongPoll*time.Second + 10*time.Second
	b := &burstBuyers{svc: svc, o: o, client: client, maker: maker}
	var backend int
	if err := svc.main.Pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, fmt.Errorf("asking PostgreSQL for its process: %w", err)
	}
	if pm, ok := postmasterOf(backend); ok {
		b.postmaster = pm
	}
	b.statements = statementsAvailable(ctx, svc.main.Pool)
	return b, nil
}

// buyerResult is one purchase as its buyer and its webhook saw it.
type buyerResult struct {
	sessionID string
	sent      time.Time     // just before the webhook was signed and sent
	answered  time.Duration // the webhook's 200
	webhookOK bool
	seenAt    time.Time // the answer that showed the key; zero if none
	keys      []string  // the order's keys in that answer
	early     int       // answers before it, see BurstRun.EarlyAnswers
	ended     string    // a final status other than fulfilled, if any
}

func (r buyerResult) seen() time.Duration { return r.seenAt.Sub(r.sent) }

// waveResult is one wave of purchases: buyers waiting first, then their
// webhooks.
type waveResult struct {
	buys           []buyerResult
	recordedByPage int
	cpu            cpuUsage
	pg             time.Duration
	pgMeasured     bool
	statements     statementCounts // nil when not counted
	first, last    time.Time       // first webhook sent, last key seen
}

// wave makes n purchases. Each buyer is on its order page before the
// payment's webhook, long-polling the order API as page.js does, from its
// own address; Stripe knows each Checkout Session from checkout on, open
// and unpaid until the payment. Once every buyer's first request has
// reached the service (and the look-ups it allowed have recorded their
// orders, unpaid) the paid sessions' webhooks are sent evenly over spread.
// The measured window runs from the first webhook sent to the last key
// seen; with a profile file, a CPU profile of the process covers it.
func (b *burstBuyers) wave(ctx context.Context, n int, spread time.Duration, profile string) (*waveResult, error) {
	w := &waveResult{buys: make([]buyerResult, n)}
	purchases := make([]purchase, n)
	ids := make([]string, n)
	for i := range purchases {
		purchases[i] = b.maker.next(time.Now())
		ids[i] = purchases[i].SessionID
		w.buys[i].sessionID = ids[i]
		open := purchases[i].session
		open.Status, open.PaymentStatus = "open", "unpaid"
		b.svc.stripe.PutSession(open)
	}
	// An interrupt stops the wave at its next step; requests in flight end
	// with the deadline.
	reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), burstSettleBound+spread+b.o.timeout)
	defer cancel()
	buyerCtx := make([]context.Context, n)
	stopBuyer := make([]context.CancelFunc, n)
	for i := range n {
		buyerCtx[i], stopBuyer[i] = context.WithCancel(reqCtx)
		defer stopBuyer[i]()
	}

	var buyers sync.WaitGroup
	written := make(chan struct{}, n)
	for i := range n {
		addr := buyerAddress(b.next)
		b.next++
		buyers.Add(1)
		go func() {
			defer buyers.Done()
			b.buyer(buyerCtx[i], &w.buys[i], addr, written)
		}()
	}
	settleBy := time.Now().Add(burstSettleBound)
	for range n {
		select {
		case <-written:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(settleBy)):
			return nil, fmt.Errorf("the buyers' first order API requests were not all sent within %s", burstSettleBound)
		}
	}
	var err error
	if w.recordedByPage, err = b.settle(ctx, ids, settleBy); err != nil {
		return nil, err
	}

	var stmtsA statementCounts
	if b.statements {
		if stmtsA, err = sampleStatements(ctx, b.svc.main.Pool); err != nil {
			return nil, err
		}
	}
	cpuA, pgA, pgOK := sampleCPU(), time.Duration(0), false
	if b.postmaster != 0 {
		pgA, pgOK = postgresCPU(b.postmaster)
	}
	stopProfile, err := startCPUProfile(profile)
	if err != nil {
		return nil, err
	}
	var hooks sync.WaitGroup
	w.first = time.Now()
	for i := range n {
		if !sleepUntil(ctx, w.first.Add(spread*time.Duration(i)/time.Duration(n))) {
			break
		}
		hooks.Add(1)
		go func() {
			defer hooks.Done()
			r, p := &w.buys[i], purchases[i]
			b.svc.stripe.PutSession(p.session) // paid
			r.sent = time.Now()
			if _, err := post(reqCtx, b.client, b.svc.webhookURL(), p.Body, sign(p.Body, benchSecret, r.sent)); err != nil {
				stopBuyer[i]() // its key will not come
				return
			}
			r.answered = time.Since(r.sent)
			r.webhookOK = true
		}()
	}
	hooks.Wait()
	buyers.Wait()
	cpuB := sampleCPU()
	if err := stopProfile(); err != nil {
		return nil, err
	}
	if pgOK {
		var pgB time.Duration
		if pgB, pgOK = postgresCPU(b.postmaster); pgOK {
			w.pg, w.pgMeasured = pgB-pgA, true
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if stmtsA != nil {
		stmtsB, err := sampleStatements(ctx, b.svc.main.Pool)
		if err != nil {
			return nil, err
		}
		w.statements = stmtsB.since(stmtsA)
	}
	w.cpu = cpuBetween(cpuA, cpuB)
	w.last = w.first
	for _, r := range w.buys {
		if !r.seenAt.IsZero() {
			w.last = latest(w.last, r.seenAt)
		}
	}
	return w, nil
}

// buyerAddress is buyer n's client address, one of 10.0.0.0/8.
func buyerAddress(n int) string {
	n++ // not the network's own address
	return fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)
}

// buyer long-polls the order API for r's order as page.js does, until the
// key shows, the order ends otherwise or ctx ends; it reports its first
// request's sending on written.
func (b *burstBuyers) buyer(ctx context.Context, r *buyerResult, addr string, written chan<- struct{}) {
	var once sync.Once
	first := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { written <- struct{}{} }) },
	})
	// A request that fails before it is written still lets the wave go on.
	defer once.Do(func() { written <- struct{}{} })
	query := "wait=" + strconv.Itoa(burstLongPoll)
	backoff := time.Second
	reqCtx := first
	for ctx.Err() == nil {
		started := time.Now()
		status, order, header, err := getOrderFrom(reqCtx, b.client, b.svc.main.URL(), r.sessionID, query, addr)
		reqCtx = ctx
		var pause time.Duration
		switch {
		case err != nil:
			pause, backoff = backoff, min(2*backoff, burstMaxBackoff)
		case status == http.StatusOK && keyVisible(order):
			r.seenAt = time.Now()
			for _, k := range order.Keys {
				r.keys = append(r.keys, k.UserKey)
			}
			return
		case status == http.StatusOK && (order.Status == "failed" || order.Status == "revoked"):
			r.ended = order.Status
			return
		case status == http.StatusOK:
			backoff = time.Second
			if took := time.Since(started); took < burstLongPoll*time.Second {
				r.early++
				pause = burstPace - took
			}
		case status == http.StatusNotFound:
			r.early++
			pause, backoff = burstNotFoundRetry, min(2*backoff, burstMaxBackoff)
		default:
			r.early++
			pause = backoff
			if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
				pause = time.Duration(s) * time.Second
			}
			backoff = min(2*backoff, burstMaxBackoff)
		}
		if pause > 0 && !sleepUntil(ctx, time.Now().Add(pause)) {
			return
		}
	}
}

// settle waits until every look-up in Stripe the buyers' first requests
// made has recorded its order, and returns how many did: the requests
// whose look-up was refused wait for the webhook to record the order.
func (b *burstBuyers) settle(ctx context.Context, ids []string, by time.Time) (int, error) {
	paths := map[string]bool{}
	for _, id := range ids {
		paths["/v1/checkout/sessions/"+id] = true
	}
	last, since := -1, time.Now()
	for {
		looked := 0
		for _, r := range b.svc.stripe.Requests() {
			if r.Method == http.MethodGet && paths[r.Path] {
				looked++
			}
		}
		var recorded int
		err := b.svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE checkout_session_id = ANY($1)`, ids).Scan(&recorded)
		if err != nil {
			return 0, fmt.Errorf("counting the orders the buyers' look-ups recorded: %w", err)
		}
		if recorded != last {
			last, since = recorded, time.Now()
		} else if recorded >= looked && time.Since(since) >= burstSettleQuiet {
			return recorded, nil
		}
		if time.Now().After(by) {
			return 0, fmt.Errorf("the buyers' look-ups in Stripe recorded %d of %d orders within %s", recorded, looked, burstSettleBound)
		}
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return 0, ctx.Err()
		}
	}
}

func newBurstRunResult(key, name string, stock int) *burstRunResult {
	return &burstRunResult{BurstRun: BurstRun{Key: key, Name: name, Stock: stock}}
}

// add counts a wave in the run; finish sums the waves up.
func (r *burstRunResult) add(w *waveResult) { r.waves = append(r.waves, w) }

// finish fills in the run's figures from its waves and checks them:
// stocked says whether every unit should be sold from stock; steps
// whether to break the time down step by step.
func (r *burstRunResult) finish(ctx context.Context, b *burstBuyers, stocked, steps bool) {
	waves := r.waves
	var buys []buyerResult
	var cpuMachine, cpuGo, pg time.Duration
	var busy float64
	cpuOK, pgOK := true, true
	stmts := statementCounts{}
	for _, w := range waves {
		if w.statements == nil {
			stmts = nil
		} else if stmts != nil {
			stmts.add(w.statements)
		}
		buys = append(buys, w.buys...)
		r.RecordedByPage += w.recordedByPage
		cpuOK = cpuOK && w.cpu.measured
		pgOK = pgOK && w.pgMeasured
		cpuMachine += w.cpu.machine
		cpuGo += w.cpu.process
		busy = max(busy, w.cpu.busy)
		pg += w.pg
		if n := w.buys[len(w.buys)-1].sent.Sub(w.first); ms(n) > r.SentOverMs {
			r.SentOverMs = ms(n)
		}
		for _, c := range b.svc.sandbox.Calls() {
			if !c.Time.Before(w.first) && !c.Time.After(w.last) {
				r.LuarmorCalls++
			}
		}
	}
	s := summarizeBuys(buys)
	r.Purchases, r.Seen, r.EarlyAnswers = len(buys), s.seen, s.early
	r.P50Ms, r.P99Ms, r.MaxMs = ms(percentile(s.waits, 50)), ms(percentile(s.waits, 99)), ms(percentile(s.waits, 100))
	r.WebhookP50Ms, r.WebhookP99Ms, r.WebhookMaxMs = ms(percentile(s.answers, 50)), ms(percentile(s.answers, 99)), ms(percentile(s.answers, 100))
	if cpuOK && len(buys) > 0 {
		n := float64(len(buys))
		goMs, busyShare := ms(cpuGo)/n, busy
		r.GoCPUPerPurchaseMs, r.MachineBusy = &goMs, &busyShare
	}
	if pgOK && len(buys) > 0 {
		pgMs := ms(pg) / float64(len(buys))
		r.PGCPUPerPurchaseMs = &pgMs
	}
	if stmts != nil && len(buys) > 0 {
		n := float64(len(buys))
		perPurchase, commits := float64(stmts.total())/n, float64(stmts.commits())/n
		r.StatementsPerPurchase, r.CommitsPerPurchase = &perPurchase, &commits
		list := stmts.perPurchase(len(buys))
		r.Statements = list[:min(len(list), b.o.statements)]
	}

	ids := make([]string, len(buys))
	for i, p := range buys {
		ids[i] = p.sessionID
	}
	creates := createsFor(b.svc.sandbox.Calls(), ids)
	for _, n := range creates {
		r.LuarmorCreates += n
	}
	r.failures = burstFailures(r.Name, buys, creates, stocked, b.o.timeout)

	if steps {
		var timings []timing
		for _, p := range buys {
			if !p.seenAt.IsZero() {
				timings = append(timings, timing{sessionID: p.sessionID, sent: p.sent, answered: p.answered, seen: p.seen()})
			}
		}
		list, err := purchaseSteps(ctx, b.svc, timings)
		if err != nil {
			r.StepsError = err.Error()
		}
		for _, m := range list {
			r.Steps = append(r.Steps, StockStep{Step: m.Name, P50Ms: ms(m.Median), P99Ms: ms(m.P99)})
		}
	}
}

// buysSummary is what the purchases of a run add up to.
type buysSummary struct {
	seen    int
	early   int
	waits   []time.Duration // webhook sent -> key seen, sorted, over the seen
	answers []time.Duration // webhook answer times, sorted, over the answered
}

func summarizeBuys(buys []buyerResult) buysSummary {
	var s buysSummary
	for _, p := range buys {
		s.early += p.early
		if p.webhookOK {
			s.answers = append(s.answers, p.answered)
		}
		if !p.seenAt.IsZero() {
			s.seen++
			s.waits = append(s.waits, p.seen())
		}
	}
	slices.Sort(s.waits)
	slices.Sort(s.answers)
	return s
}

// createsFor counts, for each of ids, the key creations whose note names
// it. A key's note starts with its Checkout Session ID (jobs.Note); keys
// made for the stock name none until sold, and are not created then.
func createsFor(calls []sandbox.Call, ids []string) []int {
	n := make([]int, len(ids))
	for _, c := range calls {
		if !isCreate(c) {
			continue
		}
		for i, id := range ids {
			if bytes.Contains(c.Body, []byte(id)) {
				n[i]++
			}
		}
	}
	return n
}

// burstFailures checks a run: every purchase's webhook accepted and its
// key seen by its buyer within timeout, one key each, no key seen by two
// orders, and Luarmor's creates as expected: none for an order sold from
// stock, at least one for each order made to order (which also proves
// that the count finds creates at all). Purchases are named by their
// number in the run, not their Checkout Session ID.
func burstFailures(run string, buys []buyerResult, creates []int, stocked bool, timeout time.Duration) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, run+": "+fmt.Sprintf(format, args...)) }
	owner := map[string]int{}
	for i, p := range buys {
		switch {
		case !p.webhookOK:
			fail("purchase %d: its webhook was not accepted", i+1)
		case p.ended != "":
			fail("purchase %d: the order ended %s instead of fulfilled", i+1, p.ended)
		case p.seenAt.IsZero():
			fail("purchase %d: its buyer saw no key within %s of the webhook", i+1, timeout)
		case len(p.keys) != 1:
			fail("purchase %d: one unit bought, %d keys shown", i+1, len(p.keys))
		}
		for _, k := range p.keys {
			if j, ok := owner[k]; ok && j != i {
				fail("purchases %d and %d were shown the same key", j+1, i+1)
			}
			owner[k] = i
		}
		if i >= len(creates) {
			continue
		}
		if stocked && creates[i] > 0 {
			fail("purchase %d: sold from stock, yet %d Luarmor key creations name its order", i+1, creates[i])
		}
		if !stocked && creates[i] == 0 && !p.seenAt.IsZero() {
			fail("purchase %d: made to order, yet no Luarmor key creation names its order (the creation count would miss stocked ones too)", i+1)
		}
	}
	return out
}

// burstGoals checks the goals against the runs there are.
func burstGoals(runs []BurstRun) []BurstGoal {
	var goals []BurstGoal
	for _, r := range runs {
		complete := r.Seen == r.Purchases && r.Purchases > 0
		switch r.Key {
		case burstIdleStocked:
			goals = append(goals, BurstGoal{Goal: "one stocked purchase at idle: p50 under " + burstIdleGoal.String(),
				Run: r.Key, Met: complete && r.P50Ms < ms(burstIdleGoal)})
		case burstStocked:
			goals = append(goals,
				BurstGoal{Goal: "stocked burst: p50 under " + burstStockP50Goal.String(), Run: r.Key, Met: complete && r.P50Ms < ms(burstStockP50Goal)},
				BurstGoal{Goal: "stocked burst: p99 under " + burstStockP99Goal.String(), Run: r.Key, Met: complete && r.P99Ms < ms(burstStockP99Goal)})
		case burstMadeToOrder:
			goals = append(goals, BurstGoal{Goal: "made-to-order burst: p50 under " + burstMadeP50Goal.String(),
				Run: r.Key, Met: complete && r.P50Ms < ms(burstMadeP50Goal)})
		}
	}
	return goals
}

func fmtCPU(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmtMs(*v)
}

func writeBurstText(b *strings.Builder, s *BurstReport) {
	if s == nil {
		return
	}
	fmt.Fprintf(b, "\n## Burst: a product drop, stocked and made to order\n\n")
	fmt.Fprintf(b, "%d one-unit purchases whose signed checkout.session.completed webhooks are sent %s (an open loop), "+
		"on a service with `stock: %d` on the price (the stock filled by refill_stock first), then on one without stock; "+
		"and %d stocked purchases one at a time at idle (stock full, service quiet before each). Luarmor answers in %s, "+
		"unthrottled; PostgreSQL %s. Stripe knows each Checkout Session from checkout on (open, unpaid until the webhook's "+
		"payment), and each buyer is on its order page before its webhook is sent: it long-polls GET /v1/orders/{id}?wait=%d "+
		"from its own address as page.js does, and the webhooks go out once every buyer's first request has reached the "+
		"service. Times run from the webhook sent to the answer showing the key; CPU is per purchase from the first webhook "+
		"sent to the last key seen (the Go process holds the service, the buyers and the fakes).\n\n",
		s.Purchases, spreadWords(time.Duration(s.SpreadMs*float64(time.Millisecond))), s.Purchases, s.IdleRepeats,
		fmtMs(s.LuarmorLatencyMs), s.PGSettings, burstLongPoll)
	fmt.Fprintf(b, "| run | keys seen | p50 | p99 | max | webhook p50 / p99 / max | CPU/purchase Go / PostgreSQL | CPU busy | key creations for the orders | recorded by the page first |\n")
	fmt.Fprintf(b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range s.Runs {
		busy := "n/a"
		if r.MachineBusy != nil {
			busy = fmt.Sprintf("%.0f%%", 100**r.MachineBusy)
		}
		fmt.Fprintf(b, "| %s | %d of %d | %s | %s | %s | %s / %s / %s | %s / %s | %s | %d | %d |\n",
			r.Name, r.Seen, r.Purchases, fmtWait(r.P50Ms), fmtWait(r.P99Ms), fmtWait(r.MaxMs),
			fmtMs(r.WebhookP50Ms), fmtMs(r.WebhookP99Ms), fmtMs(r.WebhookMaxMs),
			fmtCPU(r.GoCPUPerPurchaseMs), fmtCPU(r.PGCPUPerPurchaseMs), busy, r.LuarmorCreates, r.RecordedByPage)
	}
	var withSteps []BurstRun
	for _, r := range s.Runs {
		if len(r.Steps) > 0 || r.StepsError != "" {
			withSteps = append(withSteps, r)
		}
	}
	if len(stepNames(withSteps)) > 0 {
		fmt.Fprintf(b, "\nWhere the time goes, p50 / p99 after the webhook was sent:\n\n| step |")
		for _, r := range withSteps {
			fmt.Fprintf(b, " %s |", r.Name)
		}
		fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("--:|", len(withSteps)))
		for _, step := range stepNames(withSteps) {
			fmt.Fprintf(b, "| %s |", step)
			for _, r := range withSteps {
				if i := slices.IndexFunc(r.Steps, func(st StockStep) bool { return st.Step == step }); i >= 0 {
					fmt.Fprintf(b, " %s / %s |", fmtWait(r.Steps[i].P50Ms), fmtWait(r.Steps[i].P99Ms))
				} else {
					fmt.Fprintf(b, " n/a |")
				}
			}
			fmt.Fprintf(b, "\n")
		}
	}
	for _, r := range withSteps {
		if r.StepsError != "" {
			fmt.Fprintf(b, "\n%s: no breakdown: %s.\n", r.Name, r.StepsError)
		}
	}
	writeStatementsText(b, s.Runs)
	fmt.Fprintf(b, "\nEarly order API answers (before the key, not a full wait): ")
	for i, r := range s.Runs {
		if i > 0 {
			fmt.Fprintf(b, ", ")
		}
		fmt.Fprintf(b, "%s %d", r.Name, r.EarlyAnswers)
	}
	fmt.Fprintf(b, ". Webhooks of a burst went out over %s.\n\n", fmtMs(maxSentOver(s.Runs)))
	for _, g := range s.Goals {
		fmt.Fprintf(b, "- Goal, %s: **%s**\n", g.Goal, metWord(g.Met))
	}
	if len(s.Failures) == 0 {
		fmt.Fprintf(b, "\nChecks passed: every key seen, none seen by two orders, no Luarmor key creation for a unit sold from stock.\n")
		return
	}
	fmt.Fprintf(b, "\n**CHECKS FAILED (%d):**\n\n", len(s.Failures))
	for _, f := range s.Failures {
		fmt.Fprintf(b, "- %s\n", f)
	}
}

func maxSentOver(runs []BurstRun) float64 {
	var m float64
	for _, r := range runs {
		if r.Key != burstIdleStocked {
			m = max(m, r.SentOverMs)
		}
	}
	return m
}

// stepNames lists the steps of runs in the order they happen: each run's
// own, merged, a step only some runs went through kept in its place.
func stepNames(runs []BurstRun) []string {
	var names []string
	for _, r := range runs {
		at := 0
		for _, st := range r.Steps {
			if i := slices.Index(names, st.Step); i >= 0 {
				at = i + 1
				continue
			}
			names = slices.Insert(names, at, st.Step)
			at++
		}
	}
	return names
}

// writeStatementsText reports the statements each run cost PostgreSQL a
// purchase, when they were counted, and lists the most executed.
func writeStatementsText(b *strings.Builder, runs []BurstRun) {
	for _, r := range runs {
		if r.StatementsPerPurchase == nil {
			continue
		}
		fmt.Fprintf(b, "\n%s: %.1f statements and %.2f commits a purchase (pg_stat_statements, the measured windows).\n",
			r.Name, *r.StatementsPerPurchase, *r.CommitsPerPurchase)
		if len(r.Statements) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n| per purchase | statement |\n|--:|---|\n")
		for _, st := range r.Statements {
			fmt.Fprintf(b, "| %.2f | `%s` |\n", st.PerPurchase, strings.ReplaceAll(st.Statement, "|", "\\|"))
		}
	}
}
