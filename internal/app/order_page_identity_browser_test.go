package app_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/shop"
)

// logoPNG is a 1×1 PNG, the shop's logo as a loopback server serves it.
var logoPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

// TestOrderPageShowsTheShopAndLinksDiscordInABrowser: the order page of a
// named shop, in a browser at both sizes, shows the shop (its name, logo
// and support contact), what was bought and paid, and the Link Discord
// section; signing in with Discord comes back to the page, which follows
// the link being made until the keys carry the account, without a reload.
func TestOrderPageShowsTheShopAndLinksDiscordInABrowser(t *testing.T) {
	t.Parallel()
	logo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(logoPNG)
	}))
	t.Cleanup(logo.Close)
	d := fulfillertest.StartDiscord(t)
	b := setup(t, withConfig(func(c *config.Config) {
		d.Configure(c)
		c.Shop = shop.Identity{Name: "Acme Scripts", URL: "https://acme.example.com",
			Support: shop.Contact{Email: shopSupportAddress}, LogoURL: logo.URL + "/logo.png", AccentColor: "#aa3300"}
	}))
	b.Catalog.Put(priceNamed, catalog.Product{ProjectID: project, KeyDays: 30, Name: "Pro Monthly", Description: "Every script, updated weekly"})
	d.SetUser(buyerAccount)
	s, o := b.buyInEuros(t)
	require.Len(t, o.Keys, 4)

	p := newPage(t, b)
	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	header := p.text(t, "header")
	require.Contains(t, header, "Acme Scripts")
	p.waitFor(t, `(() => { const img = document.querySelector("header img"); return img !== null && img.complete && img.naturalWidth === 1; })()`,
		"the shop's logo to load from its own origin")
	purchase := p.text(t, "section.order")
	for _, want := range []string{"Pro Monthly", "Every script, updated weekly", "€5.00 × 3", "€27.00", "Stripe receipt", o.OrderRef, shopSupportAddress} {
		require.Contains(t, purchase, want)
	}
	require.Equal(t, "none", eval[string](t, p, `document.querySelector(".discord").dataset.discordStatus`))
	p.screenshots(t, "shop-and-discord-to-link")

	p.run(t, chromedp.Click(chromedp.CSS(`.discord a.button`)))
	p.waitFor(t, `location.pathname.startsWith("/orders/ol_")`, "the sign-in to come back to the order page by a signed link")
	require.NotContains(t, eval[string](t, p, `location.href`), s.ID, "the page is back by a signed link, never the session ID")
	p.waitFor(t, `document.querySelector('.discord[data-discord-status="linked"]') !== null`,
		"the page to follow the link until the keys carry the account")
	require.Contains(t, p.text(t, ".discord h3"), "Discord linked: buyer_one")
	linked := eval[int](t, p, `[...document.querySelectorAll("li.key dd")].filter(d => d.textContent.includes("verified Discord account")).length`)
	require.Equal(t, 1, linked, "Luarmor links an account to one key per project: the order's first")
	require.False(t, strings.Contains(eval[string](t, p, `document.body.innerHTML`), d.Settings.ClientSecret))
	p.screenshots(t, "discord-linked")
}
