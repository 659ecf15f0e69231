// Package notify wakes requests waiting for an order to change. One
// dedicated PostgreSQL connection per process LISTENs on channel
// order_changed (fed by triggers on orders and order_keys, see migration
// 0010), and each notification is broadcast in process to the waiters of
// that Checkout Session. A change made by any replica wakes the waiters of
// every replica, and a waiting request costs no database query until it is
// woken.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL notification channel; its payload is a
// Checkout Session ID.
const Channel = "order_changed"

// DefaultMaxWaiters bounds the waiters of one process: each holds a
// goroutine and an open connection.
const DefaultMaxWaiters = 2000

// ErrFull is Subscribe's answer when MaxWaiters are waiting already.
var ErrFull = errors.New("notify: too many waiting requests in this process")

// Hub broadcasts order changes to subscribers by Checkout Session ID. Its
// zero value is not usable: create it with New.
type Hub struct {
	connConfig *pgx.ConnConfig
	maxWaiters int
	logger     *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[*Subscription]struct{}
	count   int
}

// Subscription is one waiter's registration. C receives a value when the
// order may have changed; it is buffered so a burst of changes coalesces
// into one wake-up.
type Subscription struct {
	C  <-chan struct{}
	c  chan struct{}
	id string
	h  *Hub
}

// New returns a hub that listens through its own connection made from
// connConfig (copied; typically the pool's ConnConfig). maxWaiters <= 0
// means DefaultMaxWaiters.
func New(connConfig *pgx.ConnConfig, maxWaiters int, logger *slog.Logger) *Hub {
	if maxWaiters <= 0 {
		maxWaiters = DefaultMaxWaiters
	}
	return &Hub{connConfig: connConfig.Copy(), maxWaiters: maxWaiters, logger: logger,
		waiters: map[string]map[*Subscription]struct{}{}}
}

// Subscribe registers a waiter for the order id. Subscribe before reading
// the order, so a change committed between the read and the wait is not
// missed. Close the subscription when done; ErrFull means the process is
// at MaxWaiters and the caller should answer without waiting.
func (h *Hub) Subscribe(id string) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count >= h.maxWaiters {
		return nil, ErrFull
	}
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, id: id, h: h}
	set := h.waiters[id]
	if set == nil {
		set = map[*Subscription]struct{}{}
		h.waiters[id] = set
	}
	set[s] = struct{}{}
	h.count++
	return s, nil
}

// Close releases the subscription's slot; closing twice is harmless.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.waiters[s.id]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.waiters, s.id)
	}
	h.count--
}

// Waiters is the number of open subscriptions.
func (h *Hub) Waiters() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// wake signals the waiters of id without blocking.
func (h *Hub) wake(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.waiters[id] {
		signal(s.c)
	}
}

// wakeAll signals every waiter: after the listening connection was lost,
// notifications sent meanwhile are gone, so every waiter reads its order
// once more.
func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for s := range set {
			signal(s.c)
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Reconnect delays after a lost listening connection: quick at first,
// then once in a while during a long outage.
const (
	minReconnectDelay = 100 * time.Millisecond
	maxReconnectDelay = 5 * time.Second
)

// Run listens until ctx ends, reconnecting after a database outage.
func (h *Hub) Run(ctx context.Context) {
	delay := minReconnectDelay
	lost := false
	for ctx.Err() == nil {
		err := h.listen(ctx, func() {
			delay = minReconnectDelay
			if lost {
				h.wakeAll()
				h.logger.InfoContext(ctx, "order change listener reconnected")
				lost = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !lost {
			h.logger.WarnContext(ctx, "order change listener lost its PostgreSQL connection; waiting requests answer at their deadline until it is back, reconnecting",
				"error", err)
		}
		lost = true
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxReconnectDelay)
	}
}

// listen holds one connection LISTENing and dispatches its notifications;
// ready runs once LISTEN is in effect.
func (h *Hub) listen(ctx context.Context, ready func()) error {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, h.connConfig)
	cancel()
	if err != nil {
		return fmt.Errorf("connecting the order change listener: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("LISTEN %s: %w", Channel, err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for order changes: %w", err)
		}
		h.wake(n.Payload)
	}
}
