package httpapi

import (
	"container/list"
	"log/slog"
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

// How a request's X-Forwarded-For was taken, as GET /v1/forwarded-for
// answers it for the request that asked (`fulfiller doctor` asks through
// PUBLIC_BASE_URL, so it sees what the proxy in front does to every
// buyer's request).
const (
	forwardedAbsent    = "absent"    // no X-Forwarded-For: the client is the TCP peer
	forwardedTrusted   = "trusted"   // from a peer in TRUSTED_PROXIES: read
	forwardedUntrusted = "untrusted" // from any other peer: ignored
)

// forwarding tells how r's X-Forwarded-For is taken, and its TCP peer.
func (s *Server) forwarding(r *http.Request) (string, netip.Addr) {
	peer := remoteAddr(r)
	switch {
	case len(r.Header.Values("X-Forwarded-For")) == 0:
		return forwardedAbsent, peer
	case s.trusted(peer):
		return forwardedTrusted, peer
	}
	return forwardedUntrusted, peer
}

// forwardedFor answers how the asking request's X-Forwarded-For was
// taken, never whose address it named: behind an undeclared proxy that
// would be the proxy's inner address.
func (s *Server) forwardedFor(w http.ResponseWriter, r *http.Request) {
	how, _ := s.forwarding(r)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"forwarded_for": how})
}

// untrustedForwardEvery is how often at most a request with X-Forwarded-For
// from an untrusted peer is logged: behind an undeclared proxy every
// request has it, and one line every few minutes says so.
const untrustedForwardEvery = 5 * time.Minute

// watchForwarding logs, once in a while, a request whose X-Forwarded-For
// comes from a peer not in TRUSTED_PROXIES. Behind a proxy nobody declared,
// every buyer looks like the proxy and all of them share one client's rate
// limits; a client sending the header itself is logged too, and is ignored
// as it should be.
func (s *Server) watchForwarding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if how, peer := s.forwarding(r); how == forwardedUntrusted && s.Logger != nil {
			s.untrustedForward.Log(r.Context(), s.Logger, slog.LevelWarn,
				"X-Forwarded-For from a peer not in TRUSTED_PROXIES is ignored: the request counts as the peer's own",
				"peer", peer.String(),
				"fix", "if "+peer.String()+" is a load balancer or reverse proxy in front of this service, add it (or its subnet) to TRUSTED_PROXIES, or every buyer behind it shares one client's rate limits; if it is not, nothing to do")
		}
		next.ServeHTTP(w, r)
	})
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

// clientBuckets is a token bucket per client, bounded in number: past max
// clients the least recently seen one is forgotten (it would get a full
// bucket anyway when it comes back, which costs it nothing it had not
// refilled). IPv6 clients are counted by /64, the block one subscriber
// usually holds. No client ever shares a bucket with another, so a flood
// of addresses cannot drain the bucket of a newcomer; the process-wide
// bucket still bounds what all of them cost together.
type clientBuckets struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	max     int
	buckets map[netip.Addr]*list.Element // of *clientBucket
	recent  *list.List                   // most recently seen first
}

type clientBucket struct {
	ip     netip.Addr
	bucket *tokenBucket
}

func newClientBuckets(rate, burst float64, max int) *clientBuckets {
	return &clientBuckets{rate: rate, burst: burst, max: max,
		buckets: map[netip.Addr]*list.Element{}, recent: list.New()}
}

func (c *clientBuckets) allow(ip netip.Addr) bool { return c.bucket(ip).allow() }

// available reports whether ip's bucket holds a token, without taking it.
func (c *clientBuckets) available(ip netip.Addr) bool { return c.bucket(ip).available() }

// clientKey is what limits count a client by: its IPv4 address, or its
// IPv6 /64 (one subscriber's whole allocation).
func clientKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

func (c *clientBuckets) bucket(ip netip.Addr) *tokenBucket {
	ip = clientKey(ip)
	c.mu.Lock()
	e, ok := c.buckets[ip]
	if ok {
		c.recent.MoveToFront(e)
	} else {
		if c.recent.Len() >= c.max {
			oldest := c.recent.Back()
			delete(c.buckets, oldest.Value.(*clientBucket).ip)
			c.recent.Remove(oldest)
		}
		e = c.recent.PushFront(&clientBucket{ip: ip, bucket: newTokenBucket(c.rate, c.burst)})
		c.buckets[ip] = e
	}
	b := e.Value.(*clientBucket).bucket
	c.mu.Unlock()
	return b
}

// holds bounds requests held open for something, per client and for the
// process: a hold taken is given back with release.
type holds struct {
	perClient, total int

	mu       sync.Mutex
	n        int
	byClient map[netip.Addr]int
}

func newHolds(perClient, total int) *holds {
	return &holds{perClient: perClient, total: total, byClient: map[netip.Addr]int{}}
}

// take reports whether ip may hold one more request; if so, the caller
// calls release when it ends.
func (h *holds) take(ip netip.Addr) bool {
	ip = clientKey(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n >= h.total || h.byClient[ip] >= h.perClient {
		return false
	}
	h.n++
	h.byClient[ip]++
	return true
}

func (h *holds) release(ip netip.Addr) {
	ip = clientKey(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.byClient[ip]--; h.byClient[ip] <= 0 {
		delete(h.byClient, ip)
	}
}
