package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi/stripefake"
)

// fairnessPoll is how often the order API is asked for a small order's
// key: waits last seconds, and a finer poll would only take CPU from the
// service being measured.
const fairnessPoll = 10 * time.Millisecond

// fairnessOptions shapes the fairness scenario: one big order, and small
// one-unit orders placed behind it while it drains through the budget.
type fairnessOptions struct {
	rate    string // the budget as given, COUNT/DURATION
	count   int
	window  time.Duration
	units   int           // the big order's units (and MAX_UNITS_PER_ORDER)
	small   int           // one-unit orders to place
	every   time.Duration // between small orders once the first window is spent
	latency time.Duration // Luarmor's answer time
	poll    time.Duration // order API polling interval
}

// FairnessReport is the fairness scenario's outcome.
type FairnessReport struct {
	Rate             string  `json:"rate"`
	Count            int     `json:"count"`
	WindowS          float64 `json:"window_s"`
	LuarmorLatencyMs float64 `json:"luarmor_latency_ms"`
	BigUnits         int     `json:"big_units"`
	// Small is one row per one-unit order, in the order placed.
	Small []SmallOrderRow `json:"small_orders"`
	// MeasuredS runs from the big order's webhook to the end of the whole
	// budget window in which the last small order got its key: the budget
	// is spent in bursts, so only whole windows give a fair rate.
	MeasuredS float64 `json:"measured_s"`
	Windows   int     `json:"windows"`
	// BigDelivered and AllDelivered are the keys (of the big order; of
	// every order) delivered in the measured time; the budget allows at
	// most Windows*Count calls.
	BigDelivered     int     `json:"big_delivered"`
	AllDelivered     int     `json:"all_delivered"`
	BigKeysPerMinute float64 `json:"big_keys_per_min"`
	BudgetPerMinute  float64 `json:"budget_per_min"`
	// Luarmor's view of the whole run.
	LuarmorCalls       int `json:"luarmor_calls"`
	LuarmorCreates     int `json:"luarmor_creates"`
	RateLimited        int `json:"rate_limited"`
	MostInAnyWindow    int `json:"most_in_any_window"`
	LuarmorKeysCreated int `json:"luarmor_keys_created"`
	KeysMintedTwice    int `json:"keys_minted_twice"`
}

// SmallOrderRow is one one-unit order placed behind the big one.
type SmallOrderRow struct {
	Moment string `json:"moment"`
	// PlacedAtS is when its webhook was sent, counted from the big order's.
	PlacedAtS float64 `json:"placed_at_s"`
	// BigDeliveredBefore is how many of the big order's keys were
	// delivered when it was placed; BigDeliveredDuring how many more were
	// delivered before its own key (counting calls already under way when
	// it was placed); BigCreatesFirst how many of the big order's creates
	// reached Luarmor after its webhook and before its own create.
	BigDeliveredBefore int `json:"big_delivered_before"`
	BigDeliveredDuring int `json:"big_delivered_during"`
	BigCreatesFirst    int `json:"big_creates_first"`
	// WaitMs runs from its webhook sent to its key seen in the order API.
	WaitMs float64 `json:"wait_ms"`
}

// smallOrder is one placed one-unit order while it waits.
type smallOrder struct {
	moment string
	p      purchase
	sent   time.Time
	wait   time.Duration
}

