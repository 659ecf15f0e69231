// Package budget spends Luarmor's request budget (about 60 requests a
// minute per API key) for the whole fleet, however many replicas run.
//
// Every request takes a slot recorded in PostgreSQL before it is sent, by
// the SQL function luarmor_take_slot: migrations/0002_luarmor_budget.sql
// holds the rule that makes the count exact, and the function as it runs
// now is the last definition of it, in 0016_stock_never_paces.sql (after
// 0006_budget_pacing.sql added pacing). Within a process, waiting requests queue in memory by class, and
// one acquirer loop asks PostgreSQL for slots on their behalf: the database
// work of waiting grows with the number of replicas, not with the backlog.
// A replica with a more urgent class waiting is published in PostgreSQL so
// that no other replica takes a slot before it.
package budget

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/metrics"
	"fulfiller/internal/postgres"
)

// Class orders Luarmor requests by urgency; lower is more urgent.
type Class int

const (
	ClassRevoke      Class = iota // blacklists and deletions after a dispute or refund
	ClassDeliver                  // keys customers have paid for, and the look-ups that keep them exactly once
	ClassRenew                    // subscription renewals
	ClassMaintenance              // reconciliation look-ups, note updates, anything else
	// ClassStock makes keys for the stock (internal/jobs RefillStock). It
	// only takes spare budget (migrations/0015_key_stock.sql): never while
	// a more urgent request waits anywhere in the fleet, and only while
	// fewer than a quarter of the window's slots are busy, where any other
	// request is granted at once. It publishes no demand, so it never makes
	// another request wait or pace.
	ClassStock
	numClasses
)

