package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// attacker opens keep-alive connections from one address, each sending one
// request and then sitting idle, and counts what the service does with
// them.
type attacker struct {
	addr   string
	dialer net.Dialer

	opened, answered, closedByService, refused atomic.Int64
	answeredPending                            atomic.Int64 // long-polls answered at once, still pending

	mu    sync.Mutex
	conns []net.Conn
}

func newAttacker(t *testing.T, serviceAddr, from string) *attacker {
	a := &attacker{addr: serviceAddr, dialer: net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, c := range a.conns {
			_ = c.Close()
		}
	})
	return a
}

// open dials and sends GET path; the answer, and the service closing the
// connection afterwards, are counted in the background.
func (a *attacker) open(path string) error {
	conn, err := a.dialer.Dial("tcp", a.addr)
	if err != nil {
		return err
	}
	a.opened.Add(1)
	a.mu.Lock()
	a.conns = append(a.conns, conn)
	a.mu.Unlock()
	if _, err = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: fulfiller\r\n\r\n"); err != nil {
		return err
	}
	go func() {
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			a.refused.Add(1)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a.answered.Add(1)
		var o httpapi.OrderJSON
		if json.Unmarshal(body, &o) == nil && o.Status == "pending" {
			a.answeredPending.Add(1)
		}
		// The connection is kept open and silent: it ends when the
		// service closes it (or the test does, at its end).
		if _, err := r.ReadByte(); err != nil {
			a.closedByService.Add(1)
		}
	}()
	return nil
}

// heldByService is how many of the attacker's connections the service
// keeps open: opened, less those it closed or refused.
func (a *attacker) heldByService() int64 {
	return a.opened.Load() - a.closedByService.Load() - a.refused.Load()
}

// clientFrom is an HTTP client whose every request dials anew from the
// local address from: each measured request is accepted afresh, as a
// webhook from Stripe or a buyer's first request would be.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func timed(t *testing.T, c *http.Client, req *http.Request) (time.Duration, int, []byte) {
	t.Helper()
	start := time.Now()
	resp, err := c.Do(req)
	require.NoError(t, err, "no answer while one client holds its connections open")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return time.Since(start), resp.StatusCode, body
}

