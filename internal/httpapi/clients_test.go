package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging/logtest"
)

// TestClientBucketsFloodOfAddressesNeverDrainsANewcomer: a client flooding
// from more addresses than are tracked evicts the oldest, and a newcomer
// still gets its own full bucket.
func TestClientBucketsFloodOfAddressesNeverDrainsANewcomer(t *testing.T) {
	const max = 100
	c := newClientBuckets(0.001, 2, max) // no refill within the test
	for i := range 10 * max {
		ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i))
		for c.allow(ip) {
		}
	}
	require.Equal(t, max, c.recent.Len(), "bounded")
	require.Len(t, c.buckets, max)
	newcomer := netip.MustParseAddr("198.51.100.7")
	require.True(t, c.allow(newcomer))
	require.True(t, c.allow(newcomer))
	require.False(t, c.allow(newcomer), "the newcomer's own burst, then its limit")

	// A client seen recently keeps its (drained) bucket while the flood goes on.
	for i := range max - 1 {
		c.allow(netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff:%x::1", i)))
	}
	require.False(t, c.allow(newcomer), "still tracked, still limited")
}

// TestClientBucketsCountIPv6ByPrefix: addresses of one /64 share a bucket.
func TestClientBucketsCountIPv6ByPrefix(t *testing.T) {
	c := newClientBuckets(0.001, 1, 10)
	require.True(t, c.allow(netip.MustParseAddr("2001:db8:1:2::1")))
	require.False(t, c.allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")), "same /64")
	require.True(t, c.allow(netip.MustParseAddr("2001:db8:1:3::1")), "another /64")
}

// Requests held for orders not recorded yet are bounded per client (an
// IPv6 /64 counts as one) and in all, and a released hold is free again.
func TestHoldsAreBoundedPerClientAndInAll(t *testing.T) {
	h := newHolds(2, 3)
	a := netip.MustParseAddr("203.0.113.1")
	other := netip.MustParseAddr("198.51.100.7")
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	sameV6 := netip.MustParseAddr("2001:db8:1:2:ffff::9")

	require.True(t, h.take(a))
	require.True(t, h.take(a))
	require.False(t, h.take(a), "a client holds at most two")
	require.True(t, h.take(v6))
	require.False(t, h.take(other), "the process holds at most three")

	h.release(a)
	h.release(a)
	require.True(t, h.take(sameV6), "released holds are free again")
	require.False(t, h.take(v6), "the /64 holds two, whichever of its addresses asks")
	require.True(t, h.take(other))

	h.release(v6)
	h.release(sameV6)
	require.NotContains(t, h.byClient, clientKey(v6), "a client with nothing held is forgotten")
	require.NotContains(t, h.byClient, a)
}

// behindProxy serves s and, in front of it, a reverse proxy that appends
// the client's address to X-Forwarded-For as load balancers do; both
// listen on 127.0.0.1, so the service's TCP peer is the proxy.
func behindProxy(t *testing.T, s *Server) (direct, proxied string) {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	target, err := url.Parse(srv.URL)
	require.NoError(t, err)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(proxy.Close)
	return srv.URL, proxy.URL
}

func askForwarding(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/v1/forwarded-for")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Len(t, body, 1, "the answer names no address: %v", body)
	return body["forwarded_for"]
}

// Behind a proxy missing from TRUSTED_PROXIES every buyer looks like the
// proxy: the service logs it, once in a while, naming the peer and the
// setting, and /v1/forwarded-for tells the asker (doctor) its
// X-Forwarded-For was ignored. Declared, the proxy is trusted and nothing
// is logged.
func TestForwardingFromAnUndeclaredProxyIsLoggedAndReported(t *testing.T) {
	t.Parallel()
	logs := &logtest.Buffer{}
	// The webhook endpoint is not what this test is about.
	s := &Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	direct, proxied := behindProxy(t, s)

	require.Equal(t, forwardedAbsent, askForwarding(t, direct))
	require.Empty(t, logs.String(), "no X-Forwarded-For, nothing to say")

	for range 20 {
		require.Equal(t, forwardedUntrusted, askForwarding(t, proxied))
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1, "sampled: one line for twenty requests")
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "WARN", rec["level"])
	require.Equal(t, "127.0.0.1", rec["peer"])
	require.Contains(t, rec["msg"], "X-Forwarded-For from a peer not in TRUSTED_PROXIES")
	require.Contains(t, rec["fix"], "add it (or its subnet) to TRUSTED_PROXIES")

	trustedLogs := &logtest.Buffer{}
	declared := &Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.NewJSONHandler(trustedLogs, nil)),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	_, proxied = behindProxy(t, declared)
	require.Equal(t, forwardedTrusted, askForwarding(t, proxied))
	require.Empty(t, trustedLogs.String())
}