// fairnessRun places a big order on a fresh service throttled to the
// budget, then one-unit orders behind it: right after its webhook, once the
// budget's first window is spent, and from then on every o.every, each
// waiting for its key on its own. It stops at the end of the budget window
// in which the last small order got its key; the rest of the big order is
// left undelivered.
func fairnessRun(ctx context.Context, dbs *databases, tmpl string, client *http.Client, logger *slog.Logger,
	o fairnessOptions, progress func(string, ...any)) (rep *FairnessReport, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, err := startService(ctx, dbURL, logger, serviceOptions{rateCount: o.count, rateWindow: o.window, maxUnits: o.units})
	if err != nil {
		return nil, err
	}
	defer svc.close()
	svc.sandbox.SetLatency(o.latency)

	bigMaker, err := newEventMaker("paid", []stripefake.Item{{PriceID: benchPrice, Quantity: int64(o.units)}})
	if err != nil {
		return nil, err
	}
	smallMaker, err := newEventMaker("paid", benchItems)
	if err != nil {
		return nil, err
	}
	// As in runPurchases, an interrupt is noticed between requests.
	reqCtx := context.WithoutCancel(ctx)
	big := bigMaker.next(time.Now())
	svc.stripe.PutSession(big.session)
	start := time.Now()
	if _, err := post(reqCtx, client, svc.webhookURL(), big.Body, sign(big.Body, benchSecret, start)); err != nil {
		return nil, fmt.Errorf("the %d-unit order's webhook was not accepted: %w", o.units, err)
	}

	// Each small order waits for its key on its own, so one's wait never
	// delays the placing of the next.
	lo := latencyOptions{poll: o.poll, timeout: 2*o.window + 30*time.Second}
	placed := make([]*smallOrder, 0, o.small)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	place := func(moment string) error {
		s := &smallOrder{moment: moment, p: smallMaker.next(time.Now())}
		svc.stripe.PutSession(s.p.session)
		s.sent = time.Now()
		if _, err := post(reqCtx, client, svc.webhookURL(), s.p.Body, sign(s.p.Body, benchSecret, s.sent)); err != nil {
			return fmt.Errorf("small order %d: webhook not accepted: %w", len(placed)+1, err)
		}
		n := len(placed) + 1
		placed = append(placed, s)
		progress("fairness: small order %d of %d placed at %.1f s (%s)", n, o.small, s.sent.Sub(start).Seconds(), moment)
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait, err := waitForKey(ctx, reqCtx, client, svc.main.URL(), s.p.SessionID, s.sent, lo)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("small order %d: %w", n, err))
				return
			}
			s.wait = wait
		}()
		return nil
	}
	placeAll := func() error {
		if err := place("right after the big order's webhook"); err != nil {
			return err
		}
		if o.small == 1 {
			return nil
		}
		if err := waitForCalls(ctx, svc, o.count, big.SessionID, o.units); err != nil {
			return err
		}
		spent := time.Now()
		if err := place(fmt.Sprintf("once the first window's %d calls are spent", o.count)); err != nil {
			return err
		}
		for i := 1; i <= o.small-2; i++ {
			if !sleepUntil(ctx, spent.Add(time.Duration(i)*o.every)) {
				return ctx.Err()
			}
			if err := place(fmt.Sprintf("%g s after that", (time.Duration(i) * o.every).Seconds())); err != nil {
				return err
			}
		}
		return nil
	}
	placeErr := placeAll()
	wg.Wait()
	if err := errors.Join(append(errs, placeErr)...); err != nil {
		return nil, err
	}
	lastKey := start
	for _, s := range placed {
		lastKey = latest(lastKey, s.sent.Add(s.wait))
	}
	rep = &FairnessReport{Rate: o.rate, Count: o.count, WindowS: o.window.Seconds(), LuarmorLatencyMs: ms(o.latency), BigUnits: o.units}
	rep.Windows = int((lastKey.Sub(start) + o.window - 1) / o.window)
	end := start.Add(time.Duration(rep.Windows) * o.window)
	progress("fairness: every small order has its key; measuring the big order until %.0f s, the end of budget window %d",
		end.Sub(start).Seconds(), rep.Windows)
	if !sleepUntil(ctx, end) {
		return nil, ctx.Err()
	}
	calls := svc.sandbox.Calls()
	if err := fairnessFigures(ctx, svc, rep, big.SessionID, placed, start, end, o.window, calls); err != nil {
		return nil, err
	}
	return rep, nil
}

