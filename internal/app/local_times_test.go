package app_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// TestOrderPageShowsItsTimesInTheBuyersZone: the order's date and a key's
// expiry are written in UTC by the server and shown by the script in the
// browser's zone (Tokyo here), the zone named.
func TestOrderPageShowsItsTimesInTheBuyersZone(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	// The key's writers (the sale's check and label jobs among them) record
	// what Luarmor holds: let them finish before the expiry is set here.
	b.WaitJobsUntil(t, "the purchase's jobs to finish", func() bool {
		var busy int
		err := b.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'retryable')`).Scan(&busy)
		return err == nil && busy == 0
	})
	expire := time.Date(2031, time.March, 4, 20, 6, 0, 0, time.UTC) // 5 March in Tokyo
	_, err := b.Pool.Exec(context.Background(), `UPDATE order_keys SET auth_expire = $2 WHERE user_key = $1`, o.Keys[0].UserKey, expire.Unix())
	require.NoError(t, err)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	tokyo := time.FixedZone("JST", 9*3600)
	for what, c := range map[string]struct {
		selector string
		at       time.Time
	}{
		"order date": {`.purchase time.local-time`, time.Unix(o.Created, 0)},
		"expiry":     {`li.key dl time.local-time`, expire},
	} {
		el := `document.querySelector(` + strconv.Quote(c.selector) + `)`
		p.waitFor(t, el+`.dataset.localized === "1"`, what+" to be localised")
		require.Equal(t, c.at.UTC().Format(time.RFC3339), eval[string](t, p, el+`.getAttribute("datetime")`), what)
		require.Equal(t, c.at.UTC().Format("2 January 2006 15:04 UTC"), eval[string](t, p, el+`.title`), "%s: UTC stays as its title", what)
		shown := eval[string](t, p, el+`.textContent`)
		require.Contains(t, shown, "GMT+9", "%s names the zone", what)
		require.Contains(t, shown, c.at.In(tokyo).Format("03:04"), "%s is Tokyo's time", what)
		require.Contains(t, shown, strconv.Itoa(c.at.In(tokyo).Day()), "%s is Tokyo's day", what)
	}
	p.screenshots(t, "local-times")
}
