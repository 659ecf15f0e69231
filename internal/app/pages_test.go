package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/stripeapi/stripefake"
)

func getPage(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestPagesAndAssetsCarryStrictHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	for _, path := range []string{"/orders/" + s.ID, "/my-keys", "/assets/page.js", "/assets/page.css"} {
		resp, body := getPage(t, b.URL+path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		if strings.HasPrefix(path, "/assets/") {
			require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"), path)
			require.NotEmpty(t, resp.Header.Get("ETag"), path)
			continue
		}
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), path)
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"), path)
		require.NotContains(t, body, "<script>", "no inline script: the CSP forbids it")
		require.NotContains(t, body, "style=", "no inline style: the CSP forbids it")
	}
	resp, _ := getPage(t, b.URL+"/assets/nothing.js")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// An ID the service does not know is answered with the page of a paid order
// whose keys are not made yet, and a malformed one with "not found": the
// page tells no more than the shape of the ID and the order API's 404.
func TestOrderPageOfUnknownAndMalformedIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pending := b.unpaidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	known, pendingPage := getPage(t, b.URL+"/orders/"+pending.ID)
	require.Equal(t, http.StatusOK, known.StatusCode)
	require.Contains(t, pendingPage, `data-state="waiting"`)

	unknownID := fulfillertest.NewID("cs_test_")
	unknown, unknownPage := getPage(t, b.URL+"/orders/"+unknownID)
	require.Equal(t, http.StatusOK, unknown.StatusCode)
	require.Equal(t,
		strings.NewReplacer(pending.ID, "ID", logging.OrderRef(pending.ID), "REF").Replace(pendingPage),
		strings.NewReplacer(unknownID, "ID", logging.OrderRef(unknownID), "REF").Replace(unknownPage),
		"an unknown ID's page is that of a pending order")

	malformed, malformedPage := getPage(t, b.URL+"/orders/not-a-session")
	require.Equal(t, http.StatusNotFound, malformed.StatusCode)
	require.Contains(t, malformedPage, "Order not found")
	require.Contains(t, malformedPage, `data-state="not_found"`)
}
