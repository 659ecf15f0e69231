package mail_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/shop"
)

func TestParseKindsNamesWhatItRefuses(t *testing.T) {
	t.Parallel()
	s, err := mail.ParseKinds("keys, expiring,,keys")
	require.NoError(t, err)
	require.Equal(t, "keys,expiring", s.String())
	require.True(t, s.Has(mail.KindExpiring))
	require.False(t, s.Has(mail.KindRevoked))
	require.False(t, s.Has("unknown"))

	_, err = mail.ParseKinds("revoked,refunded")
	require.ErrorContains(t, err, `"refunded"`)
	require.ErrorContains(t, err, "keys, reissued, payment_failed, cancelled, revoked, expiring, trial_ending")
}

// Every lifecycle email names the shop, the product and the order, links
// to the order and says what to do, in both parts; the HTML part shows a
// hostile shop's and product's names as text.
func TestEveryLifecycleEmailNamesTheOrderAndEscapesTheShop(t *testing.T) {
	t.Parallel()
	o := &order.Order{ID: 7, CheckoutSessionID: "cs_test_life", CustomerEmail: "buyer@example.com", CustomerID: "cus_1",
		Mode: "subscription", PaymentStatus: "paid", CreatedAt: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		Keys: []order.Key{
			{ID: 1, UserKey: "OLDKEY0123456789abcdefghijklmnop", PriceID: "price_<b>x</b>", Status: order.KeyBlacklisted},
			{ID: 2, UserKey: "NEWKEY0123456789abcdefghijklmnop", PriceID: "price_<b>x</b>", Status: order.KeyActive, KeyDays: 30},
		}}
	hostile := shop.Identity{Name: "Shop <script>x()</script>", URL: "https://shop.example", Support: shop.Contact{Email: "help@shop.example"}}
	l := mail.NewLifecycle(o, &o.Keys[1], "https://keys.example", "ol_token", "id@keys.example")
	l.Shop = hostile
	ends := time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC)
	emails := map[string]mail.Message{
		"in place of the old one":       mail.NewReissuedEmail(l, o, o.Keys[1], o.Keys[0]),
		"update your payment method":    mail.PaymentFailedEmail{Lifecycle: l, Suspended: true},
		"resume it through":             mail.CancelledEmail{Lifecycle: l, Until: mail.FormatDate(ends)},
		"think this is a mistake":       mail.RevokedEmail{Lifecycle: l, Reason: "Payment refunded"},
		"keep your access, buy again":   mail.NewExpiringEmail(l, o.Keys[1], ends, ends.Add(-50*time.Hour)),
		"cancel before you are charged": mail.TrialEndingEmail{Lifecycle: l, Ends: mail.FormatDate(ends)},
	}
	kinds := map[mail.Kind]bool{}
	for whatToDo, m := range emails {
		kinds[m.Kind()] = true
		require.True(t, strings.HasSuffix(m.Subject(), " · "+hostile.Name), m.Subject())
		text, html, err := m.Render()
		require.NoError(t, err, m.Kind())
		for _, part := range []string{text, html} {
			require.Contains(t, part, whatToDo, m.Kind())
			require.Contains(t, part, logging.OrderRef(o.CheckoutSessionID), m.Kind())
			require.Contains(t, part, "https://keys.example/orders/ol_token", m.Kind())
			require.Contains(t, part, "help@shop.example", m.Kind())
			require.NotContains(t, part, o.CheckoutSessionID, m.Kind())
			require.NotContains(t, part, o.Keys[0].UserKey, "%s: a replaced key only by its last characters", m.Kind())
		}
		require.Contains(t, text, "price_<b>x</b>", m.Kind())
		require.Contains(t, html, "price_&lt;b&gt;x&lt;/b&gt;", m.Kind())
		require.Contains(t, html, "Shop &lt;script&gt;x()&lt;/script&gt;", m.Kind())
		require.NotContains(t, html, "<script>", m.Kind())
		require.Contains(t, html, `<html lang="en">`, m.Kind())
	}
	require.Len(t, kinds, len(mail.Kinds)-1, "one email of each kind but the keys email")
	expiring := emails["keep your access, buy again"]
	require.Equal(t, "Your access ends in 3 days · "+hostile.Name, expiring.Subject(), "50 hours is in the third day")
}
