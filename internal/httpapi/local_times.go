package httpapi

import (
	"time"

	"fulfiller/internal/order"
)

// Times on the buyer's pages are <time class="local-time"> elements: UTC
// in their text, which the page's script rewrites in the buyer's own zone
// with the zone's name (page.js localizeTimes).

// ExpiryValue is the key's expiry for a file: RFC 3339 in UTC, "waits for
// first use" while its days start at its first run, or "never".
func (k keyView) ExpiryValue() string {
	switch k.orderKey().Expiry() {
	case order.NeverExpires:
		return "never"
	case order.ExpiresAfterFirstUse:
		return "waits for first use"
	}
	return isoTime(*k.AuthExpire)
}

// ExpiresAt is the key's expiry (unix seconds) when it is a date, else 0.
func (k keyView) ExpiresAt() int64 {
	if k.orderKey().Expiry() != order.ExpiresAt {
		return 0
	}
	return *k.AuthExpire
}

// orderKey is what the order workflow's rules need of the key.
func (k keyView) orderKey() order.Key { return order.Key{AuthExpire: k.AuthExpire, KeyDays: k.KeyDays} }

// unixOrZero is t in unix seconds, 0 for the zero time (unknown).
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
