package app_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// luarmorSlots counts the requests that reached Luarmor and the slots of
// the fleet's budget taken: every request takes one.
func (b *bundle) luarmorSlots(t *testing.T) (sent, slots int) {
	t.Helper()
	return len(b.Luarmor.Calls()), b.Count(t, `SELECT count(*) FROM luarmor_calls`)
}

// The overview shows doctor's checks as last run, and runs them only when
// the operator asks: visits spend no Luarmor or Stripe call, a run's
// Luarmor reads take slots of the fleet's budget, and each check shows
// its verdict and what to do.
func TestConsoleOverviewRunsDoctorsChecksOnDemand(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	b.Buy(t, "alice@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.waitIdle(t)
	p := consolePage(t, b)

	sent, slots := b.luarmorSlots(t)
	stripeCalls := len(b.Stripe.Requests())
	p.open(t, "/console/")
	require.Contains(t, p.text(t, "#checks"), "Not run since this service started")
	p.screenshots(t, "console-doctor-not-run")
	p.open(t, "/console/")
	nowSent, nowSlots := b.luarmorSlots(t)
	require.Equal(t, sent, nowSent, "a visit calls no Luarmor")
	require.Equal(t, slots, nowSlots)
	require.Len(t, b.Stripe.Requests(), stripeCalls, "a visit calls no Stripe")

	p.run(t, chromedp.Click(chromedp.CSS("#run-checks")))
	p.waitFor(t, `document.querySelector("#checks-table") !== null && `+consoleParsed, "the checks' verdicts")
	require.Contains(t, p.text(t, ".notice.ok"), "The checks ran")
	require.Contains(t, p.text(t, "#checks-summary"), "by admin:"+adminUser)
	verdicts := eval[map[string]string](t, p, `Object.fromEntries([...document.querySelectorAll("#checks-table tbody tr")].map(r => [r.dataset.check, r.dataset.status]))`)
	for _, check := range []string{"database", "luarmor api", "luarmor key", "luarmor capacity", "webhook secret", "shop webhooks", "discord channel"} {
		require.Equal(t, "ok", verdicts[check], "%s: %v", check, verdicts)
	}
	require.Equal(t, "warn", verdicts["stripe key"], "a test-mode key is worth a look")
	require.Contains(t, p.text(t, `tr[data-check="stripe key"] .check-message`), "set the live key", "the message says what to do")
	p.screenshots(t, "console-doctor")

	afterSent, afterSlots := b.luarmorSlots(t)
	require.Greater(t, afterSent, nowSent, "the run read Luarmor")
	require.Equal(t, afterSent-nowSent, afterSlots-nowSlots, "every Luarmor read of the run took a slot of the budget")
	summary := p.text(t, "#checks-summary")
	stripeCalls = len(b.Stripe.Requests())
	p.open(t, "/console/")
	require.Equal(t, summary, p.text(t, "#checks-summary"), "the last run is shown again")
	sent, slots = b.luarmorSlots(t)
	require.Equal(t, afterSent, sent, "showing the last run calls nothing")
	require.Equal(t, afterSlots, slots)
	require.Len(t, b.Stripe.Requests(), stripeCalls)

	// Another site cannot make the console run them.
	status, _, _ := b.consoleForm(t, "/console/checks", url.Values{}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status)
	status, header, _ := b.consoleForm(t, "/console/checks", url.Values{})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/?done=checks#checks-heading", header.Get("Location"))
}
