package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/stripeapi/stripefake"
)

type orderAnswer struct {
	status int
	header http.Header
	order  httpapi.OrderJSON
	body   map[string]any
	err    error
}

// ask GETs path from the service with the given headers ("Name: value").
func (b *bundle) ask(ctx context.Context, method, path string, headers ...string) orderAnswer {
	req, err := http.NewRequestWithContext(ctx, method, b.URL+path, nil)
	if err != nil {
		return orderAnswer{err: err}
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return orderAnswer{err: err}
	}
	defer resp.Body.Close()
	a := orderAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusOK {
		a.err = json.NewDecoder(resp.Body).Decode(&a.order)
	} else if resp.StatusCode != http.StatusNoContent {
		a.err = json.NewDecoder(resp.Body).Decode(&a.body)
	}
	return a
}

// asyncAsk runs ask in the background.
func (b *bundle) asyncAsk(ctx context.Context, path string, headers ...string) <-chan orderAnswer {
	c := make(chan orderAnswer, 1)
	go func() { c <- b.ask(ctx, http.MethodGet, path, headers...) }()
	return c
}

func TestWaitingBuyerIsWokenByADeliveryOnAnotherReplica(t *testing.T) {
	t.Parallel()
	waiter := setup(t)
	worker := setup(t, func(o *options) { o.databaseURL = waiter.Main.Config.DatabaseURL })
	// Each replica has its own Stripe stand-in: both must hold the session.
	s := waiter.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	worker.Stripe.PutSession(s)
	waiter.Deliver(t, waiter.SessionEvent(t, "checkout.session.completed", s.ID))
	waiter.waitIdle(t)

	answer := waiter.asyncAsk(context.Background(), "/v1/orders/"+s.ID+"?wait=30")
	// A poll: a long-poll being held announces nothing.
	require.Eventually(t, func() bool { return waiter.Main.Changes.Waiters() == 1 }, 20*time.Second, 5*time.Millisecond)
	select {
	case a := <-answer:
		t.Fatalf("a pending order was answered before it changed: %+v", a)
	default:
	}

	// The payment settles; the other replica's webhook records it. Which
	// replica works the jobs does not matter: the wake-up travels through
	// PostgreSQL either way.
	s.PaymentStatus = "paid"
	waiter.Stripe.PutSession(s)
	worker.Stripe.PutSession(s)
	worker.Deliver(t, worker.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))

	got := <-answer
	require.NoError(t, got.err)
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, "fulfilled", got.order.Status)
	require.Len(t, got.order.Keys, 1)
	require.Equal(t, "no-store", got.header.Get("Cache-Control"))
	require.Zero(t, waiter.Main.Changes.Waiters(), "the answered request still holds its slot")
}

func TestWaitEndsWithThePendingOrderAndBadWaitsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)

	a := b.ask(context.Background(), http.MethodGet, "/v1/orders/"+s.ID+"?wait=1")
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "pending", a.order.Status)
	require.Zero(t, b.Main.Changes.Waiters())

	for _, wait := range []string{"31", "-1", "1.5", "x", "", "1&wait=2"} {
		a := b.ask(context.Background(), http.MethodGet, "/v1/orders/"+s.ID+"?wait="+wait)
		require.NoError(t, a.err)
		require.Equal(t, http.StatusBadRequest, a.status, "wait=%q", wait)
		require.Equal(t, "wait must be whole seconds from 0 to 30, given once", a.body["error"])
		require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	}

	// A settled order is answered at once whatever the wait.
	_, fulfilled := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	a = b.ask(context.Background(), http.MethodGet, "/v1/orders/"+fulfilled.CheckoutSessionID+"?wait=30")
	require.NoError(t, a.err)
	require.Equal(t, "fulfilled", a.order.Status)
}

func TestAClientThatGoesAwayReleasesItsWaitingSlot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)

	ctx, cancel := context.WithCancel(context.Background())
	answer := b.asyncAsk(ctx, "/v1/orders/"+s.ID+"?wait=30")
	// Polls: holding a long-poll and giving its slot back announce nothing.
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() == 1 }, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, (<-answer).err, context.Canceled)
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() == 0 }, 20*time.Second, 5*time.Millisecond,
		"a disconnected client still holds its slot")
}

func withOrderAPI(proxies string, origins ...string) func(*options) {
	return withConfig(func(c *config.Config) {
		if proxies != "" {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(proxies)}
		}
		c.AllowedOrigins = origins
	})
}

// flood asks for count random unknown IDs as ip (through X-Forwarded-For)
// and returns how many were answered 429.
func (b *bundle) flood(t *testing.T, count int, ip string) int {
	t.Helper()
	limited := 0
	for i := range count {
		a := b.ask(context.Background(), http.MethodGet, fmt.Sprintf("/v1/orders/cs_test_unknown%08d", i), "X-Forwarded-For: "+ip)
		require.NoError(t, a.err)
		require.Contains(t, []int{http.StatusNotFound, http.StatusTooManyRequests}, a.status)
		require.Equal(t, "no-store", a.header.Get("Cache-Control"), "status %d", a.status)
		if a.status == http.StatusTooManyRequests {
			limited++
		}
	}
	return limited
}

func TestAFloodOfUnknownIDsFromOneClientLeavesOtherBuyersTheirLookups(t *testing.T) {
	t.Parallel()
	b := setup(t, withOrderAPI("127.0.0.0/8"))
	require.Positive(t, b.flood(t, 50, "203.0.113.7"), "a flood from one client is limited")

	// The buyer's success page arrives before the webhook: their lookup
	// goes to Stripe, and the flood took none of it.
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	a := b.ask(context.Background(), http.MethodGet, "/v1/orders/"+s.ID, "X-Forwarded-For: 198.51.100.9")
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, s.ID, a.order.CheckoutSessionID)
}

