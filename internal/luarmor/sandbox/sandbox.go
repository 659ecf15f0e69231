// Package sandbox is an in-memory fake of the Luarmor HTTP API
// (https://api.luarmor.net), faithful enough that the Luarmor client and the
// fulfilment service can be tested and run locally without a Luarmor account.
//
// It reproduces what matters for a fulfilment service: the routes and their
// envelopes and status codes, API key checks, the shared request budget, key
// generation, the pending key_days timer, identifier and Discord ID uniqueness,
// HWID resets with their cooldown, blacklisting with rotating unban tokens, and
// paging. On top of the API it offers test hooks: simulating a user who runs
// the loader (Execute), injecting transport and server faults, reading the
// call log, and inspecting the stored keys. The hooks are Go methods and are
// also served over HTTP under /_sandbox/ so that another process (a CLI, a
// service under test) can drive a running sandbox.
//
// Where the Luarmor reference is silent the sandbox picks the stricter
// plausible behaviour, so that a client which works against it also works
// against the real API; each such decision is documented where it is made.
//
// The sandbox is for tests and local runs only: its hook routes need no API
// key, so never expose it on a public address.
package sandbox

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"fulfiller/internal/luarmor"
)

// Defaults applied to zero Options fields.
const (
	DefaultAPIKey        = "sandbox"
	DefaultLimit         = 60
	DefaultWindow        = time.Minute
	DefaultResetCooldown = 24 * time.Hour
)

// maxBodyBytes bounds request bodies. Script uploads are the largest bodies
// the API takes; a few MiB covers any real script while keeping a runaway
// client from exhausting memory.
const maxBodyBytes = 8 << 20

// Options configures a Sandbox. The zero value is a usable sandbox that accepts
// the API key "sandbox", any project ID, and the real API's budget.
type Options struct {
	// APIKey is the only accepted Authorization value; "" means "sandbox".
	APIKey string
	// Projects lists the known project IDs. When empty, any project ID is
	// accepted and the project is created on first use; when set, other IDs
	// get 404 "Project not found!".
	Projects []string
	// Limit is the number of requests allowed per Window; 0 means 60 and a
	// negative value disables the budget.
	Limit int
	// Window is the length of the sliding budget window; 0 means one minute.
	Window time.Duration
	// ResetCooldown is the minimum time between two HWID resets of one key;
	// 0 means 24 hours and a negative value disables the cooldown.
	ResetCooldown time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake clock to hit
	// budget, cooldown and expiry boundaries exactly.
	Now func() time.Time
	// MaxUsers is the plan's user limit the stats endpoint reports as
	// stats.default.users (where the public clients show a limit); 0 means
	// 100000 and a negative value leaves default.users out, as an answer
	// that does not tell the limit. Like the reference, which documents no
	// answer for it, the sandbox does not refuse keys beyond it.
	MaxUsers int
	// Logger receives one debug record per API request; nil discards.
	Logger *slog.Logger
	// UnclaimedExpiryAsKeyDays makes a PATCH of auth_expire on a key with
	// no HWID and no Discord ID keep the time as key_days, as the create
	// does with such a key. Luarmor's documentation does not say which of
	// the two it does; the lifecycle tests run under both.
	UnclaimedExpiryAsKeyDays bool
	// Seed seeds the random draws: which requests a random fault hits
	// (SetRandomFaults) and the wait of each answer within a latency range
	// (SetLatencyRange). The same seed and the same order of requests give
	// the same draws, so a failing run can be replayed; zero is a seed like
	// any other.
	Seed uint64
	// StrictBody refuses a request body with a field the endpoint does not
	// know (400 "Invalid JSON body: json: unknown field ..."). The real API
	// ignores such fields, and so does the sandbox by default; the
	// project's own tests set it so that a misspelt field fails there
	// instead of being silently dropped in production.
	StrictBody bool
}

// SetUnclaimedExpiryAsKeyDays switches how a PATCH of auth_expire treats a
// key with no HWID and no Discord ID (see Options.UnclaimedExpiryAsKeyDays).
func (s *Sandbox) SetUnclaimedExpiryAsKeyDays(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unclaimedAsDays = on
}

