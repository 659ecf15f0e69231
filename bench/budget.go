package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// budgetOptions is one drain of a backlog of key creations through the
// fleet-wide Luarmor budget.
type budgetOptions struct {
	keys     int
	replicas int
	count    int
	window   time.Duration
	latency  time.Duration // Luarmor's answer time
}

// BudgetRow is the outcome of one drain.
type BudgetRow struct {
	Keys             int     `json:"keys"`
	Replicas         int     `json:"replicas"`
	Count            int     `json:"count"`
	WindowS          float64 `json:"window_s"`
	LatencyMs        float64 `json:"luarmor_latency_ms"`
	Seconds          float64 `json:"seconds"`
	Calls            int     `json:"calls"`
	RateLimited      int     `json:"rate_limited"`
	CallsPerKey      float64 `json:"calls_per_key"`
	Utilization      float64 `json:"utilization"`     // mean calls per steady window / count
	UtilizationMin   float64 `json:"utilization_min"` // the emptiest steady window
	SteadyWindows    int     `json:"steady_windows"`
	MostInAnyWindow  int     `json:"most_in_any_window"` // Luarmor's count at its worst moment
	BudgetQueries    int64   `json:"budget_queries"`
	QueriesPerCall   float64 `json:"budget_queries_per_call"`
	KeysDeliveredTwo int     `json:"keys_minted_twice"`
}

