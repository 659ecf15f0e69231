package httpapi

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// limitedServer is an HTTP server on 127.0.0.1:0 behind a ConnLimiter:
// GET /fast answers at once, GET /block once unblocked (one request per
// send on unblock), GET /hijack takes the connection over and closes it
// once unblocked.
type limitedServer struct {
	limiter *ConnLimiter
	addr    string
	unblock chan struct{}
}

func startLimited(t *testing.T, limits ConnLimits, staleAfter time.Duration) *limitedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &limitedServer{limiter: LimitConns(ln, limits), addr: ln.Addr().String(), unblock: make(chan struct{})}
	s.limiter.staleAfter = staleAfter
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fast", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /block", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.unblock:
		case <-stop:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /hijack", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		select {
		case <-s.unblock:
		case <-stop:
		}
		_ = conn.Close()
	})
	srv := &http.Server{Handler: mux, ConnState: s.limiter.ConnState, ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(s.limiter) }()
	t.Cleanup(func() {
		close(stop)
		_ = srv.Close()
	})
	return s
}

// limiterState is what the limiter counts: open connections in all, per
// client, and those idle (between requests).
type limiterState struct {
	open, idle, waiting int
	perClient           map[string]int
}

func (l *ConnLimiter) state() limiterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := limiterState{open: l.open, waiting: l.waiters, perClient: map[string]int{}}
	for k, cl := range l.clients {
		st.perClient[k.String()] = cl.open
		st.idle += cl.idle.Len()
	}
	return st
}

func (s *limitedServer) eventually(t *testing.T, what string, cond func(limiterState) bool) {
	t.Helper()
	var last limiterState
	require.Eventually(t, func() bool {
		last = s.limiter.state()
		return cond(last)
	}, 10*time.Second, time.Millisecond, "%s; the limiter counts %+v", what, last)
}

type testConn struct {
	net.Conn
	r *bufio.Reader
}

// dialFrom opens a connection to s from the local address from (any of
// 127/8 reaches a listener on 127.0.0.1).
func (s *limitedServer) dialFrom(t *testing.T, from string) *testConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", s.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &testConn{Conn: conn, r: bufio.NewReader(conn)}
}

func (c *testConn) send(t *testing.T, path string) {
	t.Helper()
	_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: fulfiller\r\n\r\n")
	require.NoError(t, err)
}

// answer reads the answer of the request sent last.
func (c *testConn) answer() (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func (c *testConn) get(t *testing.T, path string) {
	t.Helper()
	c.send(t, path)
	status, err := c.answer()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
}

// requireClosedByServer: the server closed c without answering.
func (c *testConn) requireClosedByServer(t *testing.T) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	require.Error(t, err)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the server left the connection open: %v", err)
}

func TestConnLimiterClientPastItsCapLosesItsOldestIdleConnection(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 100, PerClient: 3}, time.Hour)
	var conns []*testConn
	for i := range 3 {
		c := s.dialFrom(t, "127.0.0.1")
		c.get(t, "/fast")
		conns = append(conns, c)
		// One at a time, so the first is the longest idle.
		s.eventually(t, "idle in turn", func(st limiterState) bool { return st.idle == i+1 })
	}

	fourth := s.dialFrom(t, "127.0.0.1")
	fourth.get(t, "/fast")
	conns[0].requireClosedByServer(t)
	for _, c := range conns[1:] {
		c.get(t, "/fast")
	}
	s.eventually(t, "the client keeps its cap", func(st limiterState) bool {
		return st.open == 3 && st.perClient["127.0.0.1"] == 3
	})
}

