package app_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// phone is the viewport of a phone: 390 x 844 CSS pixels.
const phoneViewportWidth, phoneViewportHeight = 390, 844

// userKeys are an order's keys, in the order its page shows them.
func userKeys(o httpapi.OrderJSON) []string {
	var keys []string
	for _, k := range o.Keys {
		keys = append(keys, k.UserKey)
	}
	return keys
}

// shownText is a key's or loader line's element as the browser lays it out.
type shownText struct {
	Text   string `json:"text"`
	Value  string `json:"value"`
	Scroll int    `json:"scroll"`
	Client int    `json:"client"`
	Font   string `json:"font"`
}

func TestOrderPageShowsEveryKeyWholeOnAPhone(t *testing.T) {
	t.Parallel()
	b, p := setupHWIDPage(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 3})
	keys := userKeys(o)
	require.Len(t, keys, 3)

	p.open(t, "/orders/"+s.ID)
	p.run(t, chromedp.WaitVisible(chromedp.CSS(`section.order[data-state="delivered"]`)))
	p.run(t, chromedp.EmulateViewport(phoneViewportWidth, phoneViewportHeight))
	shown := func(selector string) []shownText {
		return eval[[]shownText](t, p, `Array.from(document.querySelectorAll(`+strconv.Quote(selector)+`), el => ({
			text: el.textContent, value: el.value, scroll: el.scrollWidth, client: el.clientWidth, font: getComputedStyle(el).fontFamily}))`)
	}
	for what, got := range map[string][]shownText{"key": shown("li.key .user-key"), "loader line": shown("li.key .loader-line")} {
		require.Len(t, got, 3, what)
		for i, el := range got {
			want := keys[i]
			if what == "loader line" {
				want = `script_key = "` + keys[i] + `";`
			}
			require.Equal(t, want, el.Text, "%s %d is shown whole", what, i+1)
			require.Equal(t, want, el.Value, "%s %d is what its Copy button copies", what, i+1)
			require.LessOrEqual(t, el.Scroll, el.Client, "%s %d fits its box on a phone: %+v", what, i+1, el)
			require.Contains(t, strings.ToLower(el.Font), "mono", "%s %d is monospaced", what, i+1)
		}
	}
	require.LessOrEqual(t, eval[int](t, p, `document.documentElement.scrollWidth - document.documentElement.clientWidth`), 0,
		"the page does not scroll sideways")
	require.Equal(t, "Copy key 2", eval[string](t, p, `document.querySelector('li.key:nth-child(2) button[data-copy^="key-"]').textContent`),
		"each Copy button names what it copies")
	require.Equal(t, "Copy loader line 2", eval[string](t, p, `document.querySelector('li.key:nth-child(2) button[data-copy^="loader-"]').textContent`))
	require.Equal(t, "License key", eval[string](t, p, `document.querySelector("li.key .user-key").labels[0].textContent`), "each key is labelled")
	p.screenshots(t, "three-keys")

	// Copy all keys: every usable key, one a line.
	require.False(t, eval[bool](t, p, `document.querySelector("button[data-copy-all]").hidden`), "offered with script on")
	p.run(t, chromedp.Click(chromedp.CSS(`button[data-copy-all]`)))
	p.waitFor(t, "navigator.clipboard.readText().then(text => text === "+strconv.Quote(strings.Join(keys, "\n"))+")", "the clipboard to hold all keys")
	require.Equal(t, "Copied", p.text(t, `button[data-copy-all]`))
	p.waitFor(t, `document.querySelector("button[data-copy-all]").textContent === "Copy all keys"`, "the button's name to come back")

	// One key of its own copies alone, as before.
	p.run(t, chromedp.Click(chromedp.CSS(`li.key:nth-child(3) button[data-copy^="key-"]`)))
	p.waitFor(t, "navigator.clipboard.readText().then(text => text === "+strconv.Quote(keys[2])+")", "the clipboard to hold key 3")
}