func TestOneClientsIdleConnectionsAndLongPollsLeaveRoomForWebhooksAndBuyers(t *testing.T) {
	t.Parallel()
	const maxConns, attackConns, attackPolls, heldPolls = 64, 200, 20, 8
	const keptForOne = min(maxConns, config.DefaultMaxConnectionsPerClient)
	const attackPath = "/assets/page.css" // any cheap public page
	b := setup(t, withConfig(func(c *config.Config) { c.MaxConnections = maxConns }))
	pending := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", pending.ID))
	b.waitIdle(t)
	waitersBefore := b.Main.Changes.Waiters()
	// The test's own keep-alive connections are not the attacker's.
	http.DefaultClient.CloseIdleConnections()

	// Stripe, a buyer and a health probe (on the internal listener), each
	// from an address of its own and on a new connection for every request.
	stripe, buyer, probe := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")
	var webhookLatency, buyerLatency, healthLatency []time.Duration
	measure := func(rounds int) {
		for range rounds {
			paid := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
			body := b.SessionEvent(t, "checkout.session.completed", paid.ID)
			req, err := http.NewRequest(http.MethodPost, b.URL+"/webhooks/stripe", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Stripe-Signature", fulfillertest.Sign(body, b.Secret, time.Now()))
			took, status, answer := timed(t, stripe, req)
			require.Equal(t, http.StatusOK, status, string(answer))
			webhookLatency = append(webhookLatency, took)

			req, err = http.NewRequest(http.MethodGet, b.URL+"/v1/orders/"+pending.ID, nil)
			require.NoError(t, err)
			took, status, answer = timed(t, buyer, req)
			require.Equal(t, http.StatusOK, status, string(answer))
			var o httpapi.OrderJSON
			require.NoError(t, json.Unmarshal(answer, &o))
			require.Equal(t, "pending", o.Status)
			buyerLatency = append(buyerLatency, took)

			req, err = http.NewRequest(http.MethodGet, b.Main.AdminURL()+"/healthz", nil)
			require.NoError(t, err)
			took, status, _ = timed(t, probe, req)
			require.Equal(t, http.StatusOK, status)
			healthLatency = append(healthLatency, took)
		}
	}

	// One address opens three times MAX_CONNECTIONS keep-alive
	// connections, each sending one request and then idling.
	attack := newAttacker(t, b.Main.Addr(), "127.0.0.1")
	for range attackConns {
		require.NoError(t, attack.open(attackPath))
	}
	// Polls, here and below: connections answered, refused or held are
	// the attacker's and the listener's own state; no job or order change
	// announces them.
	require.Eventually(t, func() bool { return attack.answered.Load() >= maxConns }, 20*time.Second, time.Millisecond,
		"the attacker fills every place")
	measure(3)
	require.Eventually(t, func() bool { return attack.answered.Load()+attack.refused.Load() == attackConns },
		20*time.Second, time.Millisecond, "every connection of the attacker answered or refused")

	// Then it long-polls the pending order: a few are held, the rest
	// answered at once.
	for range attackPolls {
		require.NoError(t, attack.open("/v1/orders/"+pending.ID+"?wait=30"))
	}
	require.Eventually(t, func() bool {
		return b.Main.Changes.Waiters()-waitersBefore == heldPolls && attack.answeredPending.Load() == attackPolls-heldPolls
	}, 20*time.Second, time.Millisecond, "%d long-polls held, the rest answered at once", heldPolls)

	// And it goes on opening connections while the others come.
	stop := make(chan struct{})
	var attacking sync.WaitGroup
	attacking.Add(1)
	go func() {
		defer attacking.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				_ = attack.open(attackPath) // a refused dial is the attacker's problem
			}
		}
	}()
	measure(5)
	close(stop)
	attacking.Wait()

	for name, latencies := range map[string][]time.Duration{"webhook": webhookLatency, "buyer": buyerLatency, "healthz": healthLatency} {
		require.Less(t, slices.Max(latencies), time.Second, "%s answered within a second during the attack", name)
	}
	require.Eventually(t, func() bool { return attack.heldByService() <= keptForOne }, 20*time.Second, time.Millisecond,
		"the service keeps at most MAX_CONNECTIONS_PER_CLIENT (and MAX_CONNECTIONS) of one client's connections; it keeps %d",
		attack.heldByService())
	require.Equal(t, heldPolls, b.Main.Changes.Waiters()-waitersBefore, "the attacker's long-polls stay capped")

	t.Logf("MAX_CONNECTIONS %d: the attacker (one address) opened %d connections (%d of them long-polls), %d answered, %d closed by the service once idle, %d refused; the service kept %d open for it, %d of its long-polls held",
		maxConns, attack.opened.Load(), attackPolls, attack.answered.Load(), attack.closedByService.Load(), attack.refused.Load(),
		attack.heldByService(), b.Main.Changes.Waiters()-waitersBefore)
	t.Logf("during the attack, each on a new connection from another address: webhook %s; buyer's GET /v1/orders %s; /healthz (internal listener) %s",
		spread(webhookLatency), spread(buyerLatency), spread(healthLatency))

	// The attacker's long-polls end with their client: their holds are
	// given back.
	attack.mu.Lock()
	for _, c := range attack.conns {
		_ = c.Close()
	}
	attack.mu.Unlock()
	// A poll: a slot is given back when its connection closes, which
	// nothing announces.
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() == waitersBefore }, 20*time.Second, time.Millisecond)
}

// spread is the least, median and most of durations.
func spread(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	return "min " + s[0].Round(time.Microsecond).String() + ", median " + s[len(s)/2].Round(time.Microsecond).String() +
		", max " + s[len(s)-1].Round(time.Microsecond).String()
}
