package app_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// longPollKeys is a buyer's success page: it long-polls the order API
// from the moment the webhook is answered until the order shows its keys.
func (b *bundle) longPollKeys(t *testing.T, sessionID string) httpapi.OrderJSON {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(b.URL + "/v1/orders/" + sessionID + "?wait=30")
		if err != nil {
			t.Errorf("order %s: %v", sessionID, err)
			return httpapi.OrderJSON{}
		}
		var o httpapi.OrderJSON
		ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&o) == nil
		resp.Body.Close()
		if ok && o.Status == "fulfilled" {
			return o
		}
		if !ok {
			time.Sleep(20 * time.Millisecond) // not recorded yet, or look-ups spent: ask again
		}
	}
	t.Errorf("order %s: no keys within a minute", sessionID)
	return httpapi.OrderJSON{}
}

// A burst of stocked purchases, their webhooks arriving at once, each
// buyer long-polling: every buyer sees their key, no key is sold twice,
// no stocked unit costs a Luarmor call (every create the sandbox saw made
// a stock key or a made-to-order unit), and the made-to-order purchases
// among them are delivered alike.
func TestBurstOfStockedPurchasesDeliversEveryKeyOnceWithoutLuarmor(t *testing.T) {
	t.Parallel()
	const stocked, madeToOrder = 30, 4
	b := setupStock(t, stocked)
	stock := b.readyStock(t)
	start := time.Now()
	createsBefore := b.creates()

	type purchase struct {
		session stripefake.Session
		body    []byte
	}
	purchases := make([]purchase, stocked+madeToOrder)
	for i := range purchases {
		price := priceStocked
		if i >= stocked {
			price = priceMonth
		}
		s := b.paidSession(t, stripefake.Item{PriceID: price, Quantity: 1})
		purchases[i] = purchase{s, b.SessionEvent(t, "checkout.session.completed", s.ID)}
	}
	orders := make([]httpapi.OrderJSON, len(purchases))
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i, p := range purchases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Wait()
			b.Deliver(t, p.body)
			orders[i] = b.longPollKeys(t, p.session.ID)
		}()
	}
	ready.Done()
	wg.Wait()
	require.False(t, t.Failed())

	seen := map[string]bool{}
	for i, o := range orders {
		require.Len(t, o.Keys, 1, "order %d", i)
		key := o.Keys[0].UserKey
		require.NotEmpty(t, key)
		require.False(t, seen[key], "key of order %d seen by another buyer", i)
		seen[key] = true
		if i < stocked {
			require.True(t, stock[key], "stocked order %d got a key of the stock held before the burst", i)
		} else {
			require.False(t, stock[key], "made-to-order order %d got a key made for it", i)
		}
	}
	require.Equal(t, stocked, b.Count(t, `SELECT count(*) FROM stock_keys WHERE status = 'sold' AND sold_at > $1`, start),
		"each stocked unit sold one stock key")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM (SELECT user_key FROM order_keys WHERE user_key IS NOT NULL
		GROUP BY user_key HAVING count(*) > 1) twice`), "no key delivered to two units")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM order_keys WHERE price_id = $1 AND create_attempts > 0`, priceStocked),
		"no create was claimed for a stocked unit")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'create_key'
		AND (args->>'order_key_id')::bigint IN (SELECT id FROM order_keys WHERE price_id = $1)`, priceStocked),
		"no stocked unit waited for a key job: the step that recorded its units delivered it")
	require.Equal(t, madeToOrder, b.Count(t, `SELECT count(*) FROM order_keys WHERE price_id = $1 AND create_attempts = 1`, priceMonth))
	// Every create since the burst began made a stock key (the refills
	// replacing what was sold) or a made-to-order unit's key.
	b.waitStock(t, stocked)
	refilled := b.Count(t, `SELECT count(*) FROM stock_keys WHERE made_at > $1`, start)
	require.Equal(t, refilled+madeToOrder, b.creates()-createsBefore, "the stocked units cost no Luarmor create")
	require.LessOrEqual(t, b.Count(t, `SELECT count(*) FROM stock_keys WHERE status <> 'sold'`), stocked, "the stock never above N")
}
