package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// The emails' HTML parts, as sent through the SMTP server, rendered in
// Chromium: no serious or critical accessibility violation.

func TestKeysEmailPassesTheAccessibilityCheck(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	_, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2}, stripefake.Item{PriceID: priceLife, Quantity: 1})
	require.Len(t, o.Keys, 3)
	e := parseEmail(t, b.waitMessages(t, 1)[0].Data)
	checkEmail(t, "keys", e.html)
}

func TestFindMyKeysEmailPassesTheAccessibilityCheck(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, defaultMail, "").status)
	e := parseEmail(t, b.waitLookupMessages(t, 1)[0].Data)
	checkEmail(t, "find-my-keys", e.html)
}
