package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/shop"
)

// requireErrorPage checks an answer is the site's styled page for status:
// the layout, the shop's header and support contact, the pages' headers.
func requireErrorPage(t *testing.T, a answer, status int, heading string) {
	t.Helper()
	require.Equal(t, status, a.status, a.body)
	require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	require.Contains(t, a.header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, "no-referrer", a.header.Get("Referrer-Policy"))
	require.Contains(t, a.body, `href="/assets/page.css`, "the site's layout")
	require.Contains(t, a.body, `<header class="shop">`, "the shop's header")
	require.Contains(t, a.body, `Need help? Contact Acme at <a href="mailto:help@acme.example">help@acme.example</a>.`)
	require.Contains(t, a.body, heading)
	require.NotContains(t, a.body, "404 page not found", "not Go's text")
}

func TestEveryPageErrorIsTheSitesStyledPage(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	s := &Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.NewTextHandler(&log, nil)),
		Shop: shop.Identity{Name: "Acme", Support: shop.Contact{Email: "help@acme.example"}}}
	public := httptest.NewServer(s.Handler())
	t.Cleanup(public.Close)

	requireErrorPage(t, ask(t, http.MethodGet, public.URL+"/nope"), http.StatusNotFound, "<h1>Page not found</h1>")
	requireErrorPage(t, ask(t, http.MethodGet, public.URL+"/assets/nothing.js"), http.StatusNotFound, "<h1>Page not found</h1>")
	requireErrorPage(t, ask(t, http.MethodGet, public.URL+"/assets/shop.css"), http.StatusNotFound, "<h1>Page not found</h1>")
	a := ask(t, http.MethodPost, public.URL+"/orders/"+sessionID)
	requireErrorPage(t, a, http.StatusMethodNotAllowed, "<h1>Not allowed</h1>")
	require.Equal(t, "GET, HEAD", a.header.Get("Allow"))
	requireErrorPage(t, ask(t, http.MethodDelete, public.URL+"/my-keys"), http.StatusMethodNotAllowed, "This page cannot be opened this way")
	// The API, the webhook and the files keep their JSON.
	requireJSONError(t, ask(t, http.MethodPost, public.URL+"/v1/orders/"+sessionID), http.StatusMethodNotAllowed, "method_not_allowed", "it answers GET, HEAD")
	requireJSONError(t, ask(t, http.MethodPut, public.URL+"/openapi.json"), http.StatusMethodNotAllowed, "method_not_allowed", "it answers GET, HEAD")

	for status, heading := range map[int]string{
		http.StatusTooManyRequests:     "<h1>Too many requests</h1>",
		http.StatusServiceUnavailable:  "<h1>Temporarily unavailable</h1>",
		http.StatusInternalServerError: "<h1>Something went wrong</h1>",
		http.StatusTeapot:              "<h1>Something went wrong</h1>", // no words for it: a 500
	} {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /orders/{checkout_session_id}/keys.txt", func(w http.ResponseWriter, r *http.Request) { s.renderErrorPage(w, r, status) })
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders/"+sessionID+"/keys.txt", nil))
		want := status
		if status == http.StatusTeapot {
			want = http.StatusInternalServerError
		}
		requireErrorPage(t, answer{rec.Code, rec.Header(), rec.Body.String()}, want, heading)
	}

	// A page whose handler panics is the 500 page, logged without the
	// session ID; the API's panic is left to net/http.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{checkout_session_id}", func(http.ResponseWriter, *http.Request) { panic("reading " + sessionID + ": boom") })
	rec := httptest.NewRecorder()
	s.recoverPages(mux).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders/"+sessionID, nil))
	requireErrorPage(t, answer{rec.Code, rec.Header(), rec.Body.String()}, http.StatusInternalServerError, "This page could not be shown")
	require.Contains(t, log.String(), "page failed: its handler panicked")
	require.Contains(t, log.String(), "boom")
	require.NotContains(t, log.String(), sessionID)
	mux.HandleFunc("GET /v1/x", func(http.ResponseWriter, *http.Request) { panic("api") })
	require.PanicsWithValue(t, "api", func() {
		s.recoverPages(mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/x", nil))
	})
}
