package app_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// consolePage opens a tab on the internal listener that sends the admin
// login with every request, as a browser does once its operator signed in.
func consolePage(t *testing.T, b *bundle) *page {
	t.Helper()
	p := newPage(t, b)
	p.baseURL = b.AdminURL
	credentials := base64.StdEncoding.EncodeToString([]byte(adminUser + ":" + adminPassword))
	_, err := chromedp.Call(p.ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(p.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + credentials}})
	require.NoError(t, err)
	return p
}

// consoleParsed is true once a console page is parsed whole: its deferred
// script has run. A navigation's new location shows before its page does.
const consoleParsed = `document.documentElement.dataset.consoleReady === "1"`

// searchConsole types text in the console's search box and submits it.
func (p *page) searchConsole(t *testing.T, text string) {
	t.Helper()
	p.run(t, chromedp.SetValue(chromedp.CSS("#q"), text), chromedp.Click(chromedp.CSS(`form.search button[type="submit"]`)))
	p.waitFor(t, `document.querySelector("#results-heading") !== null && `+consoleParsed, "the search's results")
}

// openFoundOrder clicks the order ref in the search's results.
func (p *page) openFoundOrder(t *testing.T, ref string) {
	t.Helper()
	p.run(t, chromedp.Click(chromedp.CSS(`tr[data-order="`+ref+`"] a`)))
	p.waitFor(t, `document.querySelector("h1") !== null && document.querySelector("h1").textContent === "Order `+ref+`" && `+consoleParsed, "the order's page")
}

// openConsoleAction opens the action whose confirmation is named id
// (the form of console-confirm), showing its fields.
func (p *page) openConsoleAction(t *testing.T, id string) {
	t.Helper()
	p.run(t, chromedp.Click(chromedp.CSS(`details.action:has(#reason-`+id+`) summary`)))
}

// confirmConsoleAction gives an opened action its reason, ticks its
// confirmation, submits it, waits for the page it leads back to, which
// names the action, and returns that page's notice of the outcome. The
// notice is read from the page itself: the page before had one too.
func (p *page) confirmConsoleAction(t *testing.T, action, id, reason string) string {
	t.Helper()
	p.run(t, chromedp.SetValue(chromedp.CSS("#reason-"+id), reason),
		chromedp.Click(chromedp.CSS("#confirm-"+id)),
		chromedp.Click(chromedp.CSS(`details.action:has(#reason-`+id+`) button[type="submit"]`)))
	p.waitFor(t, `location.search === "?done=`+action+`" && document.querySelector(".notice.ok") !== null`, "the "+action+"'s outcome")
	return eval[string](t, p, `document.querySelector(".notice.ok").textContent`)
}

// submitConsoleAction takes an action of the order or stock page: opens
// it, gives the reason, confirms and submits it; it returns the notice of
// its outcome.
func (p *page) submitConsoleAction(t *testing.T, action, id, reason string) string {
	t.Helper()
	p.openConsoleAction(t, id)
	return p.confirmConsoleAction(t, action, id, reason)
}

