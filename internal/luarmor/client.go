// Package luarmor is a client for Luarmor's HTTP API (v3), the license
// service that protects the shop's scripts. It covers every endpoint of the
// reference and reports failures in classes a caller can act on (see Error,
// RateLimitError and TransportError). It never sleeps or retries: scheduling
// belongs to the caller, which knows the fleet-wide budget.
package luarmor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
)

const (
	// DefaultBaseURL is Luarmor's production API.
	DefaultBaseURL = "https://api.luarmor.net"
	// StandInHeader is the response header by which the Luarmor sandbox
	// (the stand-in `fulfiller dev` runs) says it is not Luarmor, with the
	// value StandInName; Luarmor never sends it. `fulfiller doctor` reads it.
	StandInHeader = "Fulfiller-Stand-In"
	StandInName   = "luarmor"
	// DefaultUserAgent identifies the service; Luarmor dislikes generic ones.
	DefaultUserAgent = "fulfiller-luarmor-client/1.0"
	// DefaultTimeout bounds one request when the caller's context has no
	// earlier deadline.
	DefaultTimeout = 15 * time.Second

	// maxBodyBytes bounds a successful answer: a project's full user list
	// is a few hundred bytes per key.
	maxBodyBytes = 64 << 20
	// maxErrorBodyBytes bounds what is read of a refusal or edge page.
	maxErrorBodyBytes = 64 << 10
)

// Client calls Luarmor's API with one API key. It is safe for concurrent use.
type Client struct {
	apiKey    string
	baseURL   string
	http      *http.Client
	userAgent string
	timeout   time.Duration
	observe   func(endpoint string, status int)
}

// Option configures a Client.
type Option func(*Client)

// WithBaseURL points the client at another server, such as the sandbox.
func WithBaseURL(u string) Option {
	return func(c *Client) { c.baseURL = strings.TrimRight(u, "/") }
}

// WithHTTPClient sets the HTTP client used for requests.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithObserver makes the client report every request it sends: its
// endpoint template ("POST /v3/projects/{project_id}/users", never a key
// or ID) and the answer's HTTP status, or 0 when no answer arrived.
func WithObserver(fn func(endpoint string, status int)) Option {
	return func(c *Client) { c.observe = fn }
}

type answerObserverKey struct{}

// WithAnswerObserver makes the requests sent with ctx report, like
// WithObserver, their endpoint template and the answer's HTTP status (0
// when no answer arrived) to fn, which is called once per request that
// was attempted and never for one refused before it was built.
func WithAnswerObserver(ctx context.Context, fn func(endpoint string, status int)) context.Context {
	return context.WithValue(ctx, answerObserverKey{}, fn)
}

