package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/shop"
	"fulfiller/internal/stripeapi/stripefake"
)

// A shop whose name and product carry markup: every page and email must
// show it as text.
const (
	hostileShopName    = `Acme <img src=x onerror=alert(1)> Scripts`
	shopSupportAddress = "help@acme.example.com"
	shopLogo           = "https://cdn.acme.example.com/logo.png"
	priceNamed         = "price_named_pro"
	namedProduct       = `Pro <b>Monthly</b>`
	hostileDescription = `<script>alert("pwned")</script> Every script, 30 days`
)

// setupShop starts the service as a named shop, with keys by email to a
// test SMTP server and a price whose catalog entry names it.
func setupShop(t *testing.T) *mailBundle {
	t.Helper()
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	b := setup(t, withConfig(func(c *config.Config) {
		c.Mail = mail.Settings{SMTP: server, From: "Shop <keys@shop.example>", PublicBaseURL: publicBase}
		c.Shop = shop.Identity{Name: hostileShopName, URL: "https://acme.example.com",
			Support: shop.Contact{Email: shopSupportAddress}, LogoURL: shopLogo, AccentColor: "#aa3300"}
	}))
	b.Catalog.Put(priceNamed, catalog.Product{ProjectID: project, KeyDays: 30, Name: namedProduct, Description: hostileDescription})
	return &mailBundle{bundle: b, smtp: srv}
}

// buyInEuros pays, in euros, for three units of the named price at €5.00
// and one lifetime key at €12.00, which the catalog does not name (its
// buyer sees Stripe's product name), and waits for the keys.
func (b *bundle) buyInEuros(t *testing.T) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	s := stripefake.Session{ID: fulfillertest.NewID("cs_test_"), Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Customer: fulfillertest.NewID("cus_"), PaymentIntent: fulfillertest.NewID("pi_"), Currency: "eur",
		Items: []stripefake.Item{{PriceID: priceNamed, Quantity: 3, UnitAmount: 500}, {PriceID: priceLife, Quantity: 1, UnitAmount: 1200}}}
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	return s, b.WaitOrder(t, s.ID, "fulfilled")
}

