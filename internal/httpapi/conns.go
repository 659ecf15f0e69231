package httpapi

import (
	"container/list"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"fulfiller/internal/logging"
)

// ConnLimits bounds the connections of a ConnLimiter.
type ConnLimits struct {
	// Max is the most connections open at once (MAX_CONNECTIONS).
	Max int
	// PerClient is the most one client (an IPv4 address, an IPv6 /64)
	// holds open at once (MAX_CONNECTIONS_PER_CLIENT); TrustedProxies
	// carry many clients each and are not held to it.
	PerClient      int
	TrustedProxies []netip.Prefix
	// Logger, when set, is told (sampled) of connections closed by a cap.
	Logger *slog.Logger
}

// staleNewConn is how long a connection may go without sending a whole
// request before a cap may close it as if it were idle: the age net/http's
// own Server.Shutdown takes a silent new connection for an idle one.
const staleNewConn = 5 * time.Second

// ConnLimiter is a listener that bounds the connections open at once, in
// all and per client, so that no client can take the places of others. A
// keep-alive connection waiting for its next request costs a place as
// much as a busy one, so a cap makes room by closing idle connections
// (the client opens a new one when it needs it, as after IdleTimeout)
// before it turns anyone away:
//
//   - A client at its PerClient cap loses its own longest idle connection
//     to its new one; with none idle, its new connection is closed at once.
//     Other clients are never held up by that.
//   - With Max connections open, the longest idle connection of the client
//     holding the most is closed for the newcomer; only while no
//     connection at all is idle does Accept wait, the newcomers behind it
//     waiting in the kernel's accept queue, until one closes or turns idle.
//
// A connection that has not sent a whole request within staleNewConn
// counts as idle. The limiter learns which connections are idle from the
// server: set ConnState as the http.Server's ConnState.
type ConnLimiter struct {
	net.Listener
	limits     ConnLimits
	staleAfter time.Duration // staleNewConn but in tests

	mu      sync.Mutex
	open    int
	clients map[netip.Addr]*connClient
	changed chan struct{} // closed (and replaced) when a place frees or a connection turns idle
	waiters int           // Accepts waiting on changed
	closed  chan struct{}
	close   sync.Once

	refusedLog, reclaimedLog logging.Sampled
}

// connClient is one client's open connections.
type connClient struct {
	open int
	// idle and fresh list the client's connections waiting for a request
	// (*limitedConn), longest waiting first: idle ones between requests,
	// fresh ones before their first.
	idle, fresh list.List
}

type limitedConn struct {
	net.Conn
	limiter *ConnLimiter
	client  netip.Addr
	// Guarded by limiter.mu.
	since    time.Time     // when it was accepted or last turned idle
	waiting  *list.List    // idle or fresh list holding it, if any
	elem     *list.Element // its element in waiting
	released bool          // its place is given back
}

// LimitConns wraps l with limits; a Max or PerClient below 1 is taken as 1,
// a PerClient above Max as Max.
func LimitConns(l net.Listener, limits ConnLimits) *ConnLimiter {
	limits.Max = max(1, limits.Max)
	limits.PerClient = min(max(1, limits.PerClient), limits.Max)
	return &ConnLimiter{Listener: l, limits: limits, staleAfter: staleNewConn, clients: map[netip.Addr]*connClient{},
		changed: make(chan struct{}), closed: make(chan struct{})}
}

// Accept returns the next connection within the limits, closing idle ones
// to make room; see ConnLimiter.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, err := l.admit(conn)
		if c != nil || err != nil {
			return c, err
		}
	}
}

