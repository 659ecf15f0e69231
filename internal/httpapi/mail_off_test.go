package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
)

// Find my keys emails links, so without mail it is not there: every
// operation openapi.json marks x-present-when: mail refuses while mail is
// off, the API with 503 mail_not_configured (no Retry-After: waiting
// changes nothing) and the page with a 404 saying where keys are, and
// pages stop linking to it. With mail, the page is there and linked.
func TestFindMyKeysIsThereOnlyWithMail(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPIDocument())
	require.NoError(t, err)
	type operation struct{ method, path string }
	var marked []operation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Extensions["x-present-when"] == "mail" {
				marked = append(marked, operation{method, path})
			}
		}
	}
	require.ElementsMatch(t, []operation{{"POST", "/v1/key-lookup"}, {"POST", "/v1/my-keys"}, {"GET", "/my-keys"}}, marked)

	off := httptest.NewServer((&Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(off.Close)
	for _, op := range marked {
		body := map[string]string{"/v1/key-lookup": `{"email":"buyer@example.com"}`, "/v1/my-keys": `{"token":"x"}`}[op.path]
		req, err := http.NewRequestWithContext(context.Background(), op.method, off.URL+op.path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var answer map[string]string
		decodeErr := json.NewDecoder(resp.Body).Decode(&answer)
		require.NoError(t, resp.Body.Close())
		if strings.HasPrefix(op.path, "/v1/") {
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, op)
			require.NoError(t, decodeErr, op)
			require.Equal(t, "mail_not_configured", answer["code"], op)
			require.Contains(t, answer["error"], "SMTP_URL, MAIL_FROM, PUBLIC_BASE_URL", op)
			require.Empty(t, resp.Header.Get("Retry-After"), "configuration, not an outage: %v", op)
			require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), op)
			continue
		}
		require.Equal(t, http.StatusNotFound, resp.StatusCode, op)
	}
	a := ask(t, http.MethodGet, off.URL+"/my-keys")
	require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
	require.Contains(t, a.body, "Keys by email are not available at this shop")
	require.Contains(t, a.body, "Contact the shop's support")
	require.NotContains(t, a.body, `id="lookup-form"`, "no form that cannot work")
	for _, path := range []string{"/nope", "/orders/not-a-session"} {
		page := ask(t, http.MethodGet, off.URL+path).body
		require.NotContains(t, page, "/my-keys", path)
		require.NotContains(t, page, "find your keys with your email", path)
	}

	sender := mail.NewSender(mail.Settings{SMTP: mail.SMTPServer{Host: "127.0.0.1", Port: 2525}, From: "keys@shop.example",
		PublicBaseURL: "https://shop.example"})
	on := httptest.NewServer((&Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler), Mail: sender}).Handler())
	t.Cleanup(on.Close)
	a = ask(t, http.MethodGet, on.URL+"/my-keys")
	require.Equal(t, http.StatusOK, a.status)
	require.Contains(t, a.body, `id="lookup-form"`)
	require.Contains(t, ask(t, http.MethodGet, on.URL+"/nope").body, `href="/my-keys"`)
}
