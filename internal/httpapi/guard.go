package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"golang.org/x/net/netutil"
	"riverqueue.com/riverui"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// MaxHeaderBytes bounds a request's header block: far above what a browser,
// Stripe or the shop sends, far below what would cost memory at
// MAX_CONNECTIONS requests at once.
const MaxHeaderBytes = 64 << 10

// LimitListener caps the connections open at once at n. Past the cap,
// Accept waits until a connection closes: new connections are held in the
// kernel's accept queue (listen backlog), not closed, so a burst is served
// late rather than refused, and once the backlog is full the kernel
// refuses or drops new ones. Connections already open, keep-alive ones
// included, go on being served.
func LimitListener(l net.Listener, n int) net.Listener {
	return netutil.LimitListener(l, n)
}

// Failed credentials (the shop's bearer token, the River UI's basic auth)
// are limited per client: a burst of authFailureBurst, then one failure
// every authFailureEvery seconds; past that the client is answered 429
// without its credentials being looked at, so guessing stays slow.
const (
	authFailureBurst = 10
	authFailureEvery = 6
)

// RiverUIPrefix is where the River UI is mounted.
const RiverUIPrefix = "/riverui/"

// NewRiverUI is the River UI over client's database, to mount at
// RiverUIPrefix behind basic auth (Server.RiverUI). Start it before use.
// Job arguments are hidden by default: they name Checkout Sessions.
func NewRiverUI(client *river.Client[pgx.Tx], logger *slog.Logger) (*riverui.Handler, error) {
	return riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints:                riverui.NewEndpoints(client, nil),
		JobListHideArgsByDefault: true,
		Logger:                   logging.AtLeast(logger, slog.LevelWarn),
		Prefix:                   strings.TrimSuffix(RiverUIPrefix, "/"),
	})
}

// secretEqual compares a presented secret with the configured one in time
// that depends on neither's length nor content: both are hashed first.
func secretEqual(presented, configured string) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(configured))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// authThrottled answers 429 when the request's client has spent its failed
// attempts, and reports whether it did.
func (s *Server) authThrottled(w http.ResponseWriter, r *http.Request) bool {
	ip := s.clientIP(r)
	if s.authFailures.available(ip) {
		return false
	}
	s.logAuthFailure(r.Context(), r, "credentials not checked: too many failures from this client")
	w.Header().Set("Retry-After", strconv.Itoa(authFailureEvery))
	s.writeError(w, r, order.Errorf(order.ERATELIMITED, "too many failed credentials from this client; retry after the Retry-After seconds"))
	return true
}

// authFailed spends one of the client's failed attempts and logs it,
// sampled per client: a guessing client writes one line every few seconds
// with the count of the rest.
func (s *Server) authFailed(r *http.Request, what string) {
	s.authFailures.allow(s.clientIP(r))
	s.logAuthFailure(r.Context(), r, what)
}

func (s *Server) logAuthFailure(ctx context.Context, r *http.Request, msg string) {
	client := s.clientIP(r).String()
	s.authLog.Log(ctx, s.Logger, slog.LevelWarn, client, msg, "client", client, "route", routeOf(r))
}

// adminOnly guards next (the River UI) with HTTP basic auth against
// ADMIN_USER and ADMIN_PASSWORD. Unset, the UI does not exist: 404.
func (s *Server) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if next == nil || s.AdminUser == "" || s.AdminPassword == "" {
			http.NotFound(w, r)
			return
		}
		if s.authThrottled(w, r) {
			return
		}
		user, password, ok := r.BasicAuth()
		// Both compared every time: which one was wrong takes no
		// different time.
		userOK, passwordOK := secretEqual(user, s.AdminUser), secretEqual(password, s.AdminPassword)
		if !ok || !userOK || !passwordOK {
			s.authFailed(r, "River UI basic auth refused")
			w.Header().Set("WWW-Authenticate", `Basic realm="fulfiller admin", charset="UTF-8"`)
			http.Error(w, "401 unauthorized: ADMIN_USER and ADMIN_PASSWORD", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
