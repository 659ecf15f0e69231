package mail_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/shop"
)

// An order recorded before amounts were kept is emailed without a product
// or amount line, and a shop's values are text in the HTML part whatever
// they hold, even a colour that bypassed the settings' check.
func TestKeysEmailOfAnOrderWithoutAmountsAndOfAHostileShop(t *testing.T) {
	t.Parallel()
	o := &order.Order{CheckoutSessionID: "cs_test_old", CustomerEmail: "buyer@example.com", PaymentStatus: "paid",
		CreatedAt: time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC),
		Keys:      []order.Key{{UserKey: "OLDKEY", PriceID: "price_old", Status: order.KeyActive, KeyDays: 30}}}
	e := mail.NewKeysEmail(o, "https://keys.example", "ol_x", "id@keys.example")
	e.Shop = shop.Identity{Name: `Shop </p><script>x()</script>`, URL: "https://shop.example",
		Support: shop.Contact{URL: "https://shop.example/help?a=1&b=<2>"}, AccentColor: `red;background:url(https://evil.example/x)`}
	require.Equal(t, "Your license keys from "+e.Shop.Name, e.Subject())

	text, html, err := e.Render()
	require.NoError(t, err)
	for _, part := range []string{text, html} {
		require.Contains(t, part, logging.OrderRef("cs_test_old"))
		require.Contains(t, part, "29 February 2024")
		require.Contains(t, part, "price_old", "a key without a recorded line goes by its price ID")
		require.NotContains(t, part, "Total")
		require.NotContains(t, part, "Receipt")
		require.NotContains(t, part, "receipt")
	}
	require.Contains(t, text, "Thank you for your purchase at Shop </p><script>x()</script>.")
	require.NotContains(t, html, "<script>")
	require.Contains(t, html, "Shop &lt;/p&gt;&lt;script&gt;x()&lt;/script&gt;")
	require.Contains(t, html, `href="https://shop.example/help?a=1&amp;b=%3c2%3e"`)
	require.NotContains(t, html, "evil.example", "a colour that is no colour adds no style")

	unnamed := mail.NewKeysEmail(o, "https://keys.example", "ol_x", "id@keys.example")
	require.Equal(t, mail.Subject, unnamed.Subject())
	text, html, err = unnamed.Render()
	require.NoError(t, err)
	require.Contains(t, text, "Thank you for your purchase. Your license key is below.")
	require.NotContains(t, text+html, "Questions?", "no SHOP_SUPPORT, no contact")
	require.Contains(t, html, "color: "+shop.DefaultAccentColor)
}