func TestConnLimiterClientWithEveryConnectionBusyHasItsNewOneClosedWithoutHoldingOthers(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 100, PerClient: 3}, time.Hour)
	var busy []*testConn
	for range 3 {
		c := s.dialFrom(t, "127.0.0.1")
		c.send(t, "/block")
		busy = append(busy, c)
	}
	s.eventually(t, "three busy connections", func(st limiterState) bool { return st.open == 3 && st.idle == 0 })

	s.dialFrom(t, "127.0.0.1").requireClosedByServer(t)
	// Another client is served meanwhile: Accept never waited.
	s.dialFrom(t, "127.0.0.2").get(t, "/fast")

	// Silent new connections count as busy until they go stale (an hour
	// here), so they take the cap as well.
	for range 3 {
		s.unblock <- struct{}{}
	}
	for _, c := range busy {
		status, err := c.answer()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		require.NoError(t, c.Close())
	}
	s.eventually(t, "the busy ones closed", func(st limiterState) bool { return st.perClient["127.0.0.1"] == 0 })
	for range 3 {
		s.dialFrom(t, "127.0.0.1")
	}
	s.eventually(t, "three silent connections", func(st limiterState) bool { return st.perClient["127.0.0.1"] == 3 })
	s.dialFrom(t, "127.0.0.1").requireClosedByServer(t)
}

func TestConnLimiterStaleSilentConnectionCountsAsIdle(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 100, PerClient: 2}, 0)
	first := s.dialFrom(t, "127.0.0.1")
	s.dialFrom(t, "127.0.0.1")
	s.eventually(t, "two silent connections", func(st limiterState) bool { return st.open == 2 })
	s.dialFrom(t, "127.0.0.1").get(t, "/fast")
	first.requireClosedByServer(t)
}

func TestConnLimiterAtMaxClosesAnIdleConnectionOfTheBiggestHolder(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 4, PerClient: 4}, time.Hour)
	// The longest idle connection of all is the small holder's.
	small := s.dialFrom(t, "127.0.0.2")
	small.get(t, "/fast")
	s.eventually(t, "one idle", func(st limiterState) bool { return st.idle == 1 })
	var big []*testConn
	for i := range 2 {
		c := s.dialFrom(t, "127.0.0.1")
		c.get(t, "/fast")
		big = append(big, c)
		s.eventually(t, "idle in turn", func(st limiterState) bool { return st.idle == i+2 })
	}
	busy := s.dialFrom(t, "127.0.0.1")
	busy.send(t, "/block")
	s.eventually(t, "four open, three idle", func(st limiterState) bool { return st.open == 4 && st.idle == 3 })

	s.dialFrom(t, "127.0.0.3").get(t, "/fast")
	big[0].requireClosedByServer(t)
	big[1].get(t, "/fast")
	small.get(t, "/fast")
	s.eventually(t, "still at most four", func(st limiterState) bool {
		return st.open == 4 && st.perClient["127.0.0.1"] == 2 && st.perClient["127.0.0.2"] == 1
	})
}

func TestConnLimiterAtMaxWithNothingIdleWaitsForAConnectionToTurnIdle(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 2, PerClient: 2}, time.Hour)
	for range 2 {
		s.dialFrom(t, "127.0.0.1").send(t, "/block")
	}
	s.eventually(t, "two busy", func(st limiterState) bool { return st.open == 2 && st.idle == 0 })

	newcomer := s.dialFrom(t, "127.0.0.2")
	newcomer.send(t, "/fast")
	s.eventually(t, "Accept waits with the newcomer", func(st limiterState) bool { return st.waiting == 1 && st.open == 2 })

	// One busy connection answers and turns idle: it makes room.
	s.unblock <- struct{}{}
	status, err := newcomer.answer()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	s.eventually(t, "the newcomer took the idle one's place", func(st limiterState) bool {
		return st.open == 2 && st.perClient["127.0.0.2"] == 1 && st.waiting == 0
	})
}

