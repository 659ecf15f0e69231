package app_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// Waves of stocked purchases whose sales commit side by side, while the
// refills they queue replace what they sold: the stock for sale never
// holds more than N keys, no key is sold twice, and once the waves are
// over the refills have replaced every sale (none decided the stock was
// full while a sale was committing unseen).
func TestConcurrentSalesAndARefillKeepTheStockAtN(t *testing.T) {
	t.Parallel()
	// More purchases than N: the later ones are sold from keys the
	// refills made during the waves, or made to order.
	const stock, waves, perWave = 8, 3, 6
	b := setupStock(t, stock)
	ctx := context.Background()

	// The stock for sale, sampled throughout.
	var most atomic.Int64
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			var n int64
			if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM stock_keys
				WHERE price_id = $1 AND status IN ('ready', 'pending')`, priceStocked).Scan(&n); err == nil && n > most.Load() {
				most.Store(n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	var sessions []string
	for range waves {
		var wg sync.WaitGroup
		for range perWave {
			s := b.paidSession(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
			sessions = append(sessions, s.ID)
			body := b.SessionEvent(t, "checkout.session.completed", s.ID)
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.Deliver(t, body)
			}()
		}
		wg.Wait()
	}
	seen := map[string]bool{}
	for _, id := range sessions {
		o := b.WaitOrder(t, id, "fulfilled")
		require.Len(t, o.Keys, 1)
		require.False(t, seen[o.Keys[0].UserKey], "a key sold twice")
		seen[o.Keys[0].UserKey] = true
	}
	b.waitStock(t, stock)
	stopSampling()
	<-sampled

	require.LessOrEqual(t, most.Load(), int64(stock), "the stock for sale never held more than N keys")
	require.Equal(t, stock, b.Count(t, `SELECT count(*) FROM stock_keys WHERE price_id = $1 AND status <> 'sold'`, priceStocked),
		"the refills replaced every sale, and no more")
}
