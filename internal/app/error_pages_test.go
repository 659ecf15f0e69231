package app_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// requireStyledError checks an answer is the site's error page with the
// shop's support contact.
func requireStyledError(t *testing.T, a apiAnswer, status int, heading string) {
	t.Helper()
	require.Equal(t, status, a.status, string(a.body))
	require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
	require.Contains(t, string(a.body), heading)
	require.Contains(t, string(a.body), `href="mailto:`+hwidSupportAddress+`"`, "with the support contact")
	require.Contains(t, string(a.body), `<header class="shop">`)
}

// TestErrorPagesAreStyledWithTheirStatus opens each error of a page
// address as a buyer's browser would meet it.
func TestErrorPagesAreStyledWithTheirStatus(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})

	// 404: an address that is no page.
	requireStyledError(t, b.call(t, http.MethodGet, "/orders/"+s.ID+"/nothing", "", "", ""), http.StatusNotFound, "<h1>Page not found</h1>")
	p.open(t, "/orders/"+s.ID+"/nothing")
	require.Equal(t, "Page not found", p.text(t, "h1"))
	p.screenshots(t, "not-found")

	// 405: a form posted to the order page.
	a := b.call(t, http.MethodPost, "/orders/"+s.ID, "", "", "")
	requireStyledError(t, a, http.StatusMethodNotAllowed, "<h1>Not allowed</h1>")
	require.Equal(t, "GET, HEAD", a.header.Get("Allow"))
	p.run(t, chromedp.Evaluate[chromedp.Void](`(f => { f.method = "post"; f.action = location.pathname.replace("/nothing", ""); document.body.append(f); f.submit(); })(document.createElement("form"))`))
	p.waitFor(t, `document.querySelector("h1") && document.querySelector("h1").textContent === "Not allowed"`, "the 405 page")
	p.screenshots(t, "method-not-allowed")
	// The API keeps its JSON.
	require.Equal(t, "application/json", b.call(t, http.MethodPost, "/v1/orders/"+s.ID, "", "", "").header.Get("Content-Type"))

	// 429: a client past its lookups downloads keys.
	unknown := fulfillertest.NewID("cs_test_")
	for range 20 {
		if b.call(t, http.MethodGet, "/orders/"+unknown+"/keys.txt", "", "", "").status == http.StatusTooManyRequests {
			break
		}
	}
	requireStyledError(t, b.call(t, http.MethodGet, "/orders/"+unknown+"/keys.txt", "", "", ""), http.StatusTooManyRequests, "<h1>Too many requests</h1>")
	p.open(t, "/orders/"+unknown+"/keys.txt")
	require.Equal(t, "Too many requests", p.text(t, "h1"))
	p.screenshots(t, "too-many-requests")

	// 503: the order database cannot be read.
	ctx := context.Background()
	_, err := b.Pool.Exec(ctx, `ALTER TABLE orders RENAME TO orders_hidden_by_test`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.Pool.Exec(ctx, `ALTER TABLE orders_hidden_by_test RENAME TO orders`) })
	a = b.call(t, http.MethodGet, "/orders/"+s.ID+"/keys.csv", "", "", "")
	requireStyledError(t, a, http.StatusServiceUnavailable, "<h1>Temporarily unavailable</h1>")
	require.Equal(t, "5", a.header.Get("Retry-After"))
	require.Empty(t, a.header.Get("Content-Disposition"))
	p.open(t, "/orders/"+s.ID+"/keys.csv")
	require.Equal(t, "Temporarily unavailable", p.text(t, "h1"))
	p.screenshots(t, "unavailable")
}