// Sandbox is an in-memory Luarmor API. It is an http.Handler; all methods are
// safe for concurrent use. Create it with New.
type Sandbox struct {
	// Immutable after New.
	apiKey        string
	restricted    bool // Options.Projects was set: unknown projects are 404
	resetCooldown time.Duration
	maxUsers      int
	now           func() time.Time
	log           *slog.Logger
	api           *http.ServeMux
	hooks         *http.ServeMux
	registeredAt  time.Time

	// One mutex guards all mutable state: the sandbox is a test double, and
	// a single lock makes every request atomic, which is also how the real
	// API behaves from a client's point of view.
	mu         sync.Mutex
	limit      int
	window     time.Duration
	arrivals   []time.Time   // arrival times of budgeted requests still in the window
	latency    time.Duration // base wait of every answer, or the low end of a range
	latencyMax time.Duration // the high end of the range; equal to latency when fixed
	// unclaimedAsDays: Options.UnclaimedExpiryAsKeyDays, or its setter.
	unclaimedAsDays bool
	strictBody      bool       // Options.StrictBody
	rng             *rand.Rand // seeded by Options.Seed; guarded by mu
	faults          []*pendingFault
	randomFaults    []RandomFault
	calls           []*Call
	projects        map[string]*project
	projectOrder    []string
	account         accountStats
}

// New returns a Sandbox configured by opts.
func New(opts Options) *Sandbox {
	s := &Sandbox{
		apiKey:        opts.APIKey,
		restricted:    len(opts.Projects) > 0,
		resetCooldown: opts.ResetCooldown,
		maxUsers:      opts.MaxUsers,
		now:           opts.Now,
		log:           opts.Logger,
		projects:      make(map[string]*project),
		account:       accountStats{monthly: make(map[string]*monthStats)},
		rng:           newRand(opts.Seed),
	}
	if s.apiKey == "" {
		s.apiKey = DefaultAPIKey
	}
	if s.resetCooldown == 0 {
		s.resetCooldown = DefaultResetCooldown
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxUsers == 0 {
		s.maxUsers = planMaxUsers
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.limit, s.window = budgetDefaults(opts.Limit, opts.Window)
	s.unclaimedAsDays = opts.UnclaimedExpiryAsKeyDays
	s.strictBody = opts.StrictBody
	s.registeredAt = s.now()
	for _, id := range opts.Projects {
		if _, dup := s.projects[id]; !dup {
			s.addProjectLocked(id)
		}
	}
	s.api = s.apiMux()
	s.hooks = s.hookMux()
	return s
}

// ServeHTTP serves the Luarmor API and, under /_sandbox/, the test hooks.
// Every answer carries luarmor.StandInHeader, which the real API never
// sends, so a client can tell it is talking to the sandbox.
//
// An API request goes through these steps, in this order:
//  1. It is logged (Calls) and, unless it is GET /status, counted against the
//     budget on arrival, whatever happens next: that is what "reaching the
//     API" means.
//  2. The first matching injected fault, if any, is consumed; without one, a
//     random fault may be drawn (SetRandomFaults).
//  3. The base latency (or a draw from its range) plus any FaultLatency
//     delay is waited out; if the client
//     gives up meanwhile, nothing is applied or written.
//  4. A fault that replaces the answer (500, HTML 502/403, 429) is written
//     without applying the request; otherwise an over-budget request gets 429;
//     otherwise the request is applied.
//  5. Under FaultApplyThenDrop the connection is closed instead of answering.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(luarmor.StandInHeader, luarmor.StandInName)
	if r.URL.Path == hookPrefix || strings.HasPrefix(r.URL.Path, hookPrefix+"/") {
		s.hooks.ServeHTTP(w, r)
		return
	}
	s.serveAPI(w, r)
}

func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request) {
	// Read the body up front: the call log records it, and handlers run
	// under the mutex where they must not block on the network.
	body, bodyErr := readBody(w, r)
	path := redactPath(r.URL.Path)

	s.mu.Lock()
	call := &Call{
		Time:   s.now(),
		Method: r.Method,
		Path:   path,
		Query:  r.URL.RawQuery,
		Body:   body,
	}
	s.calls = append(s.calls, call)
	admitted := true
	if r.URL.Path != "/status" {
		admitted = s.admitLocked(call.Time)
	}
	fault := s.takeFaultLocked(r.Method, path)
	if fault.Kind == "" {
		fault = s.drawRandomFaultLocked(r.Method, path)
	}
	call.Fault = fault.Kind
	delay := s.drawLatencyLocked()
	if fault.Kind == FaultLatency {
		delay += fault.Latency
	}
	call.Latency = delay
	s.mu.Unlock()

	if !sleep(r.Context(), delay) {
		// The client gave up before the answer was ready, as when a client
		// timeout fires on a slow API: nothing is applied, nothing written,
		// and the call keeps Status 0.
		s.log.Debug("luarmor sandbox: client gone", "method", r.Method, "path", path, "fault", string(fault.Kind))
		return
	}

	resp := newBufferedResponse()
	switch {
	case fault.Kind.replacesAnswer():
		writeFault(resp, fault)
	case !admitted:
		writeReply(resp, failure(http.StatusTooManyRequests, msgTooManyRequests))
	case bodyErr != nil:
		writeReply(resp, bodyErrorReply(bodyErr))
	default:
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.api.ServeHTTP(resp, r)
	}

	s.mu.Lock()
	call.Status = resp.status
	s.mu.Unlock()
	s.log.Debug("luarmor sandbox request", "method", r.Method, "path", path, "status", resp.status, "fault", string(fault.Kind))

	if fault.Kind == FaultApplyThenDrop {
		dropConnection(w)
		return
	}
	resp.writeTo(w)
}

