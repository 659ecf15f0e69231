package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
)

// The site's error pages. A page address (isPageRoute) that cannot be
// answered with its page gets one in the site's layout, with the shop's
// support contact, never Go's plain text: an unknown address (404), a
// method it does not answer (405), too many requests (429), an outage
// (503), a failure (500). The API keeps its JSON errors (writeError).

// errorPage is an error as error.html renders it.
type errorPage struct {
	Title, State, Heading, Text string
}

// errorPages words each error a page address can answer.
var errorPages = map[int]errorPage{
	http.StatusMethodNotAllowed: {Title: "Not allowed", State: "method_not_allowed",
		Heading: "This page cannot be opened this way",
		Text:    "Your browser sent a request this address does not answer. Open the page again from its link."},
	http.StatusTooManyRequests: {Title: "Too many requests", State: "busy",
		Heading: "Too many requests from your network",
		Text:    "This page was asked for too often from your network. Wait a minute, then reload it."},
	http.StatusInternalServerError: {Title: "Something went wrong", State: "internal",
		Heading: "This page could not be shown",
		Text:    "The shop's server failed to answer this page. Reload it in a few seconds; if it keeps failing, contact the shop."},
	http.StatusServiceUnavailable: {Title: "Temporarily unavailable", State: "unavailable",
		Heading: "The shop's server cannot answer right now",
		Text:    "It is busy or restarting. Wait a few seconds, then reload this page."},
}

// errorTemplate is the error pages' template; not-found.html is the 404's.
const errorTemplate = "error.html"

// renderErrorPage answers status with its error page (any status it has no
// words for, as a 500). The caller sets Retry-After where there is one.
func (s *Server) renderErrorPage(w http.ResponseWriter, r *http.Request, status int) {
	if status == http.StatusNotFound {
		s.renderPage(w, r, status, "not-found.html", pageData{Title: "Page not found", FindKeys: s.Mail != nil})
		return
	}
	e, ok := errorPages[status]
	if !ok {
		status, e = http.StatusInternalServerError, errorPages[http.StatusInternalServerError]
	}
	s.renderPage(w, r, status, errorTemplate, pageData{Title: e.Title, Error: &e, FindKeys: s.Mail != nil})
}

// isPageRoute says path is a page's address: not the API's, the webhook's
// or the River UI's (isPagePath), and neither this document nor an asset,
// which are files.
func isPageRoute(path string) bool {
	return isPagePath(path) && path != "/openapi.json" && !strings.HasPrefix(path, "/assets/")
}

// recoverPages answers a page whose handler panicked with the 500 error
// page, rather than a connection cut short, if nothing was written yet.
// The panic is logged with its stack, and the request's credential
// replaced by its order reference (logSafe).
func (s *Server) recoverPages(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isPageRoute(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		tw := &writeTracker{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); (ok && errors.Is(err, http.ErrAbortHandler)) || tw.wrote {
				panic(v) // net/http's own way to cut the answer short
			}
			s.Logger.ErrorContext(r.Context(), "page failed: its handler panicked; answered the error page",
				"route", routeOf(r), "error", logSafe(r, fmt.Errorf("%v", v)), "stack", logSafe(r, errors.New(string(debug.Stack()))))
			s.renderErrorPage(tw, r, http.StatusInternalServerError)
		}()
		next.ServeHTTP(tw, r)
	})
}

// writeTracker records whether an answer was begun.
type writeTracker struct {
	http.ResponseWriter
	wrote bool
}

func (t *writeTracker) WriteHeader(status int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(status)
}

func (t *writeTracker) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (t *writeTracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }
