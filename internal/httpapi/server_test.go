package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

type answer struct {
	status int
	header http.Header
	body   string
}

func ask(t *testing.T, method, url string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

// requireJSONError checks an answer is the API's JSON error with code.
func requireJSONError(t *testing.T, a answer, status int, code, message string) {
	t.Helper()
	require.Equal(t, status, a.status, a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"), a.body)
	var e map[string]string
	require.NoError(t, json.Unmarshal([]byte(a.body), &e), a.body)
	require.Equal(t, code, e["code"], a.body)
	require.Contains(t, e["error"], message)
}

func TestUnknownRoutesAnswerInTheServicesOwnWordsOnBothListeners(t *testing.T) {
	t.Parallel()
	s := &Server{Webhook: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler)}
	public := httptest.NewServer(s.Handler())
	t.Cleanup(public.Close)
	internal := httptest.NewServer(s.AdminHandler())
	t.Cleanup(internal.Close)

	// Public listener: a page address gets the styled page...
	a := ask(t, http.MethodGet, public.URL+"/nope")
	require.Equal(t, http.StatusNotFound, a.status)
	require.Equal(t, "text/html; charset=utf-8", a.header.Get("Content-Type"))
	require.Contains(t, a.body, "<h1>Page not found</h1>")
	require.Contains(t, a.body, `href="/assets/page.css`, "styled like the service's other pages")
	require.NotContains(t, a.body, `href="/my-keys"`, "mail is off: no find my keys to point to")
	// ...the API, the webhooks and anything but a page read get JSON.
	requireJSONError(t, ask(t, http.MethodGet, public.URL+"/v1/nope"), http.StatusNotFound, "not_found",
		"the service has no route for GET /v1/nope; openapi.json lists its routes")
	requireJSONError(t, ask(t, http.MethodGet, public.URL+"/v1"), http.StatusNotFound, "not_found", "no route for GET /v1")
	requireJSONError(t, ask(t, http.MethodGet, public.URL+"/webhooks/nope"), http.StatusNotFound, "not_found", "no route")
	requireJSONError(t, ask(t, http.MethodPost, public.URL+"/nope"), http.StatusNotFound, "not_found", "no route for POST /nope")
	// A path routed for other methods still answers 405, now in JSON.
	a = ask(t, http.MethodPost, public.URL+"/openapi.json")
	requireJSONError(t, a, http.StatusMethodNotAllowed, "method_not_allowed", "POST is not allowed on this path; it answers GET, HEAD")
	require.Equal(t, "GET, HEAD", a.header.Get("Allow"))
	requireJSONError(t, ask(t, http.MethodGet, public.URL+"/webhooks/stripe"), http.StatusMethodNotAllowed, "method_not_allowed", "it answers POST")
	// The catch-all shadows no route.
	require.Equal(t, http.StatusOK, ask(t, http.MethodGet, public.URL+"/openapi.json").status)
	a = ask(t, http.MethodGet, public.URL+"/assets/page.css")
	require.Equal(t, http.StatusOK, a.status)

	// Internal listener: no pages of its own, so JSON throughout.
	requireJSONError(t, ask(t, http.MethodGet, internal.URL+"/nope"), http.StatusNotFound, "not_found",
		"the internal listener has no route for GET /nope; openapi.json lists its routes")
	requireJSONError(t, ask(t, http.MethodGet, internal.URL+"/v1/admin/nope"), http.StatusNotFound, "not_found", "no route")
	requireJSONError(t, ask(t, http.MethodPost, internal.URL+"/healthz"), http.StatusMethodNotAllowed, "method_not_allowed", "it answers GET, HEAD")
	require.Equal(t, http.StatusOK, ask(t, http.MethodGet, internal.URL+"/healthz").status)
	// A subtree's root without its slash is still redirected to it.
	a = ask(t, http.MethodGet, internal.URL+"/riverui?x=1")
	require.Equal(t, http.StatusTemporaryRedirect, a.status, "as ServeMux redirects")
	require.Equal(t, "/riverui/?x=1", a.header.Get("Location"))
	require.False(t, strings.Contains(a.body, "404 page not found"))
}

// sessionID is a well-formed Checkout Session ID; pages_test.go uses it too.
const sessionID = "cs_test_a1B2c3D4e5F6g7H8"

// serveError answers a request for the order API's route with err.
func serveError(t *testing.T, s *Server, err error) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/orders/{checkout_session_id}", func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, err) })
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/orders/"+sessionID, nil))
	return rec
}

func TestWriteErrorMapsCodesToStatuses(t *testing.T) {
	t.Parallel()
	dbDown := fmt.Errorf("reading order %s: %w", sessionID, &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
	for name, tc := range map[string]struct {
		err        error
		status     int
		code       string
		message    string
		retryAfter string
	}{
		"database down":      {dbDown, http.StatusServiceUnavailable, order.EUNAVAILABLE, "the order database is unreachable; retry in a few seconds", "5"},
		"stripe unreachable": {&order.Error{Code: order.EUNAVAILABLE, Message: "could not confirm the order with Stripe; retry shortly"}, http.StatusServiceUnavailable, order.EUNAVAILABLE, "could not confirm the order with Stripe; retry shortly", "5"},
		"not found":          {order.Errorf(order.ENOTFOUND, "no order for this checkout session"), http.StatusNotFound, order.ENOTFOUND, "no order for this checkout session", ""},
		"too many":           {order.Errorf(order.ETOOMANY, "slow down"), http.StatusTooManyRequests, order.ETOOMANY, "slow down", "1"},
		"invalid":            {order.Errorf(order.EINVALID, "nothing to retry"), http.StatusBadRequest, order.EINVALID, "nothing to retry", ""},
		"a bug":              {errors.New("scanning order: column count mismatch"), http.StatusInternalServerError, order.EINTERNAL, "internal error", ""},
		"refused statement":  {&pgconn.PgError{Code: "23505"}, http.StatusInternalServerError, order.EINTERNAL, "internal error", ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := &Server{Logger: slog.New(slog.DiscardHandler)}
			rec := serveError(t, s, tc.err)
			require.Equal(t, tc.status, rec.Code)
			require.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After"))
			var body map[string]string
			require.NoError(t, json.NewDecoder(rec.Body).Decode(&body))
			require.Equal(t, map[string]string{"code": tc.code, "error": tc.message}, body)
		})
	}
}

func TestWriteErrorLogsAnOutageOnceInAWhileWithoutTheSessionID(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	s := &Server{Logger: slog.New(slog.NewTextHandler(&log, nil))}
	dbDown := fmt.Errorf("reading order %s: %w", sessionID, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})
	for range 50 {
		require.Equal(t, http.StatusServiceUnavailable, serveError(t, s, dbDown).Code)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	require.Len(t, lines, 1, "an outage is not one log line per request")
	require.Contains(t, lines[0], "level=WARN")
	require.Contains(t, lines[0], `route="GET /v1/orders/{checkout_session_id}"`)
	require.Contains(t, lines[0], "connection refused")
	require.NotContains(t, log.String(), sessionID, "the Checkout Session ID is a capability")

	log.Reset()
	require.Equal(t, http.StatusInternalServerError, serveError(t, s, fmt.Errorf("reading order %s: boom", sessionID)).Code)
	require.Contains(t, log.String(), "level=ERROR")
	require.NotContains(t, log.String(), sessionID)
}
