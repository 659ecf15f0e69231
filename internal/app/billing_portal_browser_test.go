package app_test

import (
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// In a real browser, the order page's Manage subscription button lands on
// the customer portal (the stand-in's page) for the order's customer, and
// the portal's link comes back to the order page. Browsers check a form's
// redirect against the page's form-action, so this holds the policy to
// the portal's origin.
func TestManageSubscriptionInABrowserGoesToThePortalAndBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, o := b.subscriptionOrder(t, 1)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"] form.manage-subscription button`)))
	require.Equal(t, "Manage subscription", p.text(t, "form.manage-subscription button"))
	p.screenshots(t, "subscription")

	p.run(t, chromedp.Click(chromedp.CSS(`form.manage-subscription button`)))
	p.waitFor(t, `location.href.startsWith(`+strconv.Quote(b.Stripe.URL+"/_fake/portal/session/")+`)`, "the browser to land on the portal")
	p.run(t, chromedp.WaitVisible(chromedp.CSS("#customer")))
	require.Equal(t, s.Customer, p.text(t, "#customer"))
	p.screenshots(t, "portal")

	p.run(t, chromedp.Click(chromedp.CSS("#return")))
	p.waitFor(t, `location.href.startsWith(`+strconv.Quote(b.URL+"/orders/ol_")+`)`, "the portal's link back to the order page")
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.Equal(t, o.Keys[0].UserKey, eval[string](t, p, `document.querySelector(".user-key").value`))
	require.NotContains(t, p.location(t), s.ID, "back by a signed link, not the Checkout Session ID")
}
