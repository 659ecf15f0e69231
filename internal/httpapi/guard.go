package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// MaxHeaderBytes bounds a request's header block: far above what a browser,
// Stripe or the shop sends, far below what would cost memory at
// MAX_CONNECTIONS requests at once.
const MaxHeaderBytes = 64 << 10

// Failed credentials (the shop's bearer token, the River UI's basic auth)
// are limited per client: a burst of authFailureBurst, then one failure
// every authFailureEvery seconds; past that the client is answered 429
// without its credentials being looked at, so guessing stays slow.
const (
	authFailureBurst = 10
	authFailureEvery = 6
	// Across all clients: a burst of authFailureBurstAll, then
	// authFailureRateAll failures a second, so many addresses guessing at
	// once (an IPv6 range) guess no faster than that together.
	authFailureBurstAll = 100
	authFailureRateAll  = 1.0
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
	var msg, answer string
	switch {
	case !s.authFailures.available(ip):
		msg, answer = "credentials not checked: too many failures from this client", "too many failed credentials from this client"
	case !s.authFailuresAll.available():
		msg, answer = "credentials not checked: too many failures from all clients together", "too many failed credentials lately"
	default:
		return false
	}
	s.logAuthFailure(r.Context(), r, msg)
	w.Header().Set("Retry-After", strconv.Itoa(authFailureEvery))
	s.writeError(w, r, order.Errorf(order.ERATELIMITED, "%s; retry after the Retry-After seconds", answer))
	return true
}

// authFailed spends one of the client's failed attempts and logs it,
// sampled per client: a guessing client writes one line every few seconds
// with the count of the rest.
func (s *Server) authFailed(r *http.Request, what string) {
	s.authFailures.allow(s.clientIP(r))
	s.authFailuresAll.allow()
	s.logAuthFailure(r.Context(), r, what)
}

func (s *Server) logAuthFailure(ctx context.Context, r *http.Request, msg string) {
	client := s.clientIP(r).String()
	s.authLog.Log(ctx, s.Logger, slog.LevelWarn, client, msg, "client", client, "route", routeOf(r))
}

// adminActorKey carries the admin who made a request (adminActor).
type adminActorKey struct{}

// adminActor names who made an admin request, for the audit log:
// "admin-token" for the ADMIN_API_TOKEN bearer, "admin:<user>" for the
// admin login.
func adminActor(r *http.Request) string {
	if actor, ok := r.Context().Value(adminActorKey{}).(string); ok {
		return actor
	}
	return "admin"
}

// adminAPI wraps an admin API endpoint: no caching, no sniffing, and the
// admin's credentials required.
func (s *Server) adminAPI(next http.HandlerFunc) http.Handler {
	return s.requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next(w, r)
	}), false)
}

// requireAdmin lets through requests with the admin API token (Bearer) or
// the admin login (HTTP basic auth), and names their actor in the
// request's context. loginOnly: only the login opens it (the River UI, a
// browser's). With neither configured the endpoints do not exist (404).
// Failed credentials are throttled per client and across all clients;
// past either, the answer is 429 without the credentials being looked at.
func (s *Server) requireAdmin(next http.Handler, loginOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		login := s.AdminUser != "" && s.AdminPassword != ""
		token := s.AdminToken != "" && !loginOnly
		if !login && !token {
			s.writeError(w, r, order.Errorf(order.ENOTFOUND, "no such endpoint: the admin API is off until ADMIN_API_TOKEN, or ADMIN_USER and ADMIN_PASSWORD, are set"))
			return
		}
		if s.authThrottled(w, r) {
			return
		}
		actor := ""
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if token && secretEqual(bearer, s.AdminToken) {
				actor = "admin-token"
			}
		} else if user, password, ok := r.BasicAuth(); ok && login {
			// Both compared every time: which one was wrong takes no
			// different time.
			userOK, passwordOK := secretEqual(user, s.AdminUser), secretEqual(password, s.AdminPassword)
			if userOK && passwordOK {
				actor = "admin:" + s.AdminUser
			}
		}
		if actor == "" {
			s.authFailed(r, "admin credentials refused")
			if login {
				w.Header().Set("WWW-Authenticate", `Basic realm="fulfiller admin", charset="UTF-8"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fulfiller admin"`)
			}
			s.writeError(w, r, order.Errorf(order.EUNAUTHORIZED, "missing or wrong admin credentials: Bearer ADMIN_API_TOKEN, or the ADMIN_USER login"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminActorKey{}, actor)))
	})
}

// riverUI is the River UI behind the admin login, every state-changing
// request of it (cancelling, retrying, deleting jobs) recorded in the audit
// log before it is carried out. Without the UI or the login: 404.
func (s *Server) riverUI() http.Handler {
	if s.RiverUI == nil {
		return http.NotFoundHandler()
	}
	return s.requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isSafeMethod(r.Method) {
			s.RiverUI.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRiverUIBody))
		if err != nil {
			http.Error(w, "413 request body too large for the River UI", http.StatusRequestEntityTooLarge)
			return
		}
		detail := map[string]any{"method": r.Method, "path": strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(RiverUIPrefix, "/"))}
		var ids struct {
			IDs []any `json:"ids"`
		}
		if json.Unmarshal(body, &ids) == nil && len(ids.IDs) > 0 {
			detail["job_ids"] = ids.IDs
		}
		if err := s.Support.RecordAdminRequest(r.Context(), adminActor(r), "riverui", detail); err != nil {
			// An action the audit log would not show is not taken.
			s.writeError(w, r, fmt.Errorf("%w: %w", &order.Error{Code: order.EUNAVAILABLE, Message: "could not record the action in the audit log; retry in a few seconds"}, err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		s.RiverUI.ServeHTTP(w, r)
	}), true)
}

// maxRiverUIBody bounds a River UI request's body (a list of job IDs).
const maxRiverUIBody = 64 << 10

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// metrics serves Prometheus's scrapes; without metrics, 404.
func (s *Server) metrics() http.Handler {
	if s.Metrics == nil {
		return http.NotFoundHandler()
	}
	return s.Metrics
}

// crossOriginProtection refuses state-changing requests a browser sends
// from another site (Sec-Fetch-Site, or Origin against Host): a browser
// holding the admin login would otherwise send them, credentials included,
// for any page that posts a form to the internal listener. Requests that
// come from no browser (curl, the CLI, scripts) carry neither header and
// pass.
func (s *Server) crossOriginProtection() *http.CrossOriginProtection {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.logAuthFailure(r.Context(), r, "cross-site request to the internal listener refused")
		writeJSON(w, http.StatusForbidden, map[string]string{"code": "forbidden",
			"error": "cross-site requests are refused here: use the admin pages themselves, or a client that sends no Origin"})
	}))
	return c
}

// adminHeaders keeps the internal listener's answers out of frames (no
// clickjacking of the River UI's buttons) and out of caches.
func adminHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
