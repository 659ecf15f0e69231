package app_test

import (
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/stripeapi/stripefake"
)

// The hosted order page in a real browser: Chromium, the service, its
// PostgreSQL and River; only Luarmor and Stripe are stand-ins.

func TestOrderPageWaitsThenShowsTheKeysWithoutAReload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	// The buyer lands on the success page while the delayed payment
	// (SEPA, ACH) is still settling: the page confirms the session with
	// Stripe and waits.
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="waiting"]`)))
	require.Equal(t, "Waiting for your keys", p.text(t, "h2"))
	require.NotContains(t, p.text(t, "section.order"), "Payment received", "a waiting page is no proof of payment")
	p.screenshots(t, "waiting")

	// Marks this document: a reload would lose the mark.
	eval[bool](t, p, `window.sameDocument = true`)
	s.PaymentStatus = "paid"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.True(t, eval[bool](t, p, `window.sameDocument === true`), "the keys must appear without a reload")

	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 2)
	shown := eval[[]string](t, p, `Array.from(document.querySelectorAll(".user-key"), i => i.value)`)
	require.ElementsMatch(t, []string{o.Keys[0].UserKey, o.Keys[1].UserKey}, shown)
	require.Equal(t, "Your 2 keys are ready", p.text(t, "h2"))
	p.waitFor(t, `document.getElementById("announce").textContent === "Your 2 keys are ready"`, "the live region to announce the keys")
	require.Contains(t, p.text(t, "li.key dl"), "starts at first use (30 days)")
	require.Contains(t, p.text(t, "li.key dl"), "Not linked to Discord")
	p.screenshots(t, "delivered")

	// Copy puts the key, and then the loader line, on the clipboard.
	loader := get(t, p, chromedp.Value(chromedp.CSS(`li.key [id^="loader-"]`)))
	for _, field := range []struct{ button, want string }{
		{`li.key button[data-copy^="key-"]`, shown[0]},
		{`li.key button[data-copy^="loader-"]`, loader},
	} {
		p.run(t, chromedp.Click(chromedp.CSS(field.button)))
		p.waitFor(t, "navigator.clipboard.readText().then(text => text === "+strconv.Quote(field.want)+")", "the clipboard to hold what was copied")
		require.Contains(t, p.text(t, field.button), "Copied")
	}
	p.screenshots(t, "copied")
	require.Equal(t, `script_key = "`+shown[0]+`";`, loader)
	require.NotContains(t, p.location(t), shown[0], "keys never go into a URL")
}

func TestOrderPageShowsARevokedOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	b.refundOrder(t, s)
	b.WaitOrder(t, s.ID, "revoked")

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="revoked"][data-final]`)))
	require.Equal(t, "This order was refunded", p.text(t, "h2"))
	require.Contains(t, p.text(t, "section.order"), "was refunded, so its keys no longer work")
	require.Contains(t, p.text(t, "section.order"), "contact the shop")
	require.Equal(t, "Refunded", p.text(t, "li.key .badge"))
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("li.key button").length`), "a revoked key offers neither copy nor reset")
	p.screenshots(t, "revoked")
}

func TestOrderPageShowsAFailedOrderWithItsReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="failed"][data-final]`)))
	require.Equal(t, "This order could not be fulfilled", p.text(t, "h2"))
	body := p.text(t, "body")
	require.Contains(t, body, "Contact the shop")
	require.Contains(t, body, logging.OrderRef(s.ID))
	require.NotContains(t, body, s.ID, "the page shows the short reference, not the session ID")
	p.screenshots(t, "failed")
}

func (p *page) location(t *testing.T) string {
	t.Helper()
	return eval[string](t, p, `location.href`)
}

