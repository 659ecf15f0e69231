package app_test

import (
	"net/http"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestUnknownOrderEndsItsWaitWithWhatToCheckAndTheSupportContact: a
// well-formed session ID nobody paid waits like a paid order; once the
// order API has answered 404 for the page's limit (a minute, shortened
// here through the page's own data-after-seconds), the spinner gives way
// to what to check and the shop's support contact, and Check again finds
// the order once it exists.
func TestUnknownOrderEndsItsWaitWithWhatToCheckAndTheSupportContact(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s := stripefake.Session{ID: fulfillertest.NewID("cs_test_"), Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Items: []stripefake.Item{{PriceID: priceMonth, Quantity: 1}}}

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="waiting"]`)))
	require.Equal(t, "60", eval[string](t, p, `document.querySelector(".wait-help").dataset.afterSeconds`), "a minute by default")
	require.True(t, eval[bool](t, p, `document.querySelector(".wait-help").hidden`))
	eval[bool](t, p, `(document.querySelector(".wait-help").dataset.afterSeconds = "1") === "1"`)

	p.waitFor(t, `document.querySelector("section.order[data-wait-ended]") !== null`, "the wait to end")
	require.False(t, eval[bool](t, p, `document.querySelector(".wait-help").hidden`))
	require.True(t, eval[bool](t, p, `document.querySelector("section.order p.lead .spinner").closest("p").hidden`), "no spinner any more")
	help := p.text(t, ".wait-help")
	for _, want := range []string{"Your order has not shown up yet", "confirmation email", "mistyped", "payment went through",
		"Contact Acme at " + hwidSupportAddress} {
		require.Contains(t, help, want)
	}
	require.Equal(t, "mailto:"+hwidSupportAddress, eval[string](t, p, `document.querySelector(".wait-help a").getAttribute("href")`))
	p.waitFor(t, `document.getElementById("announce").textContent === "Your order has not shown up yet"`, "the end to be announced")
	p.screenshots(t, "wait-ended")

	p.run(t, chromedp.Click(chromedp.CSS(`.wait-help button.check-again`)))
	p.waitFor(t, `document.querySelector(".wait-help .check-result").textContent.includes("still no order at this address")`, "the check's answer")

	// The payment clears: Check again shows the order.
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	p.run(t, chromedp.Click(chromedp.CSS(`.wait-help button.check-again`)))
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.Equal(t, o.Keys[0].UserKey, eval[string](t, p, `document.querySelector(".user-key").value`))
}

// TestWaitingPageWithoutScriptSaysWhatToCheck: with script off the page
// cannot follow the order, so a noscript block says to reload, what to
// check and whom to ask, on every waiting page alike.
func TestWaitingPageWithoutScriptSaysWhatToCheck(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	id := fulfillertest.NewID("cs_test_")
	page := string(b.call(t, http.MethodGet, "/orders/"+id, "", "", "").body)
	require.Contains(t, page, "<noscript>")
	require.Contains(t, page, `<a class="button secondary" href="/orders/`+id+`">Check again</a>`)

	_, err := chromedp.Call(p.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	require.NoError(t, err, "turning script off")
	p.open(t, "/orders/"+id)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`noscript .wait-help`)))
	help := p.text(t, "noscript .wait-help")
	for _, want := range []string{"reload it", "confirmation email", "mistyped", "Contact Acme at " + hwidSupportAddress, "Check again"} {
		require.Contains(t, help, want)
	}
	// The checker runs axe-core in the page: script back on, which leaves
	// the page as it was rendered without it (its own script never ran).
	_, err = chromedp.Call(p.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
	require.NoError(t, err, "turning script back on for the checker")
	p.screenshots(t, "waiting-without-script")
}