func TestXForwardedForCountsOnlyFromATrustedPeer(t *testing.T) {
	t.Parallel()
	// Untrusted peer: every spoofed address is the same client.
	untrusted := setup(t)
	limited := 0
	for i := range 10 {
		limited += untrusted.flood(t, 1, fmt.Sprintf("203.0.113.%d", i))
	}
	require.Positive(t, limited, "X-Forwarded-For from an untrusted peer gave new lookups")

	// Trusted peer: each forwarded address is its own client.
	trusted := setup(t, withOrderAPI("127.0.0.0/8"))
	limited = 0
	for i := range 10 {
		limited += trusted.flood(t, 1, fmt.Sprintf("203.0.113.%d", i))
	}
	require.Zero(t, limited)
}

func TestUnknownAndMalformedIDsAreAnsweredAlike(t *testing.T) {
	t.Parallel()
	b := setup(t)
	unknown := b.ask(context.Background(), http.MethodGet, "/v1/orders/cs_test_neverpaid00000")
	malformed := b.ask(context.Background(), http.MethodGet, "/v1/orders/not-a-session")
	require.NoError(t, unknown.err)
	require.NoError(t, malformed.err)
	require.Equal(t, http.StatusNotFound, unknown.status)
	require.Equal(t, unknown.status, malformed.status)
	require.Equal(t, unknown.body, malformed.body)
	// Malformed IDs cost the client's lookups too, so they run out alike.
	limited := 0
	for range 10 {
		a := b.ask(context.Background(), http.MethodGet, "/v1/orders/not-a-session")
		require.NoError(t, a.err)
		if a.status == http.StatusTooManyRequests {
			limited++
		}
	}
	require.Positive(t, limited)
}

func TestACancelledLookupDoesNotFailAnotherWaitingForTheSameID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Stripe.SetLatency(time.Second)
	sessionLookups := func() int {
		n := 0
		for _, r := range b.Stripe.Requests() {
			if r.Path == "/v1/checkout/sessions/"+s.ID {
				n++
			}
		}
		return n
	}

	impatient, cancel := context.WithCancel(context.Background())
	first := b.asyncAsk(impatient, "/v1/orders/"+s.ID)
	// A poll: the look-up on its way to the Stripe fake announces nothing.
	require.Eventually(t, func() bool { return sessionLookups() == 1 }, 20*time.Second, 5*time.Millisecond)
	second := b.asyncAsk(context.Background(), "/v1/orders/"+s.ID)
	cancel()
	require.ErrorIs(t, (<-first).err, context.Canceled)

	got := <-second
	require.NoError(t, got.err)
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, s.ID, got.order.CheckoutSessionID)
}

func TestCORSOnlyForAllowedOrigins(t *testing.T) {
	t.Parallel()
	const shop = "https://shop.example.com"
	b := setup(t, withOrderAPI("", shop))
	path := "/v1/orders/cs_test_neverpaid00000"

	pre := b.ask(context.Background(), http.MethodOptions, path, "Origin: "+shop, "Access-Control-Request-Method: GET")
	require.NoError(t, pre.err)
	require.Equal(t, http.StatusNoContent, pre.status)
	require.Equal(t, shop, pre.header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "GET", pre.header.Get("Access-Control-Allow-Methods"))

	get := b.ask(context.Background(), http.MethodGet, path, "Origin: "+shop)
	require.Equal(t, shop, get.header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, get.header.Values("Vary"), "Origin")

	for _, origin := range []string{"https://evil.example.com", "https://shop.example.com.evil.com", "null"} {
		pre := b.ask(context.Background(), http.MethodOptions, path, "Origin: "+origin, "Access-Control-Request-Method: GET")
		require.NoError(t, pre.err)
		require.Equal(t, http.StatusForbidden, pre.status)
		require.Empty(t, pre.header.Get("Access-Control-Allow-Origin"))
		get := b.ask(context.Background(), http.MethodGet, path, "Origin: "+origin)
		require.Empty(t, get.header.Get("Access-Control-Allow-Origin"))
	}
}

// In a sales spike the process's look-ups of orders not recorded yet run
// out: a buyer's page that arrives before its webhook then waits for the
// webhook to record the order instead of being told to come back later.
func TestBuyerAheadOfTheWebhookWaitsWhenLookupsAreSpent(t *testing.T) {
	t.Parallel()
	b := setup(t, withOrderAPI("127.0.0.0/8"))
	// Many clients, each within its own limit, keep every look-up busy.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var busy atomic.Int64
	spent := make(chan struct{})
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			a := b.ask(ctx, http.MethodGet, fmt.Sprintf("/v1/orders/cs_test_spike%08d", i),
				fmt.Sprintf("X-Forwarded-For: 10.9.%d.%d", i/250, i%250))
			if a.err == nil && a.status == http.StatusTooManyRequests && busy.Add(1) == 1 {
				close(spent)
			}
		}
	}()
	<-spent

	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	answer := b.asyncAsk(context.Background(), "/v1/orders/"+s.ID+"?wait=20", "X-Forwarded-For: 198.51.100.9")
	// The buyer is ahead of the webhook. A poll: a long-poll being held
	// announces nothing.
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() == 1 }, 20*time.Second, 5*time.Millisecond)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	a := <-answer
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status, "held for the webhook, not sent away with 429")
	require.Equal(t, "fulfilled", a.order.Status)
	require.Len(t, a.order.Keys, 1)
	stop()
	require.Positive(t, busy.Load(), "the look-ups were spent meanwhile")
}
