package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fulfiller/internal/budget"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/metrics"
)

// The stock scenario's fixed choices.
const (
	// stockLongPoll is the ?wait= of each order API request: what the
	// hosted order page asks (LONG_POLL_SECONDS in page.js).
	stockLongPoll = httpapi.MaxWait
	// stockRetry is the pause before asking again after an answer other
	// than 200: the webhook is recorded when its POST returns, but the
	// order a moment later (handle_events), and until then the order API
	// answers 404, or 429 once this client's look-ups of unknown orders
	// run out.
	stockRetry = 10 * time.Millisecond
	// stockFillCount per stockFillWindow is the budget of the fill phase:
	// far above anything the refill spends, so the stock fills as fast as
	// refill_stock makes keys one at a time.
	stockFillCount  = 1_000_000
	stockFillWindow = time.Minute
	// stockGoal is the p99 the stocked spike should beat.
	stockGoal = time.Second
)

// stockOptions shapes the stock scenario: one spike of one-unit purchases,
// run once with a stock of as many keys as purchases and once without.
type stockOptions struct {
	rate      string // the spike's budget as given, COUNT/DURATION
	count     int
	window    time.Duration
	purchases int
	spread    time.Duration // the webhooks arrive evenly over it
	latency   time.Duration // Luarmor's answer time
	// deadline runs from the first webhook; an order with no key by then
	// counts as not delivered.
	deadline time.Duration
	// fillTimeout bounds the fill phase.
	fillTimeout time.Duration
}

// StockReport is the stock scenario's outcome.
type StockReport struct {
	Rate             string     `json:"rate"`
	Count            int        `json:"count"`
	WindowS          float64    `json:"window_s"`
	Purchases        int        `json:"purchases"`
	SpreadS          float64    `json:"spread_s"`
	LuarmorLatencyMs float64    `json:"luarmor_latency_ms"`
	DeadlineS        float64    `json:"deadline_s"`
	FillRate         string     `json:"fill_rate"`
	Runs             []StockRun `json:"runs"` // with stock, then without
	GoalMs           float64    `json:"goal_p99_ms"`
	GoalMet          bool       `json:"goal_met"`
}

// StockRun is one spike.
type StockRun struct {
	Stock int `json:"stock"`
	// The fill phase (stocked run only): the time refill_stock took to
	// make the stock at the fill budget, and the Luarmor calls it made.
	FillS     float64 `json:"fill_s,omitempty"`
	FillCalls int     `json:"fill_calls,omitempty"`
	// Delivered orders showed their key in the order API by the deadline.
	Delivered int `json:"delivered"`
	// Wait runs from the webhook's POST returning to the order API showing
	// the key; over the delivered orders.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// WebhookP99Ms is the webhook POST's own answer time.
	WebhookP99Ms float64 `json:"webhook_p99_ms"`
	// EarlyAnswers counts order API answers other than 200 (the order not
	// recorded yet), each asked again stockRetry later.
	EarlyAnswers int `json:"early_answers"`
	// SpikeS runs from the first webhook sent to the last key seen (or the
	// deadline): the spike window the calls below are counted in.
	SpikeS float64 `json:"spike_s"`
	// CallsByClass are the budget's slots (luarmor_calls) taken in the
	// spike window, by class; RateLimited the sandbox's 429s in it.
	CallsByClass map[string]int `json:"calls_by_class"`
	RateLimited  int            `json:"rate_limited"`
	// Hits and Misses are fulfiller_stock_sales_total of the spike's
	// service; a price without stock counts neither.
	Hits   int `json:"hits"`
	Misses int `json:"misses"`
	// DeliveredTwice counts keys delivered to more than one unit.
	DeliveredTwice int `json:"delivered_twice"`
	// Steps are the p50 and p99 of each step of the delivered orders,
	// counted from the webhook sent; StepsError says why they are missing.
	Steps      []StockStep `json:"steps,omitempty"`
	StepsError string      `json:"steps_error,omitempty"`
}

