package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestMeasureLongPoll holds many waiting requests in one process and wakes
// waiters by deliveries made on another replica, checking that every held
// request is answered (still pending, when its wait ends) and every waiter
// woken with its keys. It logs what that costs (heap, RSS, CPU of the whole
// test process: client and both replicas) and the wake-up latency; it
// asserts nothing about speed. By default it runs small (100 requests held
// 2 s, 5 deliveries) so every test run exercises it; the figures in
// docs/api.md come from the full size:
//
//	MEASURE_LONGPOLL=1 ./scripts/with-postgres -- go test -run TestMeasureLongPoll -v -count=1 ./internal/app/
func TestMeasureLongPoll(t *testing.T) {
	held, wait, deliveries := 100, 2, 5
	if os.Getenv("MEASURE_LONGPOLL") != "" {
		held, wait, deliveries = 1000, 30, 50
	}
	// The requests come through a load balancer, each from a buyer of its
	// own: one client's long-polls are capped.
	waiter := setup(t, withConfig(func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.MaxConnections = max(config.DefaultMaxConnections, 4*held) // held requests take at most half
	}))
	worker := setup(t, func(o *options) { o.databaseURL = waiter.Main.Config.DatabaseURL })

	// Waiting requests on pending orders.
	ids := make([]string, held)
	for i := range ids {
		ids[i] = fulfillertest.NewID("cs_test_")
	}
	_, err := waiter.Pool.Exec(context.Background(), `INSERT INTO orders (checkout_session_id) SELECT unnest($1::text[])`, ids)
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: held, MaxConnsPerHost: held}}
	var heapBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	rssBefore := rssKiB(t)
	cpuBefore := cpuTime()
	var wg sync.WaitGroup
	var answeredPending atomic.Int64
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodGet, waiter.URL+"/v1/orders/"+id+"?wait="+strconv.Itoa(wait), nil)
			if err != nil {
				return
			}
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var o struct {
				Status string `json:"status"`
			}
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&o) == nil && o.Status == "pending" {
				answeredPending.Add(1)
			}
		}()
	}
	// A poll: requests being held announce nothing.
	require.Eventually(t, func() bool { return waiter.Main.Changes.Waiters() == held }, time.Minute, 10*time.Millisecond)
	var heapHeld runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapHeld)
	rssHeld := rssKiB(t)
	wg.Wait()
	cpu := cpuTime() - cpuBefore
	require.Equal(t, int64(held), answeredPending.Load(), "every held request is answered, still pending, when its wait ends")
	require.Zero(t, waiter.Main.Changes.Waiters(), "every slot is released")
	t.Logf("%d waiting requests (client and server in one process): heap +%.1f MiB, RSS +%.1f MiB, CPU %.2f s over the %d s wait",
		held, float64(int64(heapHeld.HeapAlloc)-int64(heapBefore.HeapAlloc))/(1<<20), float64(rssHeld-rssBefore)/1024, cpu.Seconds(), wait)

	// Wake-up latency: a key delivered by the other replica's jobs, from the
	// commit of the delivering webhook's payment to the waiter's answer.
	var latencies []time.Duration
	for range deliveries {
		s := waiter.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
		worker.Stripe.PutSession(s)
		waiter.Deliver(t, waiter.SessionEvent(t, "checkout.session.completed", s.ID))
		waiter.waitIdle(t)
		before := waiter.Main.Changes.Waiters()
		answer := waiter.asyncAsk(context.Background(), "/v1/orders/"+s.ID+"?wait=30")
		// A poll: a request being held announces nothing.
		require.Eventually(t, func() bool { return waiter.Main.Changes.Waiters() == before+1 }, 20*time.Second, time.Millisecond)
		s.PaymentStatus = "paid"
		waiter.Stripe.PutSession(s)
		worker.Stripe.PutSession(s)
		worker.Deliver(t, worker.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
		var delivered time.Time
		// A poll on purpose: the latency is measured from an independent
		// look at the database, not from the notification being measured.
		require.Eventually(t, func() bool {
			return waiter.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL`, s.ID) == 1
		}, 20*time.Second, time.Millisecond)
		delivered = time.Now()
		a := <-answer
		require.Equal(t, "fulfilled", a.order.Status)
		latencies = append(latencies, max(0, time.Since(delivered)))
	}
	slices.Sort(latencies)
	t.Logf("wake-up after delivery on another replica, %d deliveries: p50 %s, p99 %s (from when a 1 ms poll of the database first saw the key, so up to a poll late)",
		deliveries, latencies[len(latencies)/2], latencies[len(latencies)*99/100])
}

func rssKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