func TestOrderPageResetsTheHWIDThenShowsTheCooldown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := newPage(t, b)
	s, key := b.boughtKey(t)
	require.NotEmpty(t, b.user(t, key).Identifier, "the key is bound to the old machine")

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.True(t, eval[bool](t, p, `!document.querySelector("li.key button.reset-hwid").disabled`), "a reset is offered")
	eval[bool](t, p, `window.sameDocument = true`)
	p.run(t, chromedp.Click(chromedp.CSS(`li.key button.reset-hwid`)))
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.confirm-reset`)))
	p.waitFor(t, `document.querySelector("li.key .hwid-result").textContent.startsWith("HWID reset requested.")`, "the reset to be accepted")

	// The job clears the HWID in Luarmor, and the page shows it done with
	// its cooldown, without a reload.
	b.waitReset(t, s.ID, key, "done")
	require.Empty(t, b.user(t, key).Identifier, "the HWID was cleared in Luarmor")
	p.waitFor(t, `document.querySelector('li.key[data-hwid-status="done"]') !== null`, "the page to show the reset done")
	require.True(t, eval[bool](t, p, `window.sameDocument === true`), "no reload")
	hwid := p.text(t, "li.key .hwid p.muted")
	require.Contains(t, hwid, "HWID reset done at")
	require.Contains(t, hwid, "The next reset is allowed at")
	require.True(t, eval[bool](t, p, `document.querySelector("li.key button.reset-hwid").disabled`), "no second reset within the cooldown")
	p.screenshots(t, "reset-done")

	// Opened again later, the page still holds the cooldown; a request
	// sent anyway (an old tab) is refused with the next allowed time.
	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`li.key[data-hwid-status="done"]`)))
	require.True(t, eval[bool](t, p, `document.querySelector("li.key button.reset-hwid").disabled`))
	p.run(t, chromedp.Evaluate[chromedp.Void](`(b => { b.disabled = false; b.click(); })(document.querySelector("li.key button.reset-hwid"))`))
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.confirm-reset`)))
	p.waitFor(t, `document.querySelector("li.key .hwid-result").textContent.includes("next reset is allowed at")`, "the cooldown refusal to be shown")
	p.screenshots(t, "reset-refused")
	rivertest.RequireInserted(t.Context(), t, b.jobsDB(), jobs.ResetHWIDArgs{}, nil) // the refused request queued nothing
}

func TestMyKeysPageEmailsALinkThatListsTheKeys(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	p := newPage(t, b.bundle)
	o := b.buyAs(t, "page.buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	p.open(t, "/my-keys")
	p.screenshots(t, "form")
	p.run(t, chromedp.SendKeys(chromedp.CSS("#lookup-email"), "Page.Buyer@example.com"), chromedp.Click(chromedp.CSS(`#lookup-form button[type="submit"]`)))
	p.waitFor(t, `document.getElementById("lookup-status").textContent.startsWith("If this address bought keys, a link to them is on its way.")`, "the request to be accepted")
	p.screenshots(t, "requested")

	// The link opens in a new tab, as from a mail client.
	token := linkToken(t, b.waitLookupMessages(t, 1)[0])
	p.run(t, chromedp.Navigate("about:blank"))
	p.open(t, "/my-keys#token="+token)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`#my-orders-list section.order[data-state="delivered"]`)))
	require.Equal(t, "One order for page.buyer@example.com.", p.text(t, "#my-orders-status"))
	shown := eval[[]string](t, p, `Array.from(document.querySelectorAll("#my-orders-list .user-key"), i => i.value)`)
	require.Equal(t, []string{o.Keys[0].UserKey}, shown)
	require.NotContains(t, p.location(t), token, "the token leaves the address bar")
	p.screenshots(t, "orders")

	// A link tampered with, or expired, asks for a new one (pasted into
	// the same tab: only the fragment changes).
	p.open(t, "/my-keys#token="+token[:len(token)-2]+"xx")
	p.waitFor(t, `document.getElementById("my-orders-status").textContent.startsWith("This link has expired or is not valid.")`, "the refusal")
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("#my-orders-list section.order").length`))
	p.screenshots(t, "bad-link")
}
