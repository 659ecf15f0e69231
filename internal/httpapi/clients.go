package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// clientIP is the address the request came from: the TCP peer, or, when
// the peer is one of TrustedProxies, the nearest address in
// X-Forwarded-For that is not a trusted proxy. Anyone can write
// X-Forwarded-For, so it is read from trusted peers only.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	peer := remoteAddr(r)
	if !s.trusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	client := peer
	// Right to left: each trusted proxy appended the address it saw.
	for i := len(hops) - 1; i >= 0; i-- {
		fields := strings.Split(hops[i], ",")
		for j := len(fields) - 1; j >= 0; j-- {
			addr, err := netip.ParseAddr(strings.TrimSpace(fields[j]))
			if err != nil {
				return client // garbage: trust nothing further left
			}
			client = addr.Unmap()
			if !s.trusted(client) {
				return client
			}
		}
	}
	return client
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

// clientBuckets is a token bucket per client, bounded in number: a client
// idle long enough for its bucket to refill is forgotten (a full bucket is
// what a new client gets anyway). IPv6 clients are counted by /64, the
// block one subscriber usually holds. Past max live clients, new ones
// share one bucket, and the process-wide bucket still bounds the cost.
type clientBuckets struct {
	mu       sync.Mutex
	rate     float64
	burst    float64
	max      int
	buckets  map[netip.Addr]*tokenBucket
	overflow *tokenBucket
}

func newClientBuckets(rate, burst float64, max int) *clientBuckets {
	return &clientBuckets{rate: rate, burst: burst, max: max,
		buckets: map[netip.Addr]*tokenBucket{}, overflow: newTokenBucket(rate, burst)}
}

func (c *clientBuckets) allow(ip netip.Addr) bool { return c.bucket(ip).allow() }

// available reports whether ip's bucket holds a token, without taking it.
func (c *clientBuckets) available(ip netip.Addr) bool { return c.bucket(ip).available() }

func (c *clientBuckets) bucket(ip netip.Addr) *tokenBucket {
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			ip = p.Addr()
		}
	}
	c.mu.Lock()
	b, ok := c.buckets[ip]
	if !ok {
		if len(c.buckets) >= c.max {
			c.forgetRefilled()
		}
		if len(c.buckets) >= c.max {
			b = c.overflow
		} else {
			b = newTokenBucket(c.rate, c.burst)
			c.buckets[ip] = b
		}
	}
	c.mu.Unlock()
	return b
}

// forgetRefilled drops the buckets that are full again; c.mu is held.
func (c *clientBuckets) forgetRefilled() {
	refill := time.Duration(c.burst / c.rate * float64(time.Second))
	now := time.Now()
	for ip, b := range c.buckets {
		b.mu.Lock()
		idle := now.Sub(b.last)
		b.mu.Unlock()
		if idle >= refill {
			delete(c.buckets, ip)
		}
	}
}
