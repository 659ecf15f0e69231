package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// Find my keys emails a link, so it is there only with mail. Without it
// (no SMTP settings, the default) no page links to it, its page says keys
// by email are not available here and where the keys are, and its API
// answers 503 mail_not_configured, queueing nothing.
func TestFindMyKeysWithoutMailIsNotOffered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})

	status, _, page := send(t, http.MethodGet, b.URL+"/orders/"+s.ID, "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, o.Keys[0].UserKey)
	require.NotContains(t, page, "/my-keys", "no link to what cannot work")
	_, _, notFound := send(t, http.MethodGet, b.URL+"/orders/not-a-session", "", nil)
	require.NotContains(t, notFound, "/my-keys")

	status, header, page := send(t, http.MethodGet, b.URL+"/my-keys", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "text/html; charset=utf-8", header.Get("Content-Type"))
	require.Contains(t, page, "Keys by email are not available at this shop")
	require.Contains(t, page, "Your keys are on your order page")
	require.Contains(t, page, "Contact the shop's support")
	require.NotContains(t, page, `id="lookup-form"`)

	for _, c := range []struct{ path, body string }{
		{"/v1/key-lookup", `{"email":"` + defaultMail + `"}`},
		{"/v1/my-keys", `{"token":"anything"}`},
	} {
		a := b.call(t, http.MethodPost, c.path, c.body, "", "")
		require.Equal(t, http.StatusServiceUnavailable, a.status, c.path)
		require.Equal(t, "mail_not_configured", a.code(t), c.path)
		require.Contains(t, string(a.body), "SMTP_URL", c.path)
		require.Empty(t, a.header.Get("Retry-After"), "%s: configuration, not an outage", c.path)
	}
	require.Equal(t, 0, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'send_key_lookup_email'`))
	require.Equal(t, 0, b.Count(t, `SELECT count(*) FROM key_lookup_emails`)+b.Count(t, `SELECT count(*) FROM key_lookup_requests`), "nothing recorded")
}

// With mail, the order page points to find my keys and its page is the
// form.
func TestFindMyKeysWithMailIsOffered(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})

	_, _, page := send(t, http.MethodGet, b.URL+"/orders/"+s.ID, "", nil)
	require.Contains(t, page, `<a href="/my-keys">`)
	status, _, page := send(t, http.MethodGet, b.URL+"/my-keys", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, `id="lookup-form"`)
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, defaultMail, "").status)
}
