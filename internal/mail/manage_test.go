package mail_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
	"fulfiller/internal/order"
)

// The keys email of a subscription links to the order's Manage
// subscription page (by the email's signed link), never to a portal
// session, which expires within minutes; a one-off purchase has no such
// link.
func TestKeysEmailOfASubscriptionLinksToItsManagePage(t *testing.T) {
	keys := []order.Key{{UserKey: "SUBKEY", Status: order.KeyActive, KeyDays: 30}}
	for _, c := range []struct {
		name   string
		o      order.Order
		manage string
	}{
		{"subscription", order.Order{Mode: "subscription", CustomerID: "cus_1", Keys: keys},
			"https://shop.example/orders/ol_link/manage-subscription"},
		{"one-off", order.Order{Mode: "payment", CustomerID: "cus_1", Keys: keys}, ""},
		{"subscription without a customer", order.Order{Mode: "subscription", Keys: keys}, ""},
	} {
		e := mail.NewKeysEmail(&c.o, "https://shop.example", "ol_link", "id@shop.example")
		require.Equal(t, c.manage, e.ManageURL, c.name)
		text, html, err := e.Render()
		require.NoError(t, err)
		if c.manage == "" {
			require.NotContains(t, text+html, "manage-subscription", c.name)
			require.NotContains(t, text+html, "Manage subscription", c.name)
			continue
		}
		require.Contains(t, text, "Manage subscription (change or cancel your plan, update your payment method): "+c.manage, c.name)
		require.Regexp(t, `<a href="`+regexp.QuoteMeta(c.manage)+`"[^>]*>Manage subscription</a>`, html, c.name)
		require.False(t, strings.Contains(text+html, "billing.stripe.com"), c.name)
	}
}