func TestConnLimiterTrustedProxiesPassThePerClientCapButCountToTheTotal(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{Max: 6, PerClient: 2, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, time.Hour)
	for range 6 {
		s.dialFrom(t, "127.0.0.1").send(t, "/block")
	}
	s.eventually(t, "the proxy holds six busy connections", func(st limiterState) bool {
		return st.open == 6 && st.perClient["127.0.0.1"] == 6 && st.idle == 0
	})
	newcomer := s.dialFrom(t, "127.0.0.2")
	newcomer.send(t, "/fast")
	s.eventually(t, "the total still binds", func(st limiterState) bool { return st.waiting == 1 })
	s.unblock <- struct{}{}
	status, err := newcomer.answer()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
}

// TestConnLimiterNeverLeaksAPlace opens, uses and closes connections of a
// few clients in random order (answered, busy, silent, hijacked, closed by
// either side) and checks at every step that the counts stay within the
// caps and agree with each other, and at the end that every place came
// back.
func TestConnLimiterNeverLeaksAPlace(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	const maxConns, perClient = 12, 5
	s := startLimited(t, ConnLimits{Max: maxConns, PerClient: perClient,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}}, 20*time.Millisecond)
	clients := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	var open []net.Conn
	drained := make(chan struct{})
	t.Cleanup(func() { close(drained) })
	for step := range 400 {
		switch op := rng.IntN(6); {
		case op <= 2 || len(open) == 0:
			// Dialing never waits for Accept (the kernel completes the
			// handshake), and answers are read in the background: a
			// request waiting for room must not stop the test.
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clients[rng.IntN(len(clients))])}}
			conn, err := d.Dial("tcp", s.addr)
			require.NoError(t, err)
			open = append(open, conn)
			go func() { _, _ = io.Copy(io.Discard, conn) }()
			path := []string{"/fast", "/block", "/hijack", ""}[rng.IntN(4)]
			if path != "" {
				_, _ = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: fulfiller\r\n\r\n")
			}
		case op == 3:
			i := rng.IntN(len(open))
			_ = open[i].Close()
			open = append(open[:i], open[i+1:]...)
		case op == 4:
			select {
			case s.unblock <- struct{}{}:
			case <-time.After(10 * time.Millisecond): // nothing blocked right now
			}
		case op == 5:
			i := rng.IntN(len(open))
			_, _ = io.WriteString(open[i], "GET /fast HTTP/1.1\r\nHost: fulfiller\r\n\r\n")
		}
		st := s.limiter.state()
		sum := 0
		for client, n := range st.perClient {
			sum += n
			require.Positive(t, n, "step %d: a client without connections is forgotten", step)
			if client != "127.0.0.4" {
				require.LessOrEqual(t, n, perClient, "step %d: %s past its cap", step, client)
			}
		}
		require.Equal(t, st.open, sum, "step %d", step)
		require.LessOrEqual(t, st.open, maxConns, "step %d", step)
		require.LessOrEqual(t, st.idle, st.open, "step %d", step)
	}
	// Everything blocked is let go and every connection closed by the
	// client: every place comes back.
	go func() {
		for {
			select {
			case s.unblock <- struct{}{}:
			case <-drained:
				return
			}
		}
	}()
	for _, conn := range open {
		_ = conn.Close()
	}
	s.eventually(t, "every place given back", func(st limiterState) bool {
		return st.open == 0 && len(st.perClient) == 0 && st.idle == 0
	})
	// And the limiter still serves.
	s.dialFrom(t, "127.0.0.1").get(t, "/fast")
}

func TestConnLimiterCountsAPeerAsTheRateLimitsDo(t *testing.T) {
	t.Parallel()
	key := func(ip string) netip.Addr { return clientKey(peerAddr(&net.TCPAddr{IP: net.ParseIP(ip), Port: 443})) }
	require.Equal(t, key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"), "one IPv6 /64 is one client")
	require.NotEqual(t, key("2001:db8:1:2::1"), key("2001:db8:1:3::1"))
	require.Equal(t, key("198.51.100.7"), key("::ffff:198.51.100.7"), "an IPv4-mapped peer is its IPv4 address")
	require.NotEqual(t, key("198.51.100.7"), key("198.51.100.8"))
}