// budgetDrain queues o.keys paid one-unit orders, then starts o.replicas
// replicas (each its own pool, budget and River client, as separate
// processes would have) against one database and a sandbox that enforces
// the same budget, and measures the drain from the sandbox's call log.
func budgetDrain(ctx context.Context, dbs *databases, tmpl string, o budgetOptions) (row BudgetRow, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return row, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()

	sb := sandbox.New(sandbox.Options{APIKey: benchLuarmorKey, Limit: o.count, Window: o.window})
	sb.SetLatency(o.latency)
	sbURL, closeSB, err := serveLoopback(sb)
	if err != nil {
		return row, err
	}
	defer closeSB()
	sf := stripefake.New(benchStripeKey)
	sfURL, closeSF, err := serveLoopback(sf)
	if err != nil {
		return row, err
	}
	defer closeSF()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	cat := &catalog.Catalog{Prices: map[string]catalog.Product{benchPrice: {ProjectID: benchProject, KeyDays: 30}}}
	var budgets []*budget.Budget
	var clients []*river.Client[pgx.Tx]
	var pool0 *pgxpool.Pool
	for i := 0; i < o.replicas; i++ {
		pool, err := pgxpool.New(runCtx, dbURL)
		if err != nil {
			return row, fmt.Errorf("opening replica %d's pool: %w", i, err)
		}
		defer pool.Close()
		if i == 0 {
			pool0 = pool
		}
		b := budget.New(pool, budget.Config{Count: o.count, Window: o.window, Replica: fmt.Sprintf("replica-%d", i), Logger: quiet})
		go b.Run(runCtx)
		budgets = append(budgets, b)
		client, err := jobs.NewClient(jobs.Deps{
			Pool:            pool,
			Stripe:          stripeapi.New(benchStripeKey, sfURL, nil),
			Luarmor:         &budget.Client{Budget: b, Luarmor: luarmor.NewClient(benchLuarmorKey, luarmor.WithBaseURL(sbURL))},
			Catalog:         cat,
			Logger:          quiet,
			RateLimitWindow: o.window,
		}, jobs.Config{})
		if err != nil {
			return row, err
		}
		clients = append(clients, client)
	}

	// The backlog: paid orders whose fulfilment is queued, as webhooks
	// during a sale would leave them.
	for i := 0; i < o.keys; i++ {
		id := fmt.Sprintf("cs_test_budget%06d", i)
		sf.PutSession(stripefake.Session{ID: id, Mode: "payment", PaymentStatus: "paid", Status: "complete",
			CustomerEmail: "buyer@example.com", PaymentIntent: fmt.Sprintf("pi_budget%06d", i),
			Items: []stripefake.Item{{PriceID: benchPrice, Quantity: 1}}})
		err := pgx.BeginFunc(runCtx, pool0, func(tx pgx.Tx) error {
			_, err := jobs.RecordSession(runCtx, tx, clients[0], order.SessionDetails{CheckoutSessionID: id, PaymentStatus: "paid", SessionStatus: "complete"})
			return err
		})
		if err != nil {
			return row, fmt.Errorf("queueing order %d: %w", i, err)
		}
	}

	start := time.Now()
	for i, c := range clients {
		if err := c.Start(runCtx); err != nil {
			return row, fmt.Errorf("starting replica %d: %w", i, err)
		}
		defer func() {
			stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer stopCancel()
			_ = c.Stop(stopCtx)
		}()
	}
	deadline := start.Add(time.Duration(o.keys/o.count+3) * o.window * 2)
	for {
		var delivered int
		if err := pool0.QueryRow(ctx, `SELECT count(*) FROM order_keys WHERE user_key IS NOT NULL`).Scan(&delivered); err != nil {
			return row, fmt.Errorf("counting delivered keys: %w", err)
		}
		if delivered == o.keys {
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("only %d of %d keys delivered after %s", delivered, o.keys, time.Since(start).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)

	calls := sb.Calls()
	row = BudgetRow{Keys: o.keys, Replicas: o.replicas, Count: o.count, WindowS: o.window.Seconds(),
		LatencyMs: ms(o.latency), Seconds: took.Seconds(), Calls: len(calls)}
	times := make([]time.Time, 0, len(calls))
	for _, c := range calls {
		if c.Status == http.StatusTooManyRequests {
			row.RateLimited++
		}
		times = append(times, c.Time)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	row.CallsPerKey = float64(len(calls)) / float64(o.keys)
	row.MostInAnyWindow = mostInWindow(times, o.window)
	row.Utilization, row.UtilizationMin, row.SteadyWindows = utilization(times, o.window, o.count)
	for _, b := range budgets {
		row.BudgetQueries += b.Stats().Queries
	}
	row.QueriesPerCall = float64(row.BudgetQueries) / float64(len(calls))
	err = pool0.QueryRow(ctx, `SELECT count(*) FROM (SELECT user_key FROM order_keys GROUP BY user_key HAVING count(*) > 1) d`).Scan(&row.KeysDeliveredTwo)
	if err != nil {
		return row, fmt.Errorf("checking for duplicate keys: %w", err)
	}
	if n := len(sb.Users(benchProject)); n != o.keys {
		return row, fmt.Errorf("luarmor holds %d keys for %d orders", n, o.keys)
	}
	return row, nil
}

// mostInWindow is the most calls Luarmor saw in any window (t-window, t].
func mostInWindow(times []time.Time, window time.Duration) int {
	most, lo := 0, 0
	for hi := range times {
		for !times[lo].After(times[hi].Add(-window)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// utilization is the mean (and the lowest) share of the budget used per
// window over the steady part of the drain: whole windows from one window
// after the first call to one window before the last, when the backlog
// keeps the budget contended and neither start-up nor the tail count.
func utilization(times []time.Time, window time.Duration, count int) (mean, lowest float64, windows int) {
	if len(times) == 0 {
		return 0, 0, 0
	}
	from, to := times[0].Add(window), times[len(times)-1].Add(-window)
	lowest = 1e9
	var sum float64
	i := 0
	for s := from; !s.Add(window).After(to); s = s.Add(window) {
		for i < len(times) && times[i].Before(s) {
			i++
		}
		n := 0
		for j := i; j < len(times) && times[j].Before(s.Add(window)); j++ {
			n++
		}
		u := float64(n) / float64(count)
		sum += u
		lowest = min(lowest, u)
		windows++
	}
	if windows == 0 {
		return 0, 0, 0
	}
	return sum / float64(windows), lowest, windows
}

func writeBudgetText(b *strings.Builder, rows []BudgetRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## One Luarmor budget for the fleet\n\n")
	fmt.Fprintf(b, "A backlog of key creations (paid one-unit orders, fulfilment queued) drained by %d replicas, each with its own pool, budget and River client, "+
		"against one database and a Luarmor sandbox enforcing the same budget (%d per %s, sliding) and answering in %s. "+
		"Utilization is calls per window / COUNT over the whole windows from one window after the first call to one window before the last.\n\n",
		rows[0].Replicas, rows[0].Count, seconds(rows[0].WindowS), fmtMs(rows[0].LatencyMs))
	fmt.Fprintf(b, "| keys | drain | Luarmor calls | 429s | calls/key | utilization (lowest window) | most in any window | budget queries/call | keys minted twice |\n")
	fmt.Fprintf(b, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %d | %.1f s | %d | %d | %.3f | %.3f (%.2f) over %d | %d of %d | %.2f | %d |\n",
			r.Keys, r.Seconds, r.Calls, r.RateLimited, r.CallsPerKey, r.Utilization, r.UtilizationMin, r.SteadyWindows,
			r.MostInAnyWindow, r.Count, r.QueriesPerCall, r.KeysDeliveredTwo)
	}
	fmt.Fprintf(b, "\nGoals: utilization ≥ 0.95, zero 429s, at most 1.02 calls per key. Budget queries/call counts every PostgreSQL statement the "+
		"budget spent (slot requests, finishes, demand updates) per Luarmor call; compare the rows to see it does not grow with the backlog.\n")
}
