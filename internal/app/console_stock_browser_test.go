package app_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// luarmorCalls counts the Luarmor requests the fleet has recorded.
func (b *bundle) luarmorCalls(t *testing.T) int {
	t.Helper()
	return b.Count(t, `SELECT count(*) FROM luarmor_calls`)
}

// TestConsoleOverviewDrawsTheLuarmorBudget: after a purchase, the
// overview's chart has a bar for the minute of its Luarmor requests, its
// figures add up to the requests recorded, and the budget's line stands
// at LUARMOR_RATE_LIMIT, Luarmor's own 60 a minute here (or is named
// above the chart when the hour's requests are too few to draw beside it).
func TestConsoleOverviewDrawsTheLuarmorBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin(), withConfig(func(c *config.Config) { c.LuarmorRateLimit, c.LuarmorRateWindow = 60, time.Minute }))
	b.Buy(t, "ivy@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 2})
	b.waitIdle(t)
	var lastMinute string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		`SELECT to_char(max(taken_at) AT TIME ZONE 'UTC', 'HH24:MI') FROM luarmor_calls`).Scan(&lastMinute))
	before := b.luarmorCalls(t)
	require.Positive(t, before, "the purchase called Luarmor")

	p := consolePage(t, b)
	p.open(t, "/console/")
	after := b.luarmorCalls(t)
	bars := eval[[]map[string]string](t, p, `[...document.querySelectorAll("#budget-chart rect.budget-bar")].map(r =>
		({minute: r.dataset.minute, calls: r.dataset.calls, height: r.getAttribute("height")}))`)
	require.Len(t, bars, 60, "one bar a minute over the last hour")
	sum := 0
	var purchaseMinute map[string]string
	for _, bar := range bars {
		n, err := strconv.Atoi(bar["calls"])
		require.NoError(t, err)
		sum += n
		if bar["minute"] == lastMinute {
			purchaseMinute = bar
		}
	}
	require.NotNil(t, purchaseMinute, "the minute of the purchase's last request (%s) is drawn", lastMinute)
	require.NotEqual(t, "0", purchaseMinute["calls"])
	require.NotEqual(t, "0", purchaseMinute["height"], "its bar has a height: %v", purchaseMinute)
	total, err := strconv.Atoi(eval[string](t, p, `document.querySelector("#budget-chart").dataset.total`))
	require.NoError(t, err)
	require.Equal(t, sum, total, "the bars add up to the hour's total")
	require.GreaterOrEqual(t, total, before)
	require.LessOrEqual(t, total, after)
	require.Equal(t, "60", eval[string](t, p, `document.querySelector("#budget-chart").dataset.budget`), "LUARMOR_RATE_LIMIT 60/1m")
	// The line is drawn unless the hour's busiest minute is under a
	// twentieth of the budget (the purchase's requests may fall in two
	// minutes): then the bars are scaled to that minute and the caption
	// says the budget is above the chart.
	peak, err := strconv.Atoi(eval[string](t, p, `document.querySelector("#budget-chart").dataset.peak`))
	require.NoError(t, err)
	line := eval[bool](t, p, `document.querySelector("#budget-chart line.budget-line") !== null`)
	caption := p.text(t, "#budget-heading + figure figcaption")
	require.Contains(t, caption, "budget: 60 a minute")
	if 20*peak >= 60 {
		require.True(t, line, "the budget's line is drawn at a peak of %d", peak)
		require.NotContains(t, caption, "above the chart's top")
	} else {
		require.False(t, line, "a peak of %d is scaled to, with the budget's line off the chart", peak)
		require.Contains(t, caption, "above the chart's top")
	}
	desc := eval[string](t, p, `document.querySelector("#budget-desc").textContent`)
	require.Contains(t, desc, strconv.Itoa(total)+" Luarmor requests")
	require.Contains(t, desc, "none answered 429")
	require.Contains(t, eval[string](t, p, `document.querySelector("#budget-table").textContent`), lastMinute,
		"the table for screen readers lists the minute")
	p.screenshots(t, "console-overview-budget")
}

