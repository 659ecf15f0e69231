package sandbox

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// FaultKind is a failure mode the sandbox can inject into API requests. The
// values are strings so that the HTTP hook and the call log read naturally.
type FaultKind string

// The injectable faults. Each reproduces a way the real API, its edge or the
// network fails, so that a client's handling of it can be tested.
const (
	// FaultHTTP500 answers 500 with a JSON failure envelope, without
	// applying the request: the API itself failed.
	FaultHTTP500 FaultKind = "http500"
	// FaultHTML502 answers 502 with a text/html edge error page, without
	// applying the request: the proxy in front of the API could not reach it.
	FaultHTML502 FaultKind = "html502"
	// FaultHTML403 answers 403 with a text/html Cloudflare-style "Access
	// denied" page, without applying the request: what Luarmor's edge does
	// when the calling IP is not whitelisted. Unlike a bad API key, this 403
	// has no JSON body.
	FaultHTML403 FaultKind = "html403"
	// FaultLatency waits Fault.Latency, then serves the request normally. If
	// the client gives up during the wait the request is not applied.
	FaultLatency FaultKind = "latency"
	// FaultApplyThenDrop applies the request fully, then closes the
	// connection without writing any answer: the change happened but the
	// client cannot know it. The client sees a connection error. Note that
	// Go's http.Transport silently retries such a failure for idempotent
	// methods (GET) on a reused connection; POST and PATCH are not retried.
	FaultApplyThenDrop FaultKind = "apply_then_drop"
	// FaultRateLimit answers 429 as if the budget were spent, whatever the
	// actual budget, without applying the request.
	FaultRateLimit FaultKind = "rate_limit"
	// FaultRefuse answers 400 with a JSON failure envelope ("Request
	// refused.", or Fault.Message), without applying the request: Luarmor refusing a request
	// for a reason of its own, neither the key's state nor the project,
	// which a client records instead of retrying.
	FaultRefuse FaultKind = "refuse"
)

// msgRefused is the message of FaultRefuse.
const msgRefused = "Request refused."

// Valid reports whether k is one of the fault kinds above.
func (k FaultKind) Valid() bool {
	switch k {
	case FaultHTTP500, FaultHTML502, FaultHTML403, FaultLatency, FaultApplyThenDrop, FaultRateLimit, FaultRefuse:
		return true
	}
	return false
}

// replacesAnswer reports whether the fault answers in place of the API.
func (k FaultKind) replacesAnswer() bool {
	switch k {
	case FaultHTTP500, FaultHTML502, FaultHTML403, FaultRateLimit, FaultRefuse:
		return true
	}
	return false
}

// Fault describes faults to inject into upcoming API requests.
type Fault struct {
	// Method restricts the fault to one HTTP method; "" matches any.
	Method string
	// PathContains restricts the fault to paths containing this substring,
	// matched against the logged path (API key replaced by "{api_key}");
	// "" matches any.
	PathContains string
	Kind         FaultKind
	// Times is how many matching requests the fault affects; 0 or less
	// means 1.
	Times int
	// Latency is the extra wait of FaultLatency.
	Latency time.Duration
	// Message replaces the message of FaultRefuse, to answer in words
	// Luarmor may use but the sandbox does not ("" keeps "Request refused.").
	Message string
}

type pendingFault struct {
	Fault
	remaining int
}

// InjectFault queues a fault. Faults are matched in injection order and each
// request consumes at most one. Faulted requests are still logged and still
// count toward the budget. GET /status can be faulted too, since the edge
// serves it like any other route (use Method or PathContains to spare it);
// the /_sandbox/ hooks are never faulted. It panics
// on an unknown Kind, a programming error in the test that calls it.
func (s *Sandbox) InjectFault(f Fault) {
	if !f.Kind.Valid() {
		panic(fmt.Sprintf("luarmor sandbox: unknown fault kind %q", f.Kind))
	}
	times := f.Times
	if times <= 0 {
		times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &pendingFault{Fault: f, remaining: times})
}

// ClearFaults removes every queued fault and every random fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.randomFaults = nil
}

// faultMatches reports whether a fault restricted to wantMethod and
// wantPath ("" matches any) applies to a request.
func faultMatches(wantMethod, wantPath, method, path string) bool {
	if wantMethod != "" && !strings.EqualFold(wantMethod, method) {
		return false
	}
	return wantPath == "" || strings.Contains(path, wantPath)
}

// takeFaultLocked consumes one use of the first fault matching the request.
func (s *Sandbox) takeFaultLocked(method, path string) Fault {
	for i, f := range s.faults {
		if !faultMatches(f.Method, f.PathContains, method, path) {
			continue
		}
		f.remaining--
		if f.remaining <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f.Fault
	}
	return Fault{}
}

// Edge pages. They imitate what a client meets in front of the real API: a
// body that is not JSON, so a client must not assume every answer parses.
const (
	html502Page = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
`
	html403Page = `<!DOCTYPE html>
<html lang="en-US">
<head><title>Access denied | api.luarmor.net used Cloudflare to restrict access</title></head>
<body>
<div id="cf-wrapper">
<h1><span>Error</span> <span>1020</span></h1>
<h2>Access denied</h2>
<p>This website is using a security service to protect itself from online attacks. The owner of this website (api.luarmor.net) has banned your IP address.</p>
<p>Cloudflare Ray ID: <strong>0000000000000000</strong></p>
</div>
</body>
</html>
`
)

// writeFault writes the answer of a fault that replaces the API's answer.
func writeFault(w http.ResponseWriter, f Fault) {
	switch f.Kind {
	case FaultHTTP500:
		writeReply(w, failure(http.StatusInternalServerError, "Internal server error"))
	case FaultHTML502:
		writeHTML(w, http.StatusBadGateway, html502Page)
	case FaultHTML403:
		writeHTML(w, http.StatusForbidden, html403Page)
	case FaultRateLimit:
		writeReply(w, failure(http.StatusTooManyRequests, msgTooManyRequests))
	case FaultRefuse:
		msg := msgRefused
		if f.Message != "" {
			msg = f.Message
		}
		writeReply(w, failure(http.StatusBadRequest, msg))
	}
}

func writeHTML(w http.ResponseWriter, status int, page string) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.Header().Set("Server", "cloudflare")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(page))
}

// dropConnection closes the client connection without an answer. Hijacking
// closes an HTTP/1 connection cleanly; where hijacking is impossible (HTTP/2)
// http.ErrAbortHandler makes the server reset the stream instead, which the
// client also sees as a transport error.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
