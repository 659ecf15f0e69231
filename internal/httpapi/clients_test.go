package httpapi

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
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