// TestConsoleStockPageFollowsARefillAndAReconciliation: the stock page
// shows the stocked price against its target; a sale's refill, slowed by
// Luarmor, shows as under way with its progress while the page refreshes
// itself, and a refill asked from the page joins it; the stock is back at
// its target when it finishes. A reconciliation asked from the page shows
// its result. Both are in the audit log with their reasons.
func TestConsoleStockPageFollowsARefillAndAReconciliation(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 2, withAdminLogin())
	p := consolePage(t, b)
	p.open(t, "/console/stock")
	row := `tr[data-price="` + priceStocked + `"]`
	require.Equal(t, "2", eval[string](t, p, `document.querySelector('`+row+`').dataset.ready`))
	require.Equal(t, "2", eval[string](t, p, `document.querySelector('`+row+`').dataset.target`))
	require.Contains(t, p.text(t, row), "target 2")
	p.screenshots(t, "console-stock")

	// A sale takes a key from the stock; making its replacement waits on
	// Luarmor long enough for the page to see it under way on a busy
	// machine (it refreshes every 2 s).
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultLatency,
		Latency: 12 * time.Second, Times: 1})
	b.Buy(t, "jay@example.com", stripefake.Item{PriceID: priceStocked, Quantity: 1})
	p.open(t, "/console/stock")
	p.waitFor(t, `document.querySelector('#stock-live[data-running] [data-operation="refill_stock"]') !== null`, "the sale's refill under way")
	require.Contains(t, p.submitConsoleAction(t, "refill", "refill-"+priceStocked, "restock before the weekend sale"), "The refill is queued")
	p.waitFor(t, `document.querySelector('[data-operation="refill_stock"] .progress-line') !== null`, "the refill's progress")
	require.Contains(t, p.text(t, `[data-operation="refill_stock"]`), priceStocked)
	p.screenshots(t, "console-stock-refill-running")
	// The page refreshes itself, without a reload, until the refill ends.
	eval[bool](t, p, `(window.stockPageMark = true)`)
	p.waitFor(t, `document.querySelector("#stock-live") !== null && !document.querySelector("#stock-live").hasAttribute("data-running")`,
		"the refill to finish on the page")
	require.True(t, eval[bool](t, p, `window.stockPageMark === true`), "refreshed in place, not reloaded")
	require.Equal(t, "2", eval[string](t, p, `document.querySelector('`+row+`').dataset.ready`), "back at its target")
	require.Contains(t, p.text(t, "#operations-heading"), "0")
	p.screenshots(t, "console-stock-refill-done")

	require.Contains(t, p.submitConsoleAction(t, "reconcile", "reconcile", "checking the stock after the dashboard clean-up"),
		"stock reconciliation is queued")
	p.waitFor(t, `document.querySelector("#reconcile-result").textContent.includes("asked by admin:`+adminUser+`")`,
		"the reconciliation's result")
	result := p.text(t, "#reconcile-result")
	require.Contains(t, result, "2 stock keys in Luarmor: 2 known")
	p.screenshots(t, "console-stock-reconciled")

	entries, err := postgres.ListAudit(context.Background(), b.Pool, postgres.AuditQuery{Limit: 10})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(entries), 2)
	require.Equal(t, "stock-reconcile", entries[0].Action)
	require.Equal(t, "checking the stock after the dashboard clean-up", entries[0].Reason)
	require.Equal(t, "admin:"+adminUser, entries[0].Actor)
	require.Equal(t, "stock-refill", entries[1].Action)
	require.Equal(t, "restock before the weekend sale", entries[1].Reason)
	require.Equal(t, priceStocked, entries[1].Detail["price_id"])
}

// TestConsoleStockActionsNeedAConfirmedReason: each stock action without a
// reason, or without its confirmation, is refused and does nothing; a
// deletion of a price the catalog still stocks is refused with why.
func TestConsoleStockActionsNeedAConfirmedReason(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1, withAdminLogin())
	for _, action := range []string{"refill", "reconcile", "delete"} {
		status, _, body := b.consoleForm(t, "/console/stock/actions/"+action,
			url.Values{"price_id": {priceStocked}, "confirm": {"yes"}})
		require.Equal(t, http.StatusBadRequest, status, "%s without a reason", action)
		require.Contains(t, body, "give a reason")
		status, _, body = b.consoleForm(t, "/console/stock/actions/"+action,
			url.Values{"price_id": {priceStocked}, "reason": {"tidying"}})
		require.Equal(t, http.StatusBadRequest, status, "%s without the confirmation", action)
		require.Contains(t, body, "tick the confirmation")
	}
	status, _, body := b.consoleForm(t, "/console/stock/actions/delete",
		url.Values{"price_id": {priceStocked}, "reason": {"tidying"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, body, "is stocked in the catalog")
	status, _, _ = b.consoleForm(t, "/console/stock/actions/refill", url.Values{"price_id": {priceStocked}, "reason": {"tidying"}, "confirm": {"yes"}},
		"Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status, "a cross-site form is refused")
	entries, err := postgres.ListAudit(context.Background(), b.Pool, postgres.AuditQuery{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, entries, "nothing refused is in the audit log")

	p := consolePage(t, b)
	p.open(t, "/console/stock")
	p.run(t, chromedp.Click(chromedp.CSS(`details.action:has(#reason-reconcile) summary`)),
		chromedp.Click(chromedp.CSS("#confirm-reconcile")),
		chromedp.Click(chromedp.CSS(`details.action:has(#reason-reconcile) button[type="submit"]`)))
	require.False(t, eval[bool](t, p, `document.querySelector("#reason-reconcile").checkValidity()`), "the browser asks for the reason")
	require.True(t, eval[bool](t, p, `document.querySelector(".notice") === null`), "nothing was sent")
	p.screenshots(t, "console-stock-reconcile-form")
}