func (c Class) String() string {
	switch c {
	case ClassRevoke:
		return "revoke"
	case ClassDeliver:
		return "deliver"
	case ClassRenew:
		return "renew"
	case ClassMaintenance:
		return "maintenance"
	case ClassStock:
		return "stock"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

type classKey struct{}

// WithClass marks the Luarmor requests made with ctx as class c.
func WithClass(ctx context.Context, c Class) context.Context {
	return context.WithValue(ctx, classKey{}, c)
}

// ClassOf returns the class of ctx; maintenance when unmarked.
func ClassOf(ctx context.Context) Class {
	if c, ok := ctx.Value(classKey{}).(Class); ok && c >= 0 && c < numClasses {
		return c
	}
	return ClassMaintenance
}

// DefaultCount and DefaultWindow are the budget without LUARMOR_RATE_LIMIT:
// Luarmor's 60 requests a minute.
const (
	DefaultCount  = 60
	DefaultWindow = time.Minute
)

// Config sets the budget.
type Config struct {
	Count  int           // requests allowed per Window (LUARMOR_RATE_LIMIT)
	Window time.Duration // sliding window
	// MaxCall is the longest a request can take (the client's timeout plus
	// a margin); a request whose end was never recorded holds its slot
	// that long.
	MaxCall time.Duration
	// MaxWait bounds one Acquire; past it Acquire returns a *WaitError so
	// the job can be snoozed instead of holding a worker.
	MaxWait time.Duration
	Replica string // this process's name in the shared tables
	Logger  *slog.Logger
	// Metrics counts the slots granted; nil counts nothing.
	Metrics *metrics.Metrics
}

// Budget is one process's view of the fleet-wide budget. Start Run, then
// Acquire a slot before each Luarmor request and finish it with Done.
type Budget struct {
	pool *pgxpool.Pool
	cfg  Config

	mu      sync.Mutex
	waiting waiterHeap
	seq     uint64
	kick    chan struct{}

	queries     atomic.Int64 // PostgreSQL statements spent on budgeting
	granted     atomic.Int64
	rateLimited atomic.Int64
	unavailable logging.Sampled
}

// New returns a budget; it does nothing until Run is started.
func New(pool *pgxpool.Pool, cfg Config) *Budget {
	if cfg.Count <= 0 {
		cfg.Count = DefaultCount
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxCall <= 0 {
		cfg.MaxCall = luarmor.DefaultTimeout + 5*time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Replica == "" {
		cfg.Replica = "replica"
	}
	cfg.Metrics.BudgetLimit(cfg.Count, cfg.Window)
	return &Budget{pool: pool, cfg: cfg, kick: make(chan struct{}, 1)}
}

// Slot is one granted request.
type Slot struct {
	b  *Budget
	id int64
}

// WaitError says no slot was granted: none freed within MaxWait, or the
// caller's context ended (a shutdown) while waiting. Nothing was sent.
type WaitError struct {
	RetryAfter time.Duration
	Err        error // the context's error, when it ended the wait
}

func (e *WaitError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("luarmor budget: stopped waiting for a request slot: %v", e.Err)
	}
	return fmt.Sprintf("luarmor budget: no request slot free; retry in %s", e.RetryAfter)
}

func (e *WaitError) Unwrap() error { return e.Err }

type grant struct {
	id  int64
	err error
}

type waiter struct {
	class Class
	seq   uint64
	index int
	done  chan grant // buffered: the acquirer never blocks on it
}

// Acquire waits for a slot for a request of ctx's class. It never polls
// PostgreSQL itself.
func (b *Budget) Acquire(ctx context.Context) (*Slot, error) {
	w := &waiter{class: ClassOf(ctx), done: make(chan grant, 1)}
	b.mu.Lock()
	b.seq++
	w.seq = b.seq
	heap.Push(&b.waiting, w)
	b.mu.Unlock()
	b.wake()

	timer := time.NewTimer(b.cfg.MaxWait)
	defer timer.Stop()
	select {
	case g := <-w.done:
		if g.err != nil {
			return nil, g.err
		}
		return &Slot{b: b, id: g.id}, nil
	case <-ctx.Done():
		b.abandon(w)
		return nil, &WaitError{Err: ctx.Err()}
	case <-timer.C:
		b.abandon(w)
		return nil, &WaitError{RetryAfter: b.cfg.Window / 4}
	}
}

// abandon removes a waiter that gave up; a slot granted to it in the
// meantime is given back, since no request was sent with it.
func (b *Budget) abandon(w *waiter) {
	b.mu.Lock()
	if w.index >= 0 {
		heap.Remove(&b.waiting, w.index)
	}
	b.mu.Unlock()
	select {
	case g := <-w.done:
		if g.err == nil {
			b.giveBack(g.id)
		}
	default:
	}
}

func (b *Budget) giveBack(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.queries.Add(1)
	if _, err := b.pool.Exec(ctx, `DELETE FROM luarmor_calls WHERE id = $1`, id); err != nil {
		b.cfg.Logger.Warn("luarmor budget: returning an unused slot failed; it frees itself later", "error", err)
	}
}

func (b *Budget) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Done records the end of the request sent with the slot. A 429 pauses the
// whole fleet for a window: someone else spent the budget, or Luarmor's
// window is stricter than configured.
func (s *Slot) Done(ctx context.Context, callErr error) {
	outcome := "ok"
	var rl *luarmor.RateLimitError
	limited := errors.As(callErr, &rl)
	switch {
	case limited:
		outcome = postgres.OutcomeRateLimited
		s.b.rateLimited.Add(1)
	case callErr != nil:
		outcome = "error"
	}
	// Record the end even if the job's context is already done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.b.queries.Add(1)
	_, err := s.b.pool.Exec(ctx, `
		WITH finished AS (
			UPDATE luarmor_calls SET finished_at = clock_timestamp(), outcome = $2 WHERE id = $1
		)
		UPDATE luarmor_budget SET paused_until = GREATEST(paused_until, clock_timestamp() + $3::interval),
		                          rate_limits_received = rate_limits_received + 1
		WHERE id = 1 AND $4::boolean`,
		s.id, outcome, s.b.cfg.Window, limited)
	if err != nil {
		s.b.cfg.Logger.Warn("luarmor budget: recording a finished request failed; its slot frees after the longest call time", "error", err)
	}
	if limited {
		s.b.cfg.Logger.Warn("luarmor answered 429; every replica pauses Luarmor requests for a window", "window", s.b.cfg.Window)
	}
}

// Run hands out slots to this process's waiting requests until ctx ends.
func (b *Budget) Run(ctx context.Context) {
	statsEvery := max(b.cfg.Window, 10*time.Second)
	stats := time.NewTicker(statsEvery)
	defer stats.Stop()
	published := false // whether luarmor_demand holds a row of ours
	for {
		b.mu.Lock()
		top, next := b.waiting.peek2()
		b.mu.Unlock()

		if top == nil {
			if published {
				b.clearDemand(ctx)
				published = false
			}
			select {
			case <-ctx.Done():
				b.failWaiters(ctx.Err())
				return
			case <-b.kick:
			case <-stats.C:
				b.logStats(ctx)
			}
			continue
		}

		id, retry, err := b.takeSlot(ctx, top.class, next)
		if err != nil {
			if ctx.Err() != nil {
				b.failWaiters(ctx.Err())
				return
			}
			if postgres.IsUnavailable(err) {
				// Retried every second through a database outage.
				b.unavailable.Log(ctx, b.cfg.Logger, slog.LevelWarn, "luarmor budget: database unreachable; requests wait for it", "error", err)
			} else {
				b.cfg.Logger.Error("luarmor budget: taking a slot failed; retrying", "error", err)
			}
			retry = time.Second
		}
		if id != 0 {
			published = next >= 0
			b.mu.Lock()
			if top.index >= 0 {
				heap.Remove(&b.waiting, top.index)
				top.done <- grant{id: id}
				b.granted.Add(1)
				b.cfg.Metrics.BudgetSlotGranted(top.class.String())
				b.mu.Unlock()
			} else {
				b.mu.Unlock()
				b.giveBack(id) // the waiter gave up meanwhile
			}
			continue
		}
		published = true

		// Sleep until a slot may be free; wake early only for a more
		// urgent local request, which must publish its demand at once.
		timer := time.NewTimer(retry)
	sleep:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				b.failWaiters(ctx.Err())
				return
			case <-timer.C:
				break sleep
			case <-stats.C:
				b.logStats(ctx)
			case <-b.kick:
				b.mu.Lock()
				now, _ := b.waiting.peek2()
				b.mu.Unlock()
				if now != nil && now.class < top.class {
					timer.Stop()
					break sleep
				}
			}
		}
	}
}

// takeSlot asks PostgreSQL for a slot. next is the class of the request
// after this one, or -1.
func (b *Budget) takeSlot(ctx context.Context, c Class, next Class) (int64, time.Duration, error) {
	if c == ClassStock {
		return b.takeSpareSlot(ctx)
	}
	var nextRank *int
	// A stock request waiting behind this one is not demand: it must not
	// make this replica's requests paced.
	if next >= 0 && next != ClassStock {
		n := int(next)
		nextRank = &n
	}
	var id *int64
	var retryMS *float64
	b.queries.Add(1)
	// luarmor_take_slot: defined last in migrations/0016_stock_never_paces.sql.
	err := b.pool.QueryRow(ctx, `SELECT call_id, retry_after_ms FROM luarmor_take_slot($1, $2, $3, $4, $5, $6, $7)`,
		b.cfg.Replica, int(c), nextRank, c.String(), b.cfg.Count, b.cfg.Window, b.cfg.MaxCall).Scan(&id, &retryMS)
	if err != nil {
		return 0, 0, fmt.Errorf("luarmor budget: %w", err)
	}
	if id != nil {
		return *id, 0, nil
	}
	retry := time.Duration(*retryMS * float64(time.Millisecond))
	// A millisecond of slack so the slot has surely freed when we ask.
	return 0, max(retry, 0) + time.Millisecond, nil
}

// takeSpareSlot asks PostgreSQL for a slot of spare budget for a stock
// request; the caller has nothing more urgent waiting.
func (b *Budget) takeSpareSlot(ctx context.Context) (int64, time.Duration, error) {
	var id *int64
	var retryMS *float64
	b.queries.Add(1)
	err := b.pool.QueryRow(ctx, `SELECT call_id, retry_after_ms FROM luarmor_take_spare_slot($1, $2, $3, $4, $5)`,
		b.cfg.Replica, ClassStock.String(), b.cfg.Count, b.cfg.Window, b.cfg.MaxCall).Scan(&id, &retryMS)
	if err != nil {
		return 0, 0, fmt.Errorf("luarmor budget: %w", err)
	}
	if id != nil {
		return *id, 0, nil
	}
	// Stock is never in a hurry: at a budget of thousands a second, WINDOW/
	// COUNT would have a waiting stock request ask PostgreSQL (under the
	// budget's one lock) thousands of times a second.
	return 0, max(time.Duration(*retryMS*float64(time.Millisecond)), minSpareRetry), nil
}

// minSpareRetry is the least a stock request waits before asking again.
const minSpareRetry = 25 * time.Millisecond

func (b *Budget) clearDemand(ctx context.Context) {
	b.queries.Add(1)
	if _, err := b.pool.Exec(ctx, `DELETE FROM luarmor_demand WHERE replica = $1`, b.cfg.Replica); err != nil && ctx.Err() == nil {
		b.cfg.Logger.Warn("luarmor budget: clearing this replica's demand failed; it expires by itself", "error", err)
	}
}

func (b *Budget) failWaiters(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.waiting.Len() > 0 {
		w := heap.Pop(&b.waiting).(*waiter)
		w.done <- grant{err: fmt.Errorf("luarmor budget stopped: %w", err)}
	}
}

// WaitingByClass counts this process's requests waiting for a slot, by
// class name, every class present.
func (b *Budget) WaitingByClass() map[string]int {
	s := b.Stats()
	out := make(map[string]int, numClasses)
	for c := Class(0); c < numClasses; c++ {
		out[c.String()] = s.Waiting[c]
	}
	return out
}

// Stats is a snapshot of this process's budget use.
type Stats struct {
	Waiting     [numClasses]int // waiting requests of this process, by class
	Granted     int64           // slots granted to this process
	Queries     int64           // PostgreSQL statements spent on budgeting
	RateLimited int64           // 429s this process received
}

// Stats returns a snapshot.
func (b *Budget) Stats() Stats {
	var s Stats
	b.mu.Lock()
	for _, w := range b.waiting {
		s.Waiting[w.class]++
	}
	b.mu.Unlock()
	s.Granted = b.granted.Load()
	s.Queries = b.queries.Load()
	s.RateLimited = b.rateLimited.Load()
	return s
}

// logStats logs the budget's state and prunes old call records.
func (b *Budget) logStats(ctx context.Context) {
	s := b.Stats()
	var used int
	var paused time.Time
	var fleet429 int64
	err := b.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM luarmor_calls WHERE taken_at > clock_timestamp() - $1::interval),
		       paused_until, rate_limits_received
		FROM luarmor_budget WHERE id = 1`, b.cfg.Window).Scan(&used, &paused, &fleet429)
	if err != nil {
		return
	}
	_, _ = b.pool.Exec(ctx, `DELETE FROM luarmor_calls WHERE taken_at < clock_timestamp() - interval '24 hours'`)
	args := []any{
		"waiting_revoke", s.Waiting[ClassRevoke], "waiting_deliver", s.Waiting[ClassDeliver],
		"waiting_renew", s.Waiting[ClassRenew], "waiting_maintenance", s.Waiting[ClassMaintenance],
		"waiting_stock", s.Waiting[ClassStock],
		"slots_used_window", used, "budget", b.cfg.Count, "window", b.cfg.Window,
		"rate_limits_received_fleet", fleet429, "rate_limits_received_here", s.RateLimited,
	}
	if paused.After(time.Now()) {
		args = append(args, "paused_until", paused)
	}
	b.cfg.Logger.Info("luarmor budget", args...)
}

// waiterHeap orders waiters by class, then arrival.
type waiterHeap []*waiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	if h[i].class != h[j].class {
		return h[i].class < h[j].class
	}
	return h[i].seq < h[j].seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}

// peek2 returns the most urgent waiter and the class of the next one (-1
// when there is none).
func (h waiterHeap) peek2() (*waiter, Class) {
	if len(h) == 0 {
		return nil, -1
	}
	next := Class(-1)
	// The second most urgent is one of the root's children.
	for _, i := range []int{1, 2} {
		if i < len(h) && (next < 0 || h[i].class < next) {
			next = h[i].class
		}
	}
	return h[0], next
}
