package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