// StockStep is one step of the path from webhook to key.
type StockStep struct {
	Step  string  `json:"step"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// stockScenario runs the spike with a stock, then without, each on a fresh
// database.
func stockScenario(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, o stockOptions,
	progress func(string, ...any)) (*StockReport, error) {
	rep := &StockReport{Rate: o.rate, Count: o.count, WindowS: o.window.Seconds(), Purchases: o.purchases,
		SpreadS: o.spread.Seconds(), LuarmorLatencyMs: ms(o.latency), DeadlineS: o.deadline.Seconds(),
		FillRate: fmt.Sprintf("%d/%s", stockFillCount, stockFillWindow), GoalMs: ms(stockGoal)}
	for _, stock := range []int{o.purchases, 0} {
		run, err := stockRun(ctx, dbs, tmpl, logger, o, stock, progress)
		if err != nil {
			return nil, fmt.Errorf("stock %d: %w", stock, err)
		}
		rep.Runs = append(rep.Runs, *run)
	}
	with := rep.Runs[0]
	rep.GoalMet = with.Delivered == o.purchases && with.P99Ms < rep.GoalMs &&
		with.CallsByClass[budget.ClassDeliver.String()] == 0 && with.Misses == 0 && with.DeliveredTwice == 0
	return rep, nil
}

// stockRun runs one spike on a fresh service. With a stock, refill_stock
// first fills it at the fill budget; the service is then restarted with
// the spike's budget and left idle one window, so the spike finds the
// budget as after a quiet hour.
func stockRun(ctx context.Context, dbs *databases, tmpl string, logger *slog.Logger, o stockOptions, stock int,
	progress func(string, ...any)) (run *StockRun, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	spike := serviceOptions{rateCount: o.count, rateWindow: o.window, stock: stock}
	run = &StockRun{Stock: stock}

	start := spike
	if stock > 0 {
		start = serviceOptions{rateCount: stockFillCount, rateWindow: stockFillWindow, stock: stock}
	}
	svc, err := startService(ctx, dbURL, logger, start)
	if err != nil {
		return nil, err
	}
	defer svc.close()
	svc.sandbox.SetLatency(o.latency)

	if stock > 0 {
		progress("stock: filling %d keys through refill_stock at %d/%s", stock, stockFillCount, stockFillWindow)
		fillStart := time.Now()
		if err := waitForStock(ctx, svc, stock, o.fillTimeout); err != nil {
			return nil, err
		}
		run.FillS = time.Since(fillStart).Seconds()
		run.FillCalls = len(svc.sandbox.Calls())
		progress("stock: %d keys ready in %.1f s; restarting at %s and idling one window", stock, run.FillS, o.rate)
		if err := svc.restart(ctx, spike); err != nil {
			return nil, err
		}
		if !sleepUntil(ctx, time.Now().Add(o.window+time.Second)) {
			return nil, ctx.Err()
		}
	}

	progress("stock: spike of %d purchases over %s, stock %d, budget %s", o.purchases, o.spread, stock, o.rate)
	timings, early, err := stockSpike(ctx, svc, o)
	if err != nil {
		return nil, err
	}
	if err := stockFigures(ctx, svc, run, timings, o); err != nil {
		return nil, err
	}
	run.EarlyAnswers = early
	return run, nil
}

// waitForStock waits until the stock holds n ready keys.
func waitForStock(ctx context.Context, svc *service, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ready int
		if err := svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM stock_keys WHERE status = 'ready'`).Scan(&ready); err != nil {
			return fmt.Errorf("counting the stock's ready keys: %w", err)
		}
		if ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the stock held %d of %d ready keys after %s of filling; raise -stock-fill-timeout", ready, n, timeout)
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// spikeTiming is one purchase of the spike.
type spikeTiming struct {
	timing
	delivered bool
}

// stockSpike sends o.purchases one-unit purchases evenly over o.spread,
// each on its schedule whatever the answers to the earlier ones (an open
// loop, as buyers arrive), and has each buyer long-poll the order API for
// its key as soon as its webhook's POST returns. It returns the timings in
// the order sent and the order API's answers other than 200.
func stockSpike(ctx context.Context, svc *service, o stockOptions) ([]spikeTiming, int, error) {
	maker, err := newEventMaker("paid", benchItems)
	if err != nil {
		return nil, 0, err
	}
	client := newSender(o.purchases)
	// A long-poll is answered after up to stockLongPoll seconds.
	client.Timeout = stockLongPoll*time.Second + 10*time.Second
	defer client.CloseIdleConnections()
	// As in runLoad, an interrupt stops the schedule, not the requests in
	// flight; the deadline ends the waits.
	first := time.Now()
	reqCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), first.Add(o.deadline))
	defer cancel()
	baseURL := svc.main.URL()
	timings := make([]spikeTiming, o.purchases)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	early := 0
	for i := range timings {
		if !sleepUntil(ctx, first.Add(o.spread*time.Duration(i)/time.Duration(o.purchases))) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &timings[i]
			p := maker.next(time.Now())
			svc.stripe.PutSession(p.session)
			t.sessionID = p.SessionID
			t.sent = time.Now()
			if _, err := post(reqCtx, client, svc.webhookURL(), p.Body, sign(p.Body, benchSecret, t.sent)); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("purchase %d: webhook not accepted: %w", i+1, err))
				mu.Unlock()
				return
			}
			t.answered = time.Since(t.sent)
			n, ok := longPollKey(reqCtx, client, baseURL, p.SessionID)
			t.seen = time.Since(t.sent)
			t.delivered = ok
			mu.Lock()
			early += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	return timings, early, nil
}