// fairnessFigures fills in what the database and Luarmor's call log say
// about the run. A key is delivered in the transaction that stores it, so
// its delivered_at (the database's clock, this machine's) places it against
// the webhooks without the order API poll's lag.
func fairnessFigures(ctx context.Context, svc *service, rep *FairnessReport, bigID string, placed []*smallOrder,
	start, end time.Time, window time.Duration, calls []sandbox.Call) error {
	for _, s := range placed {
		row := SmallOrderRow{Moment: s.moment, PlacedAtS: s.sent.Sub(start).Seconds(), WaitMs: ms(s.wait),
			BigCreatesFirst: createsAhead(calls, s.sent, bigID, s.p.SessionID)}
		err := svc.main.Pool.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE delivered_at < $2),
			       count(*) FILTER (WHERE delivered_at >= $2
			           AND delivered_at < (SELECT delivered_at FROM order_keys WHERE checkout_session_id = $3))
			FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL`,
			bigID, s.sent, s.p.SessionID).Scan(&row.BigDeliveredBefore, &row.BigDeliveredDuring)
		if err != nil {
			return fmt.Errorf("counting the keys delivered around a small order: %w", err)
		}
		rep.Small = append(rep.Small, row)
	}

	rep.MeasuredS = end.Sub(start).Seconds()
	err := svc.main.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE checkout_session_id = $1), count(*)
		FROM order_keys WHERE user_key IS NOT NULL AND delivered_at < $2`, bigID, end).
		Scan(&rep.BigDelivered, &rep.AllDelivered)
	if err != nil {
		return fmt.Errorf("counting the delivered keys: %w", err)
	}
	rep.BigKeysPerMinute = float64(rep.BigDelivered) / end.Sub(start).Minutes()
	rep.BudgetPerMinute = float64(rep.Count) / window.Minutes()

	times := make([]time.Time, 0, len(calls))
	for _, c := range calls {
		if c.Status == http.StatusTooManyRequests {
			rep.RateLimited++
		}
		if isCreate(c) {
			rep.LuarmorCreates++
		}
		times = append(times, c.Time)
	}
	rep.LuarmorCalls = len(calls)
	rep.MostInAnyWindow = mostInWindow(times, window)
	rep.LuarmorKeysCreated = len(svc.sandbox.Users(benchProject))
	err = svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT user_key FROM order_keys
		WHERE user_key IS NOT NULL GROUP BY user_key HAVING count(*) > 1) d`).Scan(&rep.KeysMintedTwice)
	if err != nil {
		return fmt.Errorf("checking for keys minted twice: %w", err)
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// isCreate tells a key creation in Luarmor's call log.
func isCreate(c sandbox.Call) bool {
	return c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/users")
}

// createsAhead counts the creates of bigID's keys that reached Luarmor from
// since until smallID's first create. A key's note starts with its Checkout
// Session ID (jobs.Note), which is how the log tells the orders apart.
func createsAhead(calls []sandbox.Call, since time.Time, bigID, smallID string) int {
	var smallAt time.Time
	for _, c := range calls {
		if isCreate(c) && bytes.Contains(c.Body, []byte(smallID)) {
			smallAt = c.Time
			break
		}
	}
	n := 0
	for _, c := range calls {
		if isCreate(c) && !c.Time.Before(since) && c.Time.Before(smallAt) && bytes.Contains(c.Body, []byte(bigID)) {
			n++
		}
	}
	return n
}

// waitForCalls waits until Luarmor has seen n calls, or the big order has
// all its units and there may be nothing left to call for.
func waitForCalls(ctx context.Context, svc *service, n int, bigID string, units int) error {
	for len(svc.sandbox.Calls()) < n {
		var delivered int
		err := svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL`,
			bigID).Scan(&delivered)
		if err != nil {
			return fmt.Errorf("counting the big order's delivered keys: %w", err)
		}
		if delivered == units {
			return nil
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return nil
}

func writeFairnessText(b *strings.Builder, f *FairnessReport) {
	if f == nil {
		return
	}
	fmt.Fprintf(b, "\n## Fairness between orders\n\n")
	fmt.Fprintf(b, "A %d-unit order bought through its signed webhook, then one-unit orders placed behind it while it drains, "+
		"each timed from its webhook sent to its key seen in GET /v1/orders/{id}. The budget is %s, enforced by the Luarmor sandbox too "+
		"(sliding window), which answers in %s. While a small order waited: the big order's keys delivered (counting calls already "+
		"under way when it was placed) and the big order's creates that reached Luarmor before its own.\n\n",
		f.BigUnits, f.Rate, fmtMs(f.LuarmorLatencyMs))
	fmt.Fprintf(b, "| # | placed | at | big keys delivered by then | wait for its key | big keys delivered meanwhile | big creates sent before its own |\n")
	fmt.Fprintf(b, "|--:|---|--:|--:|--:|--:|--:|\n")
	for i, r := range f.Small {
		fmt.Fprintf(b, "| %d | %s | %.1f s | %d of %d | %s | %d | %d |\n",
			i+1, r.Moment, r.PlacedAtS, r.BigDeliveredBefore, f.BigUnits, fmtWait(r.WaitMs), r.BigDeliveredDuring, r.BigCreatesFirst)
	}
	fmt.Fprintf(b, "\nThe big order over the %.0f s measured (%d whole budget windows, up to the end of the one in which the last small order got its key): "+
		"%d keys, **%.1f keys/min**; every order together %d keys, against the %d calls the budget allows (%.0f/min).",
		f.MeasuredS, f.Windows, f.BigDelivered, f.BigKeysPerMinute, f.AllDelivered, f.Windows*f.Count, f.BudgetPerMinute)
	if f.BigDelivered == f.BigUnits {
		fmt.Fprintf(b, " The big order was complete before the end, so its rate is below what the budget allows.")
	}
	fmt.Fprintf(b, "\nLuarmor saw %d calls (%d creates), %d answered 429, at most %d in any %s; %d keys in Luarmor, %d minted twice.\n",
		f.LuarmorCalls, f.LuarmorCreates, f.RateLimited, f.MostInAnyWindow, seconds(f.WindowS), f.LuarmorKeysCreated, f.KeysMintedTwice)
}

// fmtWait prints a wait in milliseconds below ten seconds, else in seconds.
func fmtWait(msec float64) string {
	if msec < 10_000 {
		return fmtMs(msec)
	}
	return fmt.Sprintf("%.1f s", msec/1000)
}
