package app_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/outbound"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestConsoleDeliveryLogShowsAFailedDeliveryAndReplaysIt: the shop's
// backend fails a sale's event twice (500), then refuses it (422), so the
// delivery fails. The operator finds it in the console's delivery log,
// filtered to failures, with its last answer and its order; the order's
// timeline links to it; its page shows the body sent and every attempt.
// Once the backend is fixed, the operator replays it with a reason: the
// page shows it pending while the replay's attempt is under way, then
// delivered, refreshing itself. The receiver got the same event each
// time, and the audit log keeps the reason.
func TestConsoleDeliveryLogShowsAFailedDeliveryAndReplaysIt(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	fixed := false
	release := make(chan struct{})
	rc := startReceiver(t, func(n int, _ *http.Request) int {
		mu.Lock()
		ok := fixed
		mu.Unlock()
		switch {
		case ok:
			<-release // the replay's attempt waits while the page shows it pending
			return http.StatusOK
		case n <= 2:
			return http.StatusInternalServerError
		}
		return http.StatusUnprocessableEntity
	})
	var released sync.Once
	releaseAttempt := func() { released.Do(func() { close(release) }) }
	t.Cleanup(releaseAttempt) // before the receiver closes, should the test stop early
	b := setup(t, withAdminLogin(), withWebhooks(rc, func(s *outbound.Settings) { s.Events = []outbound.EventType{outbound.OrderFulfilled} }))
	s, o := b.Buy(t, "erin@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ref, key := logging.OrderRef(s.ID), o.Keys[0].UserKey
	d := b.waitDelivery(t, outbound.OrderFulfilled, "failed")
	receiverHost := strings.TrimPrefix(rc.URL, "http://")

	p := consolePage(t, b)
	p.open(t, "/console/")
	p.run(t, chromedp.Click(chromedp.CSS(`nav a[href="/console/deliveries"]`)))
	p.waitFor(t, `document.querySelector("h1").textContent === "Deliveries" && `+consoleParsed, "the delivery log")
	p.run(t, chromedp.SetValue(chromedp.CSS("#filter-status"), "failed"), chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	p.waitFor(t, `location.search.includes("status=failed") && `+consoleParsed, "the failed deliveries")
	row := `tr[data-delivery="` + strconv.FormatInt(d.ID, 10) + `"]`
	rows := eval[[]string](t, p, `[...document.querySelectorAll("tr[data-delivery]")].map(r => r.dataset.status)`)
	require.Equal(t, []string{"failed"}, rows, "the filter lists the failed delivery only")
	text := p.text(t, row)
	require.Contains(t, text, "order.fulfilled")
	require.Contains(t, text, d.EventID)
	require.Contains(t, text, "webhook "+receiverHost, "the webhook named by its host")
	require.NotContains(t, text, "/hooks/fulfiller", "the webhook's path stays out of the log")
	require.Contains(t, p.text(t, row+" .last-answer"), "HTTP 422")
	require.Contains(t, text, ref)
	p.screenshots(t, "console-deliveries")

	// The order's timeline links to its delivery.
	p.run(t, chromedp.Click(chromedp.CSS(row+` a[href="/console/orders/`+ref+`"]`)))
	p.waitFor(t, `document.querySelector("h1").textContent === "Order `+ref+`" && `+consoleParsed, "the order's page")
	require.Contains(t, p.text(t, "ol.timeline"), "Event order.fulfilled to webhook "+receiverHost)
	p.run(t, chromedp.Click(chromedp.CSS(`ol.timeline a[href="/console/deliveries/`+strconv.FormatInt(d.ID, 10)+`"]`)))
	p.waitFor(t, `document.querySelector("#delivery-status") !== null && `+consoleParsed, "the delivery's page")
	require.Equal(t, "failed", p.text(t, "#delivery-status"))
	require.Equal(t, "3", p.text(t, "#delivery-attempts"))
	answers := eval[[]string](t, p, `[...document.querySelectorAll("tr.attempt .answer")].map(e => e.textContent)`)
	require.Equal(t, []string{"HTTP 500", "HTTP 500", "HTTP 422"}, answers)
	require.Contains(t, p.text(t, "table.attempts"), "the receiver answered 422, refusing the event")
	body := p.text(t, "#delivery-body")
	require.Contains(t, body, `"id": "`+d.EventID+`"`, "the body as sent, indented")
	require.Contains(t, body, `"order_ref": "`+ref+`"`)
	require.Contains(t, body, outbound.KeyLast4(key), "the key by its last characters")
	html := eval[string](t, p, `document.documentElement.outerHTML`)
	require.NotContains(t, html, key, "no whole key in the page")
	require.NotContains(t, html, s.ID, "no Checkout Session ID in the page")
	require.Empty(t, eval[string](t, p, `document.querySelector("#delivery-live").dataset.running || ""`), "a failed delivery is not followed")
	p.screenshots(t, "console-delivery-failed")

	mu.Lock()
	fixed = true
	mu.Unlock()
	notice := p.submitConsoleAction(t, "replay-delivery", "replay", "the backend's validation is fixed")
	require.Contains(t, notice, "queued again")
	p.waitFor(t, consoleParsed, "the delivery's page after the replay")
	require.Equal(t, "pending", p.text(t, "#delivery-status"), "the replay's attempt is under way")
	b.requireAudited(t, "replay-delivery", "the backend's validation is fixed")
	releaseAttempt()
	p.waitFor(t, `document.querySelector("#delivery-status").textContent === "delivered"`, "the page refreshed to the delivery")
	answers = eval[[]string](t, p, `[...document.querySelectorAll("tr.attempt .answer")].map(e => e.textContent)`)
	require.Equal(t, []string{"HTTP 500", "HTTP 500", "HTTP 422", "HTTP 200"}, answers)
	require.Equal(t, "4 (replayed 1 time)", p.text(t, "#delivery-attempts"))
	require.Contains(t, p.location(t), "?done=replay-delivery", "refreshed in place, not reloaded")
	got := rc.ofType(outbound.OrderFulfilled)
	require.Len(t, got, 4)
	for _, g := range got {
		require.Equal(t, d.EventID, g.event.ID, "the same event on every attempt and the replay")
		require.NoError(t, g.verified)
	}
	p.screenshots(t, "console-delivery-replayed")

	// The delivered one is listed as such.
	p.open(t, "/console/deliveries?"+url.Values{"status": {"delivered"}, "type": {"order.fulfilled"}}.Encode())
	require.Contains(t, p.text(t, row), "delivered")
}