// longPollKey asks the order API for the order with ?wait= until it shows
// the key, as a buyer's page does, and reports whether it did before ctx
// ended and how many answers were other than 200.
func longPollKey(ctx context.Context, client *http.Client, baseURL, sessionID string) (early int, ok bool) {
	query := "wait=" + strconv.Itoa(stockLongPoll)
	for ctx.Err() == nil {
		status, order, err := getOrder(ctx, client, baseURL, sessionID, query)
		switch {
		case err != nil:
			// The deadline, or a connection the server dropped: ask again.
		case status != http.StatusOK:
			early++
		case keyVisible(order):
			return early, true
		default:
			continue // the wait ran out while pending: wait again at once
		}
		if !sleepUntil(ctx, time.Now().Add(stockRetry)) {
			break
		}
	}
	return early, false
}

// stockFigures fills in what the spike measured and what the database, the
// service's metrics and Luarmor's call log say about it.
func stockFigures(ctx context.Context, svc *service, run *StockRun, timings []spikeTiming, o stockOptions) error {
	var waits, answers []time.Duration
	var delivered []timing
	first, last := timings[0].sent, timings[0].sent
	for _, t := range timings {
		answers = append(answers, t.answered)
		if t.delivered {
			waits = append(waits, t.seen-t.answered)
			delivered = append(delivered, t.timing)
			last = latest(last, t.sent.Add(t.seen))
		}
	}
	if len(delivered) < len(timings) {
		last = first.Add(o.deadline)
	}
	slices.Sort(waits)
	slices.Sort(answers)
	run.Delivered = len(delivered)
	run.P50Ms, run.P99Ms, run.MaxMs = ms(percentile(waits, 50)), ms(percentile(waits, 99)), ms(percentile(waits, 100))
	run.WebhookP99Ms = ms(percentile(answers, 99))
	run.SpikeS = last.Sub(first).Seconds()

	run.CallsByClass = map[string]int{}
	rows, err := svc.main.Pool.Query(ctx, `SELECT class, count(*) FROM luarmor_calls
		WHERE taken_at >= $1 AND taken_at <= $2 GROUP BY class`, first, last)
	if err != nil {
		return fmt.Errorf("counting the Luarmor calls of the spike: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var class string
		var n int
		if err := rows.Scan(&class, &n); err != nil {
			return fmt.Errorf("counting the Luarmor calls of the spike: %w", err)
		}
		run.CallsByClass[class] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("counting the Luarmor calls of the spike: %w", err)
	}
	for _, c := range svc.sandbox.Calls() {
		if c.Status == http.StatusTooManyRequests && !c.Time.Before(first) && !c.Time.After(last) {
			run.RateLimited++
		}
	}
	if run.Hits, run.Misses, err = stockSales(svc.main.Metrics.Registry()); err != nil {
		return err
	}
	err = svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT user_key FROM order_keys
		WHERE user_key IS NOT NULL GROUP BY user_key HAVING count(*) > 1) d`).Scan(&run.DeliveredTwice)
	if err != nil {
		return fmt.Errorf("checking for keys delivered twice: %w", err)
	}

	steps, err := purchaseSteps(ctx, svc, delivered)
	if err != nil {
		run.StepsError = err.Error()
	}
	for _, s := range steps {
		run.Steps = append(run.Steps, StockStep{Step: s.Name, P50Ms: ms(s.Median), P99Ms: ms(s.P99)})
	}
	return nil
}

// stockSales reads fulfiller_stock_sales_total, summed over prices.
func stockSales(reg *prometheus.Registry) (hits, misses int, err error) {
	families, err := reg.Gather()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the service's metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() != "fulfiller_stock_sales_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "outcome" {
					continue
				}
				switch l.GetValue() {
				case metrics.StockHit:
					hits += int(m.GetCounter().GetValue())
				case metrics.StockMiss:
					misses += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return hits, misses, nil
}

func writeStockText(b *strings.Builder, s *StockReport) {
	if s == nil {
		return
	}
	fmt.Fprintf(b, "\n## Sales spike with and without a key stock\n\n")
	scaled := ""
	if s.WindowS != 60 {
		scaled = fmt.Sprintf(" (the shape of %d/1m, %.3gx faster)", s.Count, 60/s.WindowS)
	}
	fmt.Fprintf(b, "%d one-unit purchases, their signed checkout.session.completed webhooks sent evenly over %s (an open loop), "+
		"the same spike twice: with `stock: %d` on the price, and with none. Budget %s%s, enforced by the Luarmor sandbox too, "+
		"which answers in %s. The stock was filled by the real refill_stock at a budget of %s, then the service was restarted "+
		"with %s and left idle one window before the spike. Each buyer long-polls GET /v1/orders/{id}?wait=%d as soon as its "+
		"webhook's POST returns (an answer other than 200, the order not recorded yet, is asked again %s later); the wait runs "+
		"from the POST returning to the key in the answer. Luarmor calls are the budget's slots (luarmor_calls) taken from the "+
		"first webhook to the last key seen: deliver is the purchase path, maintenance the sold keys' note rewrites, other mostly their checks (renew class), stock the refills.\n\n",
		s.Purchases, seconds(s.SpreadS), s.Purchases, s.Rate, scaled, fmtMs(s.LuarmorLatencyMs), s.FillRate, s.Rate,
		stockLongPoll, stockRetry)
	fmt.Fprintf(b, "| stock | keys seen | p50 | p99 | max | spike window | deliver calls | maintenance | stock calls | other | 429s | hits / misses | delivered twice |\n")
	fmt.Fprintf(b, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range s.Runs {
		other := 0
		for class, n := range r.CallsByClass {
			switch class {
			case budget.ClassDeliver.String(), budget.ClassMaintenance.String(), budget.ClassStock.String():
			default:
				other += n
			}
		}
		sales := "n/a"
		if r.Stock > 0 {
			sales = fmt.Sprintf("%d / %d", r.Hits, r.Misses)
		}
		fmt.Fprintf(b, "| %d | %d of %d | %s | %s | %s | %.1f s | %d | %d | %d | %d | %d | %s | %d |\n",
			r.Stock, r.Delivered, s.Purchases, fmtWait(r.P50Ms), fmtWait(r.P99Ms), fmtWait(r.MaxMs), r.SpikeS,
			r.CallsByClass[budget.ClassDeliver.String()], r.CallsByClass[budget.ClassMaintenance.String()],
			r.CallsByClass[budget.ClassStock.String()], other, r.RateLimited, sales, r.DeliveredTwice)
	}
	fmt.Fprintf(b, "\n")
	for _, r := range s.Runs {
		if r.Stock > 0 {
			fmt.Fprintf(b, "Fill: %d keys in %.1f s (%d Luarmor calls, start-up check included).\n", r.Stock, r.FillS, r.FillCalls)
		}
		if r.Delivered < s.Purchases {
			fmt.Fprintf(b, "Stock %d: only %d of %d orders showed their key within %s of the first webhook; the percentiles cover those.\n",
				r.Stock, r.Delivered, s.Purchases, seconds(s.DeadlineS))
		}
	}
	fmt.Fprintf(b, "\nWhere the time goes, p50 / p99 after the webhook was sent (webhook answered in p99 %s / %s):\n\n",
		fmtMs(s.Runs[0].WebhookP99Ms), fmtMs(s.Runs[len(s.Runs)-1].WebhookP99Ms))
	fmt.Fprintf(b, "| step |")
	for _, r := range s.Runs {
		fmt.Fprintf(b, " stock %d |", r.Stock)
	}
	fmt.Fprintf(b, "\n|---|")
	for range s.Runs {
		fmt.Fprintf(b, "--:|")
	}
	fmt.Fprintf(b, "\n")
	for i, st := range s.Runs[0].Steps {
		fmt.Fprintf(b, "| %s |", st.Step)
		for _, r := range s.Runs {
			if i < len(r.Steps) {
				fmt.Fprintf(b, " %s / %s |", fmtWait(r.Steps[i].P50Ms), fmtWait(r.Steps[i].P99Ms))
			} else {
				fmt.Fprintf(b, " n/a |")
			}
		}
		fmt.Fprintf(b, "\n")
	}
	for _, r := range s.Runs {
		if r.StepsError != "" {
			fmt.Fprintf(b, "\nStock %d: no breakdown: %s.\n", r.Stock, r.StepsError)
		}
	}
	with := s.Runs[0]
	fmt.Fprintf(b, "\nEarly order API answers (order not recorded yet): %d with stock, %d without.\n",
		with.EarlyAnswers, s.Runs[len(s.Runs)-1].EarlyAnswers)
	fmt.Fprintf(b, "\n**Goal with stock: p99 < %s on this machine, zero Luarmor calls on the purchase path: %s** "+
		"(p99 %s, %d deliver-class calls, %d misses, %d of %d keys seen, %d delivered twice).\n",
		fmtMs(s.GoalMs), metWord(s.GoalMet), fmtWait(with.P99Ms), with.CallsByClass[budget.ClassDeliver.String()],
		with.Misses, with.Delivered, s.Purchases, with.DeliveredTwice)
}