// readBody reads the whole request body, bounded by maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return nil, err
	}
	return body, nil
}

func bodyErrorReply(err error) reply {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return failure(http.StatusRequestEntityTooLarge, "Request body too large")
	}
	return failure(http.StatusBadRequest, "Could not read the request body")
}

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// redactPath replaces the API key in /v3/keys/{api_key}/... paths so that the
// call log and the debug log never hold a key.
func redactPath(path string) string {
	const prefix = "/v3/keys/"
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return path
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return prefix + "{api_key}" + rest[i:]
	}
	return prefix + "{api_key}"
}

// validKey compares an Authorization value with the API key in constant time,
// as a real server must; it costs nothing here and keeps the habit.
func (s *Sandbox) validKey(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.apiKey)) == 1
}

// ---- Budget ----

func budgetDefaults(limit int, window time.Duration) (int, time.Duration) {
	if limit == 0 {
		limit = DefaultLimit
	}
	if window <= 0 {
		window = DefaultWindow
	}
	return limit, window
}

// admitLocked records a request arriving at now and reports whether it fits
// the budget.
//
// The rule: a request arriving at t is refused with 429 when Limit requests
// were already received in the half-open interval (t-Window, t]. Every request
// that reaches the API is received, including the ones refused with 429, auth
// failures, faulted requests and unbans; only GET /status and the /_sandbox/
// hooks are outside the budget. Consequences: exactly Limit requests fit in
// any window, request Limit+1 is refused, a request exactly Window after the
// first one is admitted again (the first has left the interval), and a client
// that keeps retrying while refused keeps itself locked out, which is why a
// 429 must be treated as "the whole budget is spent for up to a Window".
func (s *Sandbox) admitLocked(now time.Time) bool {
	if s.limit < 0 {
		return true
	}
	// Arrivals are appended in clock order (the clock is read under the
	// mutex and must not run backwards), so the ones that left the window
	// are a prefix: dropping it keeps admission amortised O(1) even when a
	// client hammers the sandbox with refused requests.
	cutoff := now.Add(-s.window)
	drop := 0
	for drop < len(s.arrivals) && !s.arrivals[drop].After(cutoff) {
		drop++
	}
	s.arrivals = s.arrivals[drop:]
	admitted := len(s.arrivals) < s.limit
	s.arrivals = append(s.arrivals, now)
	return admitted
}

// SetLimit changes the budget: limit requests per sliding window. A zero limit
// or window takes the default (60 per minute); a negative limit disables the
// budget, and requests received while it is disabled are not counted (so that
// long benchmarks do not accumulate history). Requests already counted stay
// counted under the new limit.
func (s *Sandbox) SetLimit(limit int, window time.Duration) {
	limit, window = budgetDefaults(limit, window)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit, s.window = limit, window
}

// SetLatency sets a base latency added to every API answer (the real API takes
// around 50 ms), to make benchmarks and timeouts realistic. The wait honours
// the request's context. Zero or negative means none.
func (s *Sandbox) SetLatency(d time.Duration) { s.SetLatencyRange(d, d) }

// ---- Call log ----

// Call is one API request as the sandbox received it.
type Call struct {
	Time   time.Time // arrival, on the sandbox clock
	Method string
	// Path is the request path with the API key of /v3/keys/ paths replaced
	// by "{api_key}".
	Path  string
	Query string // raw query string
	Body  []byte
	// Status is the HTTP status the sandbox produced. Under
	// FaultApplyThenDrop it is the status of the answer that was lost; it is
	// 0 while the request is in flight and when the client went away during
	// a latency wait (nothing applied).
	Status int
	Fault  FaultKind // the fault injected into this request, "" if none
	// Latency is how long the sandbox waited before answering: the base
	// latency or its draw from a range, plus any FaultLatency delay.
	Latency time.Duration
}

// Calls returns a copy of the API call log in arrival order. Test-hook
// requests are not logged.
func (s *Sandbox) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = *c
		out[i].Body = bytes.Clone(c.Body)
	}
	return out
}

// ResetCalls empties the call log. It does not reset the budget.
func (s *Sandbox) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// ---- Buffered response ----

// bufferedResponse holds an answer until the sandbox decides whether to send
// it or to drop the connection (FaultApplyThenDrop).
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferedResponse() *bufferedResponse {
	return &bufferedResponse{header: make(http.Header)}
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes()) // the client may be gone; nothing to do about it
}
