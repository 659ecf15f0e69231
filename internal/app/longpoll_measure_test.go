package app_test

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// TestMeasureLongPoll prints what waiting buyers cost: 1,000 requests held
// for 30 s by one process (heap, RSS, CPU of the whole test process: client, both replicas), and the wake-up latency of 50
// deliveries made on another replica. It measures, it asserts nothing
// about speed, so it runs only when asked:
//
//	MEASURE_LONGPOLL=1 ./scripts/with-postgres -- go test -run TestMeasureLongPoll -v -count=1 ./internal/app/
func TestMeasureLongPoll(t *testing.T) {
	if os.Getenv("MEASURE_LONGPOLL") == "" {
		t.Skip("set MEASURE_LONGPOLL=1 to measure")
	}
	waiter := setup(t)
	worker := setup(t, func(o *options) { o.databaseURL = waiter.main.Config.DatabaseURL })

	// 1,000 waiting requests on pending orders.
	const held = 1000
	ids := make([]string, held)
	for i := range ids {
		ids[i] = newID("cs_test_")
	}
	_, err := waiter.pool.Exec(context.Background(), `INSERT INTO orders (checkout_session_id) SELECT unnest($1::text[])`, ids)
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: held, MaxConnsPerHost: held}}
	var heapBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	rssBefore := rssKiB(t)
	cpuBefore := cpuTime()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(waiter.url + "/v1/orders/" + id + "?wait=30")
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	require.Eventually(t, func() bool { return waiter.main.Changes.Waiters() == held }, time.Minute, 10*time.Millisecond)
	var heapHeld runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapHeld)
	rssHeld := rssKiB(t)
	wg.Wait()
	cpu := cpuTime() - cpuBefore
	t.Logf("%d waiting requests (client and server in one process): heap +%.1f MiB, RSS +%.1f MiB, CPU %.2f s over the 30 s wait",
		held, float64(int64(heapHeld.HeapAlloc)-int64(heapBefore.HeapAlloc))/(1<<20), float64(rssHeld-rssBefore)/1024, cpu.Seconds())

	// Wake-up latency: a key delivered by the other replica's jobs, from the
	// commit of the delivering webhook's payment to the waiter's answer.
	var latencies []time.Duration
	for range 50 {
		s := waiter.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
		worker.stripe.PutSession(s)
		waiter.deliver(t, waiter.sessionEvent(t, "checkout.session.completed", s.ID))
		waiter.waitIdle(t)
		before := waiter.main.Changes.Waiters()
		answer := waiter.asyncAsk(context.Background(), "/v1/orders/"+s.ID+"?wait=30")
		require.Eventually(t, func() bool { return waiter.main.Changes.Waiters() == before+1 }, 20*time.Second, time.Millisecond)
		s.PaymentStatus = "paid"
		waiter.stripe.PutSession(s)
		worker.stripe.PutSession(s)
		worker.deliver(t, worker.sessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
		var delivered time.Time
		require.Eventually(t, func() bool {
			return waiter.count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL`, s.ID) == 1
		}, 20*time.Second, time.Millisecond)
		delivered = time.Now()
		a := <-answer
		require.Equal(t, "fulfilled", a.order.Status)
		latencies = append(latencies, max(0, time.Since(delivered)))
	}
	slices.Sort(latencies)
	t.Logf("wake-up after delivery on another replica, 50 deliveries: p50 %s, p99 %s (from when a 1 ms poll of the database first saw the key, so up to a poll late)",
		latencies[len(latencies)/2], latencies[len(latencies)*99/100])
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