// WithTimeout bounds each request; zero or less leaves only the caller's
// context in charge.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// NewClient returns a client for the given API key.
func NewClient(apiKey string, opts ...Option) *Client {
	c := &Client{
		apiKey:    apiKey,
		baseURL:   DefaultBaseURL,
		http:      http.DefaultClient,
		userAgent: DefaultUserAgent,
		timeout:   DefaultTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Status reports the API's version and health. It needs no API key.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	err := c.do(ctx, call{method: http.MethodGet, path: "/status", endpoint: "GET /status", noEnvelope: true, noAuth: true}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// KeyDetails returns the API key's account, projects and scripts.
func (c *Client) KeyDetails(ctx context.Context) (*KeyDetails, error) {
	var out KeyDetails
	err := c.do(ctx, call{
		method:   http.MethodGet,
		path:     "/v3/keys/" + url.PathEscape(c.apiKey) + "/details",
		endpoint: "GET /v3/keys/{api_key}/details",
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// KeyStats returns the API key's usage. noUsers omits user counts, which is
// cheaper for Luarmor on large accounts.
func (c *Client) KeyStats(ctx context.Context, noUsers bool) (*KeyStats, error) {
	q := url.Values{}
	if noUsers {
		q.Set("noUsers", "true")
	}
	var out KeyStats
	err := c.do(ctx, call{
		method:   http.MethodGet,
		path:     "/v3/keys/" + url.PathEscape(c.apiKey) + "/stats",
		query:    q,
		endpoint: "GET /v3/keys/{api_key}/stats",
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateUser creates a key in the project and returns it. Creation is not
// idempotent: after an error matching ErrOutcomeUnknown, look the key up by a
// unique reference in its note before trying again.
func (c *Client) CreateUser(ctx context.Context, projectID string, req CreateUserRequest) (string, error) {
	var out struct {
		UserKey string `json:"user_key"`
	}
	err := c.do(ctx, call{
		method:   http.MethodPost,
		path:     usersPath(projectID),
		body:     req,
		endpoint: "POST /v3/projects/{project_id}/users",
	}, &out)
	if err != nil {
		return "", err
	}
	if out.UserKey == "" {
		return "", &Error{StatusCode: http.StatusOK, Code: CodeBadResponse, Endpoint: "POST /v3/projects/{project_id}/users",
			Message: "success answer without user_key; the key may exist: look it up before creating again"}
	}
	return out.UserKey, nil
}

// UpdateUser edits a key; nil fields are left unchanged.
func (c *Client) UpdateUser(ctx context.Context, projectID string, req UpdateUserRequest) error {
	if req.UserKey == "" {
		return errors.New("luarmor: UpdateUser: user_key is required")
	}
	return c.do(ctx, call{
		method:   http.MethodPatch,
		path:     usersPath(projectID),
		body:     req,
		endpoint: "PATCH /v3/projects/{project_id}/users",
	}, nil)
}

// DeleteUser deletes a key and the access of whoever holds it.
func (c *Client) DeleteUser(ctx context.Context, projectID, userKey string) error {
	if userKey == "" {
		return errors.New("luarmor: DeleteUser: user key is required")
	}
	return c.do(ctx, call{
		method:   http.MethodDelete,
		path:     usersPath(projectID),
		query:    url.Values{"user_key": {userKey}},
		endpoint: "DELETE /v3/projects/{project_id}/users",
	}, nil)
}

// ListUsers lists or finds keys of the project.
func (c *Client) ListUsers(ctx context.Context, projectID string, opts ListUsersOptions) ([]User, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("discord_id", opts.DiscordID)
	set("user_key", opts.UserKey)
	set("identifier", opts.Identifier)
	set("search", opts.Search)
	if opts.From != nil {
		q.Set("from", strconv.Itoa(*opts.From))
	}
	if opts.Until != nil {
		q.Set("until", strconv.Itoa(*opts.Until))
	}
	var out struct {
		Users []User `json:"users"`
	}
	err := c.do(ctx, call{
		method:   http.MethodGet,
		path:     usersPath(projectID),
		query:    q,
		endpoint: "GET /v3/projects/{project_id}/users",
	}, &out)
	if err != nil {
		return nil, err
	}
	if out.Users == nil {
		out.Users = []User{}
	}
	return out.Users, nil
}

// GetUser finds one key by its exact value. A key Luarmor does not know
// gives an error matching ErrNotFound.
func (c *Client) GetUser(ctx context.Context, projectID, userKey string) (*User, error) {
	if userKey == "" {
		return nil, errors.New("luarmor: GetUser: user key is required")
	}
	users, err := c.ListUsers(ctx, projectID, ListUsersOptions{UserKey: userKey})
	if err != nil {
		return nil, err
	}
	for i := range users {
		if users[i].UserKey == userKey {
			return &users[i], nil
		}
	}
	return nil, &Error{StatusCode: http.StatusOK, Code: CodeNotFound, Message: "no user with this key",
		Endpoint: "GET /v3/projects/{project_id}/users"}
}

// ResetHWID clears the key's HWID so the next machine that runs the script
// binds to it.
func (c *Client) ResetHWID(ctx context.Context, projectID string, req ResetHWIDRequest) error {
	return c.do(ctx, call{
		method:   http.MethodPost,
		path:     usersPath(projectID) + "/resethwid",
		body:     req,
		endpoint: "POST /v3/projects/{project_id}/users/resethwid",
	}, nil)
}

// LinkDiscord links a Discord account to the key.
func (c *Client) LinkDiscord(ctx context.Context, projectID string, req LinkDiscordRequest) error {
	return c.do(ctx, call{
		method:   http.MethodPost,
		path:     usersPath(projectID) + "/linkdiscord",
		body:     req,
		endpoint: "POST /v3/projects/{project_id}/users/linkdiscord",
	}, nil)
}

// Blacklist bans the key and its HWID. Each call issues a new unban token;
// read it back with GetUser if the ban may be lifted later.
func (c *Client) Blacklist(ctx context.Context, projectID string, req BlacklistRequest) error {
	return c.do(ctx, call{
		method:   http.MethodPost,
		path:     usersPath(projectID) + "/blacklist",
		body:     req,
		endpoint: "POST /v3/projects/{project_id}/users/blacklist",
	}, nil)
}

// Unban lifts a ban with the token issued by the latest Blacklist. Luarmor
// needs no API key for it, so none is sent.
func (c *Client) Unban(ctx context.Context, projectID, unbanToken string) error {
	if unbanToken == "" {
		return errors.New("luarmor: Unban: unban token is required")
	}
	return c.do(ctx, call{
		method:   http.MethodGet,
		path:     usersPath(projectID) + "/unban",
		query:    url.Values{"unban_token": {unbanToken}},
		endpoint: "GET /v3/projects/{project_id}/users/unban",
		noAuth:   true,
	}, nil)
}

// UpdateScript replaces a script's source.
func (c *Client) UpdateScript(ctx context.Context, projectID, scriptID string, req UpdateScriptRequest) error {
	if req.Script == "" {
		return errors.New("luarmor: UpdateScript: script source is required")
	}
	return c.do(ctx, call{
		method:   http.MethodPut,
		path:     "/v3/projects/" + url.PathEscape(projectID) + "/scripts/" + url.PathEscape(scriptID),
		body:     req,
		endpoint: "PUT /v3/projects/{project_id}/scripts/{script_id}",
	}, nil)
}

func usersPath(projectID string) string {
	return "/v3/projects/" + url.PathEscape(projectID) + "/users"
}

type call struct {
	method, path string
	query        url.Values
	body         any
	endpoint     string // route template used in errors; never holds secrets
	noEnvelope   bool   // GET /status answers without success/message
	noAuth       bool
}

// do sends one request and decodes a successful answer into out.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := c.baseURL + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader = http.NoBody
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return fmt.Errorf("luarmor: %s: encoding request: %w", cl.endpoint, err)
		}
		body = bytes.NewReader(b)
	}
	// Track whether the request left the process in full: a failure after
	// that point may follow a change Luarmor already made.
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				sent.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return fmt.Errorf("luarmor: %s: building request: %w (check LUARMOR_BASE_URL)", cl.endpoint, scrub(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if !cl.noAuth {
		req.Header.Set("Authorization", c.apiKey)
	}

	resp, err := c.http.Do(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	if c.observe != nil {
		c.observe(cl.endpoint, status)
	}
	if fn, ok := ctx.Value(answerObserverKey{}).(func(string, int)); ok {
		fn(cl.endpoint, status)
	}
	if err != nil {
		return &TransportError{Endpoint: cl.endpoint, Sent: sent.Load(), Err: scrub(err)}
	}
	defer resp.Body.Close()

	limit := int64(maxBodyBytes)
	if resp.StatusCode >= 300 {
		limit = maxErrorBodyBytes
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		// The answer started but broke off: the request was received.
		return &TransportError{Endpoint: cl.endpoint, Sent: true, Err: fmt.Errorf("reading answer (HTTP %d): %w", resp.StatusCode, scrub(err))}
	}
	if int64(len(raw)) > limit {
		return &Error{StatusCode: resp.StatusCode, Code: codeForUnreadable(resp.StatusCode), Endpoint: cl.endpoint,
			Message: fmt.Sprintf("answer larger than %d bytes", limit)}
	}

	if resp.StatusCode == http.StatusTooManyRequests {
		return &RateLimitError{Endpoint: cl.endpoint, Message: messageOf(raw, resp)}
	}

	var env struct {
		Success *bool  `json:"success"`
		Message string `json:"message"`
	}
	if !isJSON(resp) || json.Unmarshal(raw, &env) != nil {
		return &Error{StatusCode: resp.StatusCode, Code: codeForUnreadable(resp.StatusCode), Endpoint: cl.endpoint,
			Message: describeUnreadable(raw, resp)}
	}
	if resp.StatusCode >= 300 || (!cl.noEnvelope && (env.Success == nil || !*env.Success)) {
		msg := env.Message
		if msg == "" {
			msg = "refused without a message"
		}
		code := classify(resp.StatusCode, msg)
		if resp.StatusCode < 300 && env.Success == nil {
			code, msg = CodeBadResponse, "answer without a success field"
		}
		return &Error{StatusCode: resp.StatusCode, Code: code, Message: msg, Endpoint: cl.endpoint}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &Error{StatusCode: resp.StatusCode, Code: CodeBadResponse, Endpoint: cl.endpoint,
				Message: "answer does not match the documented shape: " + err.Error()}
		}
	}
	return nil
}

// scrub removes the request URL from net/http errors: for the key endpoints
// the URL contains the API key, and for others it can hold a license key.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func codeForUnreadable(status int) Code {
	switch {
	case status >= 500:
		return CodeServer
	case status == http.StatusForbidden:
		return CodeUnauthorized
	case status == http.StatusNotFound:
		return CodeNotFound
	}
	return CodeBadResponse
}

func isJSON(resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return true // let the decoder decide
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/plain")
}

// messageOf returns Luarmor's message from a JSON body, or a description of
// a body that is not JSON.
func messageOf(raw []byte, resp *http.Response) string {
	var env struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Message != "" {
		return env.Message
	}
	return describeUnreadable(raw, resp)
}

func describeUnreadable(raw []byte, resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "no content type"
	}
	s := strings.Join(strings.FieldsFunc(string(raw), unicode.IsSpace), " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	desc := fmt.Sprintf("non-JSON answer (%s, %d bytes)", ct, len(raw))
	if resp.StatusCode == http.StatusForbidden {
		desc += " from Luarmor's edge: the request was blocked before the API"
	}
	if s != "" {
		desc += ": " + strconv.Quote(s)
	}
	return desc
}