// requireAudited checks that the audit log's newest entry is action, asked
// from the console with reason.
func (b *bundle) requireAudited(t *testing.T, action, reason string) postgres.AuditEntry {
	t.Helper()
	entries, err := postgres.ListAudit(context.Background(), b.Pool, postgres.AuditQuery{Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, entries, "the audit log records %s", action)
	require.Equal(t, action, entries[0].Action)
	require.Equal(t, "admin:"+adminUser, entries[0].Actor)
	require.Equal(t, reason, entries[0].Reason)
	return entries[0]
}

// TestConsoleTellsWhetherABuyerGotTheirKeysInTwoClicks: two buyers, one
// order delivered and one failed; from a search by each buyer's email,
// one click opens the order, which shows its keys (masked) and, for the
// failed one, why it failed. An action taken there is in the audit log.
func TestConsoleTellsWhetherABuyerGotTheirKeysInTwoClicks(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	alice, bob := "alice@example.com", "bob@example.com"
	delivered, bought := b.Buy(t, alice, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	failed := b.Stripe.PaidSession(bob, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", failed.ID))
	b.WaitOrder(t, failed.ID, "failed")
	deliveredRef, failedRef := logging.OrderRef(delivered.ID), logging.OrderRef(failed.ID)

	p := consolePage(t, b)
	p.open(t, "/console/")
	// The last 7 days, not today: a test running over midnight still holds.
	require.Equal(t, "2", p.text(t, "#orders-week"))
	require.Equal(t, "2", p.text(t, "#keys-week"))
	require.Contains(t, p.text(t, "main"), failedRef, "the overview lists the failed order")
	p.screenshots(t, "console-overview")

	p.open(t, "/console/orders")
	p.screenshots(t, "console-orders")

	// Alice: search, click, and her two keys are there, working.
	p.searchConsole(t, alice)
	require.Equal(t, "1 order found", p.text(t, "#results-heading"))
	require.Equal(t, p.baseURL+"/console/orders", p.location(t), "the email went in the body, not the URL")
	p.screenshots(t, "console-search-results")
	p.openFoundOrder(t, deliveredRef)
	require.Equal(t, "active", p.text(t, "#order-state"))
	keys := eval[[]string](t, p, `[...document.querySelectorAll(".unit .key code")].map(e => e.textContent)`)
	require.Len(t, keys, 2)
	html := eval[string](t, p, `document.documentElement.outerHTML`)
	for i, k := range bought.Keys {
		require.Contains(t, keys, logging.MaskKey(k.UserKey), "key %d shown by its last characters", i)
		require.NotContains(t, html, k.UserKey, "no whole key in the page")
	}
	require.NotContains(t, html, delivered.ID, "no Checkout Session ID in the page")
	timeline := p.text(t, "ol.timeline")
	require.Contains(t, timeline, "Stripe event checkout.session.completed")
	// The webhook's own job expands the order and queues its creates; a
	// fulfil_order job is there only when the order API's first read beat
	// that job and recorded the order from Stripe.
	require.Contains(t, timeline, "Job create_key")
	require.Contains(t, timeline, "Luarmor POST /v3/projects/{project_id}/users: HTTP 200", "the key's creation, with Luarmor's answer")
	p.screenshots(t, "console-order-delivered")

	// Bob: search, click, and why his order failed.
	p.open(t, "/console/orders")
	p.searchConsole(t, bob)
	p.openFoundOrder(t, failedRef)
	require.Equal(t, "failed", p.text(t, "#order-state"))
	why := p.text(t, "#why")
	require.Contains(t, why, "The order failed")
	require.Contains(t, why, "price_not_in_catalog", "the reason names the price missing from the catalog")
	p.screenshots(t, "console-order-failed")

	// Retry it from the page: confirmed, with a reason.
	require.Contains(t, p.submitConsoleAction(t, "retry", "retry", "price added to the catalog"), "fulfilment is queued again")
	require.Contains(t, p.text(t, "ol.timeline"), "Support action retry")
	require.Contains(t, p.text(t, "ol.timeline"), "price added to the catalog")
	p.screenshots(t, "console-order-action-done")

	require.Equal(t, failedRef, b.requireAudited(t, "retry", "price added to the catalog").OrderRef)
	require.False(t, strings.Contains(p.location(t), "cs_"), "no Checkout Session ID in the console's URLs")
}

// TestConsoleOverviewShowsWaitingOrdersRetryingJobsAndStock: an order
// whose key Luarmor keeps failing waits, and the overview and its page
// say why (the job retrying, with Luarmor's answer); the stocked price is
// shown against its target.
func TestConsoleOverviewShowsWaitingOrdersRetryingJobsAndStock(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 2, withAdminLogin())
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTTP500, Times: 1000})
	s := b.Stripe.PaidSession("frank@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	// From its fourth failure on, the creation waits 8 s or more for its
	// next attempt (1 s doubling): long enough for the page to find it
	// retrying on a busy machine.
	b.WaitJobsUntil(t, "the key's creation to wait for a retry", func() bool {
		return b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'create_key' AND state = 'retryable' AND attempt >= 4`) == 1
	})
	ref := logging.OrderRef(s.ID)

	p := consolePage(t, b)
	p.open(t, "/console/")
	require.Contains(t, p.text(t, "#waiting-heading"), "1")
	require.Contains(t, p.text(t, "#retrying-heading"), "1")
	require.Contains(t, p.text(t, "main"), "create_key: 1")
	stock := p.text(t, `tr[data-price="`+priceStocked+`"]`)
	require.Contains(t, stock, "target 2")
	p.screenshots(t, "console-overview-waiting")

	p.run(t, chromedp.Click(chromedp.CSS(`tr[data-order="`+ref+`"] a`)))
	p.waitFor(t, `document.querySelector("#why") !== null`, "why the order waits")
	why := p.text(t, "#why")
	require.Contains(t, why, "Job create_key")
	require.Contains(t, why, "is retrying")
	require.Contains(t, p.text(t, "ol.timeline"), "attempt 1 failed")
	p.screenshots(t, "console-order-waiting")
}

// TestConsoleLiftsAnEarlyFraudWarningsRevocation: an order an early fraud
// warning revoked shows its revocation and why its keys no longer work;
// support lifts it from the page with a reason, the admin API's
// implementation restores the order, and the audit log keeps the reason.
func TestConsoleLiftsAnEarlyFraudWarningsRevocation(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin(), withPolicy(func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true }))
	s, _ := b.Buy(t, "grace@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	efw := fulfillertest.NewID("issfr_")
	b.Deliver(t, fulfillertest.Event(t, "radar.early_fraud_warning.created", mustJSON(t, map[string]any{
		"id": efw, "object": "radar.early_fraud_warning", "charge": b.charge(t, s.PaymentIntent, ""),
		"payment_intent": s.PaymentIntent, "fraud_type": "made_with_stolen_card", "actionable": true,
	})))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	ref := logging.OrderRef(s.ID)

	p := consolePage(t, b)
	p.open(t, "/console/orders")
	p.run(t, chromedp.SetValue(chromedp.CSS("#q"), "ab"), chromedp.Click(chromedp.CSS(`form.search button[type="submit"]`)))
	p.waitFor(t, `document.querySelector(".notice.problem") !== null`, "the refused search")
	require.Contains(t, p.text(t, ".notice.problem"), "last 4 characters")
	p.screenshots(t, "console-search-refused")

	p.searchConsole(t, "grace@example.com")
	p.openFoundOrder(t, ref)
	require.Equal(t, "revoked", p.text(t, "#order-state"))
	require.Contains(t, p.text(t, "#revocations-heading + ul"), efw)
	p.openConsoleAction(t, "lift-"+efw)
	p.screenshots(t, "console-order-revoked-lift-form")
	p.confirmConsoleAction(t, "lift-revocation", "lift-"+efw, "the buyer proved the card is theirs")
	b.waitKeys(t, s.ID, "fulfilled", "active")
	require.Equal(t, efw, b.requireAudited(t, "lift-revocation", "the buyer proved the card is theirs").Detail["source_id"])

	p.open(t, "/console/orders/"+ref)
	require.Equal(t, "active", p.text(t, "#order-state"))
	timeline := p.text(t, "ol.timeline")
	require.Contains(t, timeline, "Stripe event radar.early_fraud_warning.created", "the warning's event, about its own object")
	require.Contains(t, timeline, "Job resolve_revocation", "the revocation's jobs")
	require.Contains(t, timeline, "Job sync_key", "the key's writes, by its Luarmor key")
	require.Contains(t, timeline, "Job lift_revocation")
	p.run(t, chromedp.Click(chromedp.CSS(`.unit details.action summary`)))
	p.screenshots(t, "console-order-key-action-form")
}