// fetch GETs path of the public listener and returns the answer and its
// body.
func (b *bundle) fetch(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(b.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestTheShopAndThePurchaseAreShownOnThePageTheAPIAndTheEmails(t *testing.T) {
	t.Parallel()
	b := setupShop(t)
	s, o := b.buyInEuros(t)
	require.Len(t, o.Keys, 4)
	ordered := time.Unix(o.Created, 0).UTC().Format("2 January 2006")
	orderedOnPage := `<time class="local-time" datetime="` + time.Unix(o.Created, 0).UTC().Format(time.RFC3339) + `">` +
		time.Unix(o.Created, 0).UTC().Format("2 January 2006 15:04 UTC") + `</time>`
	require.InDelta(t, time.Now().Unix(), o.Created, 120, "placed when the session was created")
	ref := logging.OrderRef(s.ID)
	receipt := stripefake.ReceiptURL(s.PaymentIntent)

	t.Run("order API", func(t *testing.T) {
		require.Equal(t, ref, o.OrderRef)
		require.NotNil(t, o.AmountTotal)
		require.Equal(t, int64(2700), *o.AmountTotal)
		require.Equal(t, "eur", o.Currency)
		require.Equal(t, "€27.00", o.AmountFormatted)
		require.Equal(t, receipt, o.ReceiptURL)
		require.Equal(t, &httpapi.SupportJSON{Email: shopSupportAddress}, o.Support)
		five, fifteen, twelve := int64(500), int64(1500), int64(1200)
		require.Equal(t, []httpapi.LineJSON{
			{PriceID: priceNamed, ProductName: namedProduct, Description: hostileDescription, Quantity: 3,
				UnitAmount: &five, AmountTotal: &fifteen, Currency: "eur"},
			{PriceID: priceLife, ProductName: "Fake product " + priceLife, Quantity: 1,
				UnitAmount: &twelve, AmountTotal: &twelve, Currency: "eur"},
		}, o.Lines, "unnamed in the catalog, a product goes by Stripe's name")
		names := map[string]int{}
		for _, k := range o.Keys {
			names[k.ProductName]++
		}
		require.Equal(t, map[string]int{namedProduct: 3, "Fake product " + priceLife: 1}, names)
	})

	t.Run("order page", func(t *testing.T) {
		resp, page := b.fetch(t, "/orders/"+s.ID)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, want := range []string{
			"Acme &lt;img src=x onerror=alert(1)&gt; Scripts", // the shop, as text
			`<img src="` + shopLogo + `"`,
			`href="https://acme.example.com"`,
			"Key 1: Pro &lt;b&gt;Monthly&lt;/b&gt;", // the product of each key
			"Key 4: Fake product " + priceLife,
			"&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; Every script, 30 days",
			"€5.00 × 3", "€12.00", "Total paid", "€27.00",
			"Ordered</dt><dd>" + orderedOnPage,
			"<code>" + ref + "</code>",
			`href="mailto:` + shopSupportAddress + `"`,
			`href="` + receipt + `"`,
		} {
			require.Contains(t, page, want)
		}
		for _, never := range []string{"<img src=x", "<script>alert", "<b>Monthly"} {
			require.NotContains(t, page, never)
		}
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "img-src 'self' https://cdn.acme.example.com;",
			"the logo's origin, and nothing else, besides the service")
		require.Contains(t, page, `href="/assets/shop.css?v=`)
		css, body := b.fetch(t, "/assets/shop.css")
		require.Equal(t, http.StatusOK, css.StatusCode)
		require.Equal(t, ":root { --accent: #aa3300; }\n", body)
	})

	t.Run("keys email", func(t *testing.T) {
		msgs := b.waitMessages(t, 1)
		e := parseEmail(t, msgs[0].Data)
		require.Equal(t, "Your license keys from "+hostileShopName, e.header.Get("Subject"))
		for _, part := range []string{e.text, e.html} {
			for _, want := range []string{"€5.00 × 3", "€12.00", "Total paid", "€27.00", ordered, ref, shopSupportAddress, receipt,
				"Fake product " + priceLife} {
				require.Contains(t, part, want)
			}
			for _, k := range o.Keys {
				require.Contains(t, part, k.UserKey)
			}
		}
		require.Contains(t, e.text, "Thank you for your purchase at "+hostileShopName)
		require.Contains(t, e.text, "Key 1 ("+namedProduct+")")
		require.Contains(t, e.text, "- "+namedProduct+": €5.00 × 3")
		require.Contains(t, e.html, "Thank you for your purchase at Acme &lt;img src=x onerror=alert(1)&gt; Scripts")
		require.Contains(t, e.html, "Key 1: Pro &lt;b&gt;Monthly&lt;/b&gt;")
		require.Contains(t, e.html, "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;")
		require.Contains(t, e.html, `href="mailto:`+shopSupportAddress+`"`)
		require.Contains(t, e.html, `<img src="`+shopLogo+`"`)
		require.Contains(t, e.html, "color: #aa3300")
		for _, never := range []string{"<img src=x", "<script>", "<b>Monthly"} {
			require.NotContains(t, e.html, never)
		}
	})

	t.Run("find-my-keys email", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, b.URL+"/v1/key-lookup", strings.NewReader(`{"email":"`+defaultMail+`"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		msgs := b.waitMessages(t, 2)
		e := parseEmail(t, msgs[1].Data)
		require.Equal(t, mail.KeyLookupSubject, e.header.Get("Subject"))
		require.Contains(t, e.text, "You asked for your license keys at "+hostileShopName+", bought with this email address.")
		require.Contains(t, e.html, "You asked for your license keys at Acme &lt;img src=x onerror=alert(1)&gt; Scripts")
		require.NotContains(t, e.html, "<img src=x")
		require.NotContains(t, e.text+e.html, "Someone (we hope you)")
		for _, part := range []string{e.text, e.html} {
			require.Contains(t, part, shopSupportAddress)
		}
	})
}

// An order recorded before amounts were kept (migration 0032's columns
// NULL, no line items) still renders: its keys, date and reference,
// without an amount or a product line; its keys go by their price ID. A
// shop without SHOP_* settings shows no header and no contact, and a
// catalog without names is warned about at start-up.
func TestAnOrderRecordedBeforeAmountsWereKeptRendersWithoutAnAmount(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	// The catalog names none of its prices: start-up says so, once.
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"catalog prices without a name`), logs.String())
	require.Contains(t, logs.String(), `"prices":"`+strings.Join(b.Catalog.Unnamed(), ", ")+`"`)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ctx := context.Background()
	_, err := b.Pool.Exec(ctx, `UPDATE orders SET amount_total = NULL, currency = NULL, placed_at = NULL, receipt_url = NULL,
		created_at = '2024-02-29 10:00:00+00' WHERE checkout_session_id = $1`, s.ID)
	require.NoError(t, err)
	_, err = b.Pool.Exec(ctx, `DELETE FROM order_lines WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID)
	require.NoError(t, err)

	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, o.Keys, 1)
	require.Nil(t, o.AmountTotal)
	require.Empty(t, o.Currency)
	require.Empty(t, o.AmountFormatted)
	require.Empty(t, o.ReceiptURL)
	require.Empty(t, o.Lines)
	require.Nil(t, o.Support, "no SHOP_SUPPORT, no contact")
	require.Equal(t, logging.OrderRef(s.ID), o.OrderRef)
	require.Equal(t, time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC).Unix(), o.Created, "the day the service recorded it")
	require.Equal(t, priceMonth, o.Keys[0].ProductName)

	resp, page := b.fetch(t, "/orders/"+s.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, o.Keys[0].UserKey)
	require.Contains(t, page, `Ordered</dt><dd><time class="local-time" datetime="2024-02-29T10:00:00Z">29 February 2024 10:00 UTC</time>`)
	require.Contains(t, page, "<code>"+logging.OrderRef(s.ID)+"</code>")
	require.Contains(t, page, "Key 1: "+priceMonth)
	for _, never := range []string{"Total", "Receipt", `class="lines"`, `class="shop"`, "Questions?", "shop.css", "$"} {
		require.NotContains(t, page, never)
	}
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "img-src 'self';", "no logo, no other origin")
	css, _ := b.fetch(t, "/assets/shop.css")
	require.Equal(t, http.StatusNotFound, css.StatusCode, "no accent colour, no style sheet of it")
}
