// Package discordfake is a stand-in for the part of Discord's OAuth2 that
// the service's Discord link uses, for tests and `make run`: the
// authorize page (which signs in at once as the account set with SetUser,
// or answers access_denied after Deny), the token endpoint and GET
// /users/@me, under the paths Discord documents. It is as strict as
// Discord's documentation: exact redirect URLs, form-encoded token
// requests, the client's credentials, single-use codes that expire, PKCE
// (S256 only) and bearer tokens. Faults (server errors, latency) are set
// per endpoint. Never expose it publicly.
package discordfake

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"fulfiller/internal/discord"
)

// Lifetimes, as Discord's documentation gives them.
const (
	// CodeTTL is how long an authorization code may be exchanged.
	CodeTTL = 10 * time.Minute
	// TokenTTL is an access token's expires_in: a week.
	TokenTTL = 7 * 24 * time.Hour
)

// User is an account the fake signs in as.
type User struct {
	ID       string
	Username string
	// GlobalName is the display name; "" answers null.
	GlobalName string
}

// DefaultUser is the account signed in until SetUser says otherwise.
var DefaultUser = User{ID: "112233445566778899", Username: "dev_buyer", GlobalName: "Dev Buyer"}

// Options configure the fake's one application.
type Options struct {
	ClientID     string
	ClientSecret string
	// RedirectURLs are the application's registered redirect URLs; an
	// authorize request must name one exactly.
	RedirectURLs []string
}

// Fake is the stand-in; it is an http.Handler.
type Fake struct {
	opts Options
	mux  *http.ServeMux

	mu      sync.Mutex
	user    User
	deny    int
	codes   map[string]*grant
	tokens  map[string]issued
	refresh []string
	faults  map[string]*fault // by endpoint: "token", "user"
	calls   map[string]int
	now     func() time.Time
}

type grant struct {
	redirectURL string
	challenge   string // S256 of the verifier, "" when none was sent
	user        User
	expires     time.Time
	used        bool
}

type issued struct {
	user    User
	expires time.Time
}

type fault struct {
	status int // answered instead, 0 for none
	count  int // calls left to fault
	delay  time.Duration
}

// New returns a fake for the application opts describes.
func New(opts Options) *Fake {
	f := &Fake{opts: opts, user: DefaultUser, codes: map[string]*grant{}, tokens: map[string]issued{},
		faults: map[string]*fault{}, calls: map[string]int{}, now: time.Now}
	f.mux = http.NewServeMux()
	f.mux.HandleFunc("GET "+discord.AuthorizePath, f.authorize)
	f.mux.HandleFunc("POST "+discord.ExchangePath, f.token)
	f.mux.HandleFunc("GET "+discord.UserPath, f.me)
	return f
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// SetUser makes u the account every authorize from now on signs in as.
func (f *Fake) SetUser(u User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user = u
}

// Deny makes the next n authorizes answer as if the buyer pressed Cancel:
// a redirect with error=access_denied.
func (f *Fake) Deny(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deny = n
}

// Fail makes the next n calls of endpoint ("token" or "user") answer
// status, each after delay; status 0 only delays them.
func (f *Fake) Fail(endpoint string, n, status int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[endpoint] = &fault{status: status, count: n, delay: delay}
}

// Issued lists every authorization code, access and refresh token the fake handed
// out, so a test can require that none of them reached a log, a job or a
// URL.
func (f *Fake) Issued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for c := range f.codes {
		out = append(out, c)
	}
	for t := range f.tokens {
		out = append(out, t)
	}
	return append(out, f.refresh...)
}

// Calls counts the calls of endpoint ("authorize", "token", "user"),
// refused ones too.
func (f *Fake) Calls(endpoint string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[endpoint]
}

// faulted applies endpoint's fault, if any, and reports whether it
// answered.
func (f *Fake) faulted(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	f.mu.Lock()
	f.calls[endpoint]++
	ft := f.faults[endpoint]
	var status int
	var delay time.Duration
	if ft != nil && ft.count > 0 {
		ft.count--
		status, delay = ft.status, ft.delay
	}
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return true
		}
	}
	if status == 0 {
		return false
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<html><body>%d</body></html>", status)
	return true
}

