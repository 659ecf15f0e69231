package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/stripeapi/stripefake"
)

func TestPagesAndAssetsCarryStrictHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	for _, path := range []string{"/orders/" + s.ID, "/my-keys", "/assets/page.js", "/assets/page.css"} {
		status, header, body := send(t, http.MethodGet, b.URL+path, "", nil)
		want := http.StatusOK
		if path == "/my-keys" {
			want = http.StatusNotFound // mail is off: find my keys is not there, its page says so
		}
		require.Equal(t, want, status, path)
		require.Contains(t, header.Get("Content-Security-Policy"), "script-src 'self'", path)
		require.Contains(t, header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		require.Equal(t, "no-referrer", header.Get("Referrer-Policy"), path)
		require.Equal(t, "nosniff", header.Get("X-Content-Type-Options"), path)
		if strings.HasPrefix(path, "/assets/") {
			require.Equal(t, "no-cache", header.Get("Cache-Control"), path)
			require.NotEmpty(t, header.Get("ETag"), path)
			continue
		}
		require.Equal(t, "no-store", header.Get("Cache-Control"), path)
		require.Equal(t, "text/html; charset=utf-8", header.Get("Content-Type"), path)
		require.NotContains(t, body, "<script>", "no inline script: the CSP forbids it")
		require.NotContains(t, body, "style=", "no inline style: the CSP forbids it")
	}
	status, _, _ := send(t, http.MethodGet, b.URL+"/assets/nothing.js", "", nil)
	require.Equal(t, http.StatusNotFound, status)
}

// An ID the service does not know is answered with the page of a paid order
// whose keys are not made yet, and a malformed one with "not found": the
// page tells no more than the shape of the ID and the order API's 404.
func TestOrderPageOfUnknownAndMalformedIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pending := b.unpaidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	known, _, pendingPage := send(t, http.MethodGet, b.URL+"/orders/"+pending.ID, "", nil)
	require.Equal(t, http.StatusOK, known)
	require.Contains(t, pendingPage, `data-state="waiting"`)

	unknownID := fulfillertest.NewID("cs_test_")
	unknown, _, unknownPage := send(t, http.MethodGet, b.URL+"/orders/"+unknownID, "", nil)
	require.Equal(t, http.StatusOK, unknown)
	require.Equal(t,
		strings.NewReplacer(pending.ID, "ID", logging.OrderRef(pending.ID), "REF").Replace(pendingPage),
		strings.NewReplacer(unknownID, "ID", logging.OrderRef(unknownID), "REF").Replace(unknownPage),
		"an unknown ID's page is that of a pending order")

	malformed, _, malformedPage := send(t, http.MethodGet, b.URL+"/orders/not-a-session", "", nil)
	require.Equal(t, http.StatusNotFound, malformed)
	require.Contains(t, malformedPage, "Order not found")
	require.Contains(t, malformedPage, `data-state="not_found"`)
}
