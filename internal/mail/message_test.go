package mail_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
	"fulfiller/internal/order"
)

func TestRenderEscapesHostileValues(t *testing.T) {
	expire := int64(1900000000)
	never := int64(-1)
	o := &order.Order{
		CheckoutSessionID: "cs_test_a/<b>",
		CustomerEmail:     `"<script>alert(1)</script>"@evil.example`,
		Keys: []order.Key{
			{UserKey: "KEY<img src=x onerror=alert(1)>", Status: order.KeyActive, KeyDays: 30, AuthExpire: &expire},
			{UserKey: "LIFETIMEKEY", Status: order.KeyActive, AuthExpire: &never},
			{UserKey: "PENDINGTIMER", Status: order.KeyActive, KeyDays: 7},
			{UserKey: "LIFETIMEKEY", Status: order.KeyActive, AuthExpire: &never}, // a second unit extended it
			{UserKey: "BANNEDKEY", Status: order.KeyBlacklisted, KeyDays: 7},
			{Status: order.KeyPending, KeyDays: 7},
		},
	}
	e := mail.NewKeysEmail(o, "https://shop.example", "ol_a/<b>", "id@shop.example")
	require.Len(t, e.Keys, 3, "each usable key once")
	require.Equal(t, "https://shop.example/orders/ol_a%2F%3Cb%3E", e.OrderURL, "the link is one path segment, never the session ID")
	require.Equal(t, "never", e.Keys[1].Expiry)
	require.Equal(t, "starts at first use (7 days)", e.Keys[2].Expiry)
	require.Equal(t, `script_key = "PENDINGTIMER";`, e.Keys[2].Loader)

	text, html, err := e.Render()
	require.NoError(t, err)
	require.Contains(t, text, `script_key = "KEY<img src=x onerror=alert(1)>";`, "plain text is shown as it is")
	require.NotContains(t, html, "<script>")
	require.NotContains(t, html, "<img")
	require.Contains(t, html, "&lt;script&gt;")
	require.Contains(t, html, "KEY&lt;img src=x onerror=alert(1)&gt;")
	require.NotContains(t, text+html, "BANNEDKEY")
	require.NotContains(t, text+html, "cs_test_", "the Checkout Session ID is no link: it cannot be revoked")
	require.Equal(t, 1, strings.Count(text, "LIFETIMEKEY\n"))
}

func TestKeyLookupEmailCarriesTheLinkInBothPartsAndEscapesTheAddress(t *testing.T) {
	t.Parallel()
	expiresAt := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	e := mail.NewKeyLookupEmail(`"<script>"@example.com`, "https://shop.example", "AbC-_123", "id@shop.example", expiresAt)
	require.Equal(t, "https://shop.example/my-keys#token=AbC-_123", e.LinkURL)

	text, html, err := e.Render()
	require.NoError(t, err)
	for _, part := range []string{text, html} {
		require.Contains(t, part, "https://shop.example/my-keys#token=AbC-_123")
		require.Contains(t, part, "1 March 2026 12:30 UTC")
	}
	require.Contains(t, text, `"<script>"@example.com`)
	require.NotContains(t, html, "<script>")
	require.Contains(t, html, "&lt;script&gt;")
}
