package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/shop"
	"fulfiller/internal/stripeapi/stripefake"
)

const hwidSupportAddress = "help@keys.example"

// setupHWIDPage is a service whose shop names a support address, and a
// browser tab at desktop size in Tokyo's time zone.
func setupHWIDPage(t *testing.T) (*bundle, *page) {
	t.Helper()
	b := setup(t, withConfig(func(c *config.Config) {
		c.Shop = shop.Identity{Name: "Acme", Support: shop.Contact{Email: hwidSupportAddress}}
	}))
	p := newPage(t, b)
	_, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"})
	require.NoError(t, err, "emulating Tokyo's time zone")
	return b, p
}

const (
	resetButton   = `document.querySelector("li.key button.reset-hwid")`
	resetConfirm  = `document.querySelector("li.key .hwid-confirm")`
	resetAlert    = `document.querySelector('li.key .hwid [role="alert"]')`
	resetComplete = `document.querySelector('li.key[data-hwid-status="done"]') !== null`
)

func TestOrderPageConfirmsTheHWIDResetAndShowsTheCooldownInLocalTime(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, key := b.boughtKey(t)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.True(t, eval[bool](t, p, `!`+resetButton+`.disabled && `+resetConfirm+`.hidden`), "a reset is offered, unconfirmed")

	// Clicking asks first, naming the cooldown; cancelling sends nothing.
	p.run(t, chromedp.Click(chromedp.CSS(`li.key button.reset-hwid`)))
	p.waitFor(t, `!`+resetConfirm+`.hidden`, "the confirmation")
	require.Contains(t, p.text(t, "li.key .hwid-confirm p"), "You cannot reset it again for 24 hours.")
	p.screenshots(t, "hwid-confirm")
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.cancel-reset`)))
	p.waitFor(t, resetConfirm+`.hidden && !`+resetButton+`.hidden`, "the confirmation to close")
	time.Sleep(300 * time.Millisecond) // a request sent by mistake would have arrived
	require.Zero(t, b.Count(t, `SELECT count(*) FROM hwid_resets`), "cancel reserved no reset")
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.ResetHWIDArgs{}, nil)
	require.Zero(t, b.user(t, key).TotalResets)

	// Confirming resets.
	p.run(t, chromedp.Click(chromedp.CSS(`li.key button.reset-hwid`)))
	p.waitFor(t, `!`+resetConfirm+`.hidden`, "the confirmation")
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.confirm-reset`)))
	p.waitFor(t, `document.querySelector("li.key .hwid-result").textContent.startsWith("HWID reset requested.")`, "the reset to be accepted")
	h := b.waitReset(t, s.ID, key, "done")
	require.NotNil(t, h.NextResetAt)
	require.Equal(t, 1, b.user(t, key).TotalResets)
	require.Equal(t, 1, b.Count(t, `SELECT resets FROM hwid_resets`))

	// The cooldown's end, in the buyer's zone with the zone named, from
	// the machine-readable time the server wrote.
	p.waitFor(t, resetComplete, "the page to show the reset done")
	iso := time.Unix(*h.NextResetAt, 0).UTC().Format(time.RFC3339)
	p.waitFor(t, `document.querySelector("li.key .hwid p.muted time.local-time").dataset.localized === "1"`, "the time to be localised")
	require.Equal(t, iso, eval[string](t, p, `document.querySelector("li.key .hwid p.muted time.local-time").getAttribute("datetime")`))
	local := p.text(t, "li.key .hwid p.muted time.local-time")
	require.Contains(t, local, "GMT+9", "the zone is named")
	tokyo := time.Unix(*h.NextResetAt, 0).In(time.FixedZone("JST", 9*3600))
	require.Contains(t, local, tokyo.Format("03:04"), "the time is Tokyo's")
	require.Contains(t, eval[string](t, p, `document.querySelector("li.key .hwid p.muted time.local-time").title`), "UTC")
	p.screenshots(t, "hwid-cooldown-local")
}

func TestOrderPageWithoutScriptShowsTheCooldownInUTC(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	h := b.waitReset(t, s.ID, key, "done")
	page := b.call(t, http.MethodGet, "/orders/"+s.ID, "", "", "")
	want := `<time class="local-time" datetime="` + time.Unix(*h.NextResetAt, 0).UTC().Format(time.RFC3339) + `">` +
		time.Unix(*h.NextResetAt, 0).UTC().Format("2 January 2006 15:04 MST") + `</time>`
	require.Contains(t, string(page.body), want)
}

func TestHWIDResetOfANeverBoundKeyIsRefusedWithoutSpendingTheCooldown(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	require.Empty(t, b.user(t, key).Identifier, "the key never ran")
	// A key whose binding the service never read (sold before it kept
	// bindings) is offered the reset, which finds out.
	b.waitIdle(t)
	_, err := b.Pool.Exec(t.Context(), `UPDATE ledger_keys SET hwid_bound = NULL, hwid_checked_at = NULL`)
	require.NoError(t, err)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	p.run(t, chromedp.Click(chromedp.CSS(`li.key button.reset-hwid`)))
	p.waitFor(t, `!`+resetConfirm+`.hidden`, "the confirmation")
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.confirm-reset`)))

	h := b.waitReset(t, s.ID, key, "failed")
	require.Equal(t, jobs.HWIDNotSetMessage, h.Message)
	require.Nil(t, h.NextResetAt, "the cooldown is not spent: a reset is allowed now")
	require.Zero(t, b.user(t, key).TotalResets, "Luarmor was not asked to reset")

	p.waitFor(t, `document.querySelector('li.key[data-hwid-status="failed"]') !== null`, "the page to show the refusal")
	alert := p.text(t, `li.key .hwid [role="alert"]`)
	require.Contains(t, alert, "not bound to a computer yet")
	require.Contains(t, alert, hwidSupportAddress)
	// The refusal read the key: known unbound now, it offers no reset
	// until the service sees it bound.
	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`li.key .hwid-unbound`)))
	require.Contains(t, p.text(t, "li.key .hwid-unbound"), "nothing to reset")
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("li.key button.reset-hwid").length`))
	p.screenshots(t, "hwid-not-bound")
}

func TestOrderPageShowsAFailedHWIDResetAsAnAlertWithTheSupportContact(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, key := b.boughtKey(t)
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/resethwid", Kind: sandbox.FaultRefuse})

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	p.run(t, chromedp.Click(chromedp.CSS(`li.key button.reset-hwid`)))
	p.waitFor(t, `!`+resetConfirm+`.hidden`, "the confirmation")
	p.run(t, chromedp.Click(chromedp.CSS(`li.key .hwid-confirm button.confirm-reset`)))
	b.waitReset(t, s.ID, key, "failed")

	p.waitFor(t, resetAlert+` !== null`, "the failure alert")
	alert := p.text(t, `li.key .hwid [role="alert"]`)
	require.Contains(t, alert, "The last HWID reset failed")
	require.Contains(t, alert, hwidSupportAddress)
	require.True(t, eval[bool](t, p, resetAlert+`.classList.contains("danger")`), "styled as an error")
	require.False(t, eval[bool](t, p, `document.querySelector("li.key h3").contains(`+resetAlert+`)`), "not in the key's heading")
	require.Equal(t, "mailto:"+hwidSupportAddress, eval[string](t, p, resetAlert+`.querySelector("a").getAttribute("href")`))
	p.screenshots(t, "hwid-failed")

}