// Close stops Accept, a waiting one included.
func (l *ConnLimiter) Close() error {
	l.close.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// admit makes room for conn and counts it, or closes it and returns nil
// when its client is at its cap with nothing idle.
func (l *ConnLimiter) admit(conn net.Conn) (net.Conn, error) {
	peer := peerAddr(conn.RemoteAddr())
	key, capped := clientKey(peer), !l.trusted(peer)
	var reclaimed []*limitedConn
	madeRoom := false
	defer func() {
		for _, c := range reclaimed {
			_ = c.Conn.Close()
		}
		if madeRoom {
			l.reclaimedLog.Log(context.Background(), l.logger(), slog.LevelWarn,
				"idle connections closed to make room: MAX_CONNECTIONS are open", "max_connections", l.limits.Max)
		}
	}()
	l.mu.Lock()
	for {
		now := time.Now()
		if cl := l.clients[key]; capped && cl != nil && cl.open >= l.limits.PerClient {
			c := cl.reclaimable(now, l.staleAfter)
			if c == nil {
				l.mu.Unlock()
				_ = conn.Close()
				l.refusedLog.Log(context.Background(), l.logger(), slog.LevelWarn,
					"connection closed: the client holds MAX_CONNECTIONS_PER_CLIENT busy connections",
					"client", key.String(), "per_client", l.limits.PerClient)
				return nil, nil
			}
			l.releaseLocked(c)
			reclaimed = append(reclaimed, c)
		}
		if l.open < l.limits.Max {
			break
		}
		if c := l.busiestReclaimable(now, l.staleAfter); c != nil {
			l.releaseLocked(c)
			reclaimed = append(reclaimed, c)
			madeRoom = true
			continue
		}
		// Every connection is busy: wait for one to close or turn idle,
		// or a fresh one to go stale, as the connections behind this one
		// wait in the accept queue.
		changed := l.changed
		l.waiters++
		l.mu.Unlock()
		for _, c := range reclaimed {
			_ = c.Conn.Close()
		}
		reclaimed = nil
		timer := time.NewTimer(time.Second)
		select {
		case <-changed:
		case <-timer.C:
		case <-l.closed:
			timer.Stop()
			l.mu.Lock()
			l.waiters--
			l.mu.Unlock()
			_ = conn.Close()
			return nil, net.ErrClosed
		}
		timer.Stop()
		l.mu.Lock()
		l.waiters--
	}
	cl := l.clients[key]
	if cl == nil {
		cl = &connClient{}
		l.clients[key] = cl
	}
	c := &limitedConn{Conn: conn, limiter: l, client: key, since: time.Now()}
	cl.open++
	l.open++
	c.wait(&cl.fresh)
	l.mu.Unlock()
	return c, nil
}

// ConnState is the http.Server's ConnState hook the limiter learns idle
// connections from.
func (l *ConnLimiter) ConnState(conn net.Conn, state http.ConnState) {
	c, ok := conn.(*limitedConn)
	if !ok || c.limiter != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	switch state {
	case http.StateNew:
		// Listed as fresh since it was accepted.
	case http.StateIdle:
		c.stopWaiting()
		c.since = time.Now()
		c.wait(&l.clients[c.client].idle)
		l.signalLocked()
	case http.StateActive, http.StateHijacked:
		c.stopWaiting()
	case http.StateClosed:
		l.releaseLocked(c)
	}
}

// Close gives the connection's place back and closes it.
func (c *limitedConn) Close() error {
	c.limiter.mu.Lock()
	c.limiter.releaseLocked(c)
	c.limiter.mu.Unlock()
	return c.Conn.Close()
}

func (c *limitedConn) wait(on *list.List) {
	c.waiting, c.elem = on, on.PushBack(c)
}

func (c *limitedConn) stopWaiting() {
	if c.waiting != nil {
		c.waiting.Remove(c.elem)
		c.waiting, c.elem = nil, nil
	}
}

// releaseLocked gives c's place back, once.
func (l *ConnLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	c.stopWaiting()
	l.open--
	cl := l.clients[c.client]
	if cl.open--; cl.open == 0 {
		delete(l.clients, c.client)
	}
	l.signalLocked()
}

// signalLocked wakes the Accepts waiting for room.
func (l *ConnLimiter) signalLocked() {
	if l.waiters == 0 {
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// reclaimable is the client's connection to close first, nil if none may
// be: the longest idle, else the oldest fresh one gone stale.
func (cl *connClient) reclaimable(now time.Time, staleAfter time.Duration) *limitedConn {
	if e := cl.idle.Front(); e != nil {
		return e.Value.(*limitedConn)
	}
	if e := cl.fresh.Front(); e != nil {
		if c := e.Value.(*limitedConn); now.Sub(c.since) >= staleAfter {
			return c
		}
	}
	return nil
}

// busiestReclaimable is the connection to close for a newcomer when all
// places are taken: of the client holding the most connections with one
// to spare, so the biggest holder gives way first.
func (l *ConnLimiter) busiestReclaimable(now time.Time, staleAfter time.Duration) *limitedConn {
	var pick *limitedConn
	most := 0
	for _, cl := range l.clients {
		if cl.open <= most {
			continue
		}
		if c := cl.reclaimable(now, staleAfter); c != nil {
			pick, most = c, cl.open
		}
	}
	return pick
}

func (l *ConnLimiter) trusted(a netip.Addr) bool {
	for _, p := range l.limits.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *ConnLimiter) logger() *slog.Logger {
	if l.limits.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.limits.Logger
}

// peerAddr is the address of a connection's peer; the zero Addr (one
// client for all) when it is not an IP address.
func peerAddr(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