// authorize implements GET /oauth2/authorize. An unknown client or a
// redirect URL the application does not list is an error page (Discord
// never redirects to an unregistered URL); other refusals, and the
// buyer's cancel, go back to the redirect URL with error (and state).
func (f *Fake) authorize(w http.ResponseWriter, r *http.Request) {
	if f.faulted(w, r, "authorize") {
		return
	}
	q := r.URL.Query()
	if q.Get("client_id") != f.opts.ClientID {
		errorPage(w, "Unknown client_id")
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(f.opts.RedirectURLs, redirect) {
		errorPage(w, "Invalid OAuth2 redirect_uri")
		return
	}
	back := func(values url.Values) {
		if s := q.Get("state"); s != "" {
			values.Set("state", s)
		}
		u, _ := url.Parse(redirect) // registered, so it parses
		query := u.Query()
		for k, vs := range values {
			query[k] = vs
		}
		u.RawQuery = query.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	refuse := func(code, description string) {
		back(url.Values{"error": {code}, "error_description": {description}})
	}
	if q.Get("response_type") != "code" {
		refuse("unsupported_response_type", "The authorization server does not support obtaining an authorization code using this method.")
		return
	}
	if !slices.Contains(strings.Fields(q.Get("scope")), discord.Scope) {
		refuse("invalid_scope", "The requested scope is invalid, unknown, or malformed.")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if (challenge != "" || method != "") && (method != "S256" || len(challenge) != 43) {
		refuse("invalid_request", "Invalid code_challenge or code_challenge_method: only S256 is supported.")
		return
	}
	f.mu.Lock()
	if f.deny > 0 {
		f.deny--
		f.mu.Unlock()
		refuse("access_denied", "The resource owner or authorization server denied the request")
		return
	}
	code := random(30)
	f.codes[code] = &grant{redirectURL: redirect, challenge: challenge, user: f.user, expires: f.now().Add(CodeTTL)}
	f.mu.Unlock()
	back(url.Values{"code": {code}})
}

func errorPage(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "<html><body><h1>%s</h1></body></html>", html.EscapeString(message))
}

// token implements POST /api/oauth2/token for authorization_code grants.
// A code is spent by the first exchange that names it with the right
// client, whether or not that exchange succeeds, as RFC 6749 asks.
func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	if f.faulted(w, r, "token") {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The token endpoint only accepts application/x-www-form-urlencoded.")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body.")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// client_secret_basic form-encodes both before base64.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != f.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(f.opts.ClientSecret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	f.mu.Lock()
	g := f.codes[r.PostForm.Get("code")]
	ok := g != nil && !g.used && f.now().Before(g.expires)
	if g != nil {
		g.used = true
	}
	f.mu.Unlock()
	switch {
	case !ok:
		oauthError(w, http.StatusBadRequest, "invalid_grant", `Invalid "code" in request.`)
		return
	case r.PostForm.Get("redirect_uri") != g.redirectURL:
		oauthError(w, http.StatusBadRequest, "invalid_grant", `Invalid "redirect_uri" in request.`)
		return
	case g.challenge != "" && challengeOf(r.PostForm.Get("code_verifier")) != g.challenge:
		oauthError(w, http.StatusBadRequest, "invalid_grant", `Invalid "code_verifier" in request.`)
		return
	}
	access, refresh := random(30), random(30)
	f.mu.Lock()
	f.tokens[access] = issued{user: g.user, expires: f.now().Add(TokenTTL)}
	f.refresh = append(f.refresh, refresh)
	f.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(TokenTTL.Seconds()),
		"refresh_token": refresh, "scope": discord.Scope,
	})
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// me implements GET /api/v10/users/@me: the user object of the bearer
// token's account, as the identify scope shows it (no email).
func (f *Fake) me(w http.ResponseWriter, r *http.Request) {
	if f.faulted(w, r, "user") {
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	t, known := f.tokens[token]
	f.mu.Unlock()
	if !ok || !known || !f.now().Before(t.expires) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401: Unauthorized", "code": 0})
		return
	}
	var global any
	if t.user.GlobalName != "" {
		global = t.user.GlobalName
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": t.user.ID, "username": t.user.Username, "discriminator": "0", "global_name": global,
		"avatar": nil, "bot": false, "mfa_enabled": false, "banner": nil, "accent_color": nil,
		"locale": "en-US", "flags": 0, "premium_type": 0, "public_flags": 0, "avatar_decoration_data": nil,
	})
}

// oauthError answers an RFC 6749 error object.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	body := map[string]string{"error": code}
	if description != "" {
		body["error_description"] = description
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
