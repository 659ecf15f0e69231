package httpapi

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func renderSection(t *testing.T, v orderView) string {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, templates.ExecuteTemplate(&out, "order-section", &v))
	return out.String()
}

func TestPartlyDeliveredOrderShowsItsKeysAndHowManyAreOnTheWay(t *testing.T) {
	t.Parallel()
	expire := time.Date(2027, 3, 4, 5, 6, 0, 0, time.UTC).Unix()
	o := &order.Order{CheckoutSessionID: sessionID, Status: order.StatusPending, Keys: []order.Key{
		{UserKey: "KEYDELIVERED0001", Status: order.KeyActive, KeyDays: 30, AuthExpire: &expire, DiscordLink: order.DiscordInUse},
		{Status: order.KeyPending, KeyDays: 30},
		{Status: order.KeyPending, KeyDays: 30},
	}}
	v, err := newOrderView(o, sessionID, time.Now())
	require.NoError(t, err)
	require.Equal(t, statePartial, v.State)
	require.Equal(t, "pending|1|", v.Signature, "the script compares this with the order API's status and key count")
	html := renderSection(t, v)
	require.Contains(t, html, "1 of 3 ready")
	require.Contains(t, html, `<progress max="3" value="1"`)
	require.Contains(t, html, `data-usable>KEYDELIVERED0001</output>`)
	require.Contains(t, html, `>script_key = &#34;KEYDELIVERED0001&#34;;</output>`)
	require.Contains(t, html, "4 March 2027 05:06 UTC")
	require.Contains(t, html, "Redeem button")
	require.NotContains(t, html, "data-final", "a pending order is watched")
}

func TestResetButtonFollowsTheKeysCooldown(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC).Unix()
	last, next := now-3600, now+3600
	for name, tc := range map[string]struct {
		reset   *hwidReset
		allowed bool
		text    string
	}{
		"never reset (or an API without hwid_reset)": {nil, true, "Reset the key&#39;s HWID"},
		"queued":              {&hwidReset{Status: "queued"}, false, "HWID reset requested"},
		"done, cooling down":  {&hwidReset{Status: "done", LastResetAt: &last, NextResetAt: &next}, false, `The next reset is allowed at <time class="local-time" datetime="2027-01-01T13:00:00Z">1 January 2027 13:00 UTC</time>.`},
		"done, cooldown over": {&hwidReset{Status: "done", LastResetAt: &last}, true, "HWID reset done at 1 January 2027 11:00 UTC."},
		"failed":              {&hwidReset{Status: "failed", Message: "Luarmor refused the reset"}, true, `<div class="notice danger hwid-error" role="alert"><p class="hwid-error-text">The last HWID reset failed: Luarmor refused the reset.</p>`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k := keyView{UserKey: "K", Status: "active", HWIDReset: tc.reset, KeyStateJSON: KeyStateJSON{State: "active"}}
			require.Equal(t, tc.allowed, k.ResetAllowed(now))
			v := orderView{ID: sessionID, Ref: "ord_x", State: stateDelivered, Final: true, Keys: []keyView{k}, Now: now}
			html := renderSection(t, v)
			require.Contains(t, html, tc.text)
			require.Equal(t, !tc.allowed, bytes.Contains([]byte(html), []byte(" disabled>Reset HWID")), html)
		})
	}
}
