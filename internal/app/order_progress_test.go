package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestPartlyDeliveredOrderShowsHowManyAreReadyAndAboutHowLong: the Luarmor
// budget is 3 requests per 20 s; the start-up credentials check takes one,
// two keys of a five-key order the others, and the rest wait for the
// window to roll. The page counts the keys ready, estimates the rest from
// the budget (3 keys at one per 6.7 s) and fills in as they arrive.
func TestPartlyDeliveredOrderShowsHowManyAreReadyAndAboutHowLong(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.LuarmorRateLimit, c.LuarmorRateWindow = 3, 20*time.Second }))
	select {
	case <-b.Main.Credentials.Checked():
	case <-time.After(30 * time.Second):
		t.Fatal("the start-up credentials check did not finish")
	}
	p := newPage(t, b)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 5})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitJobsUntil(t, "two keys", func() bool {
		return b.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND user_key IS NOT NULL`, s.ID) == 2
	})
	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, o.Keys, 2, "the budget is spent: the other keys wait")
	require.Equal(t, 3, o.KeysPending)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="partial"]`)))
	require.Equal(t, "2 of 5 ready", p.text(t, "section.order .progress p.lead"))
	require.Equal(t, "The rest should be ready in less than a minute; they appear here by themselves.", p.text(t, "section.order .progress p.muted"))
	require.Equal(t, []int{2, 5}, eval[[]int](t, p, `(b => [b.value, b.max])(document.querySelector("section.order progress"))`))
	require.Equal(t, "2 of 5 ready", eval[string](t, p,
		`document.getElementById(document.querySelector("section.order progress").getAttribute("aria-labelledby")).textContent`),
		"the bar is named by its count")
	require.NotContains(t, p.text(t, "section.order"), "more on the way")
	require.Equal(t, 2, eval[int](t, p, `document.querySelectorAll("li.key .user-key").length`))
	p.screenshots(t, "partial")

	// The rest arrive once the window rolls, without a reload.
	eval[bool](t, p, `window.sameDocument = true`)
	b.WaitOrder(t, s.ID, "fulfilled")
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	require.True(t, eval[bool](t, p, `window.sameDocument === true`))
	require.Equal(t, 5, eval[int](t, p, `document.querySelectorAll("li.key .user-key").length`))
	require.Zero(t, eval[int](t, p, `document.querySelectorAll("section.order progress").length`), "no progress once every key is there")
}
