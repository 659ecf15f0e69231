package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

const (
	apiKey    = "sandbox"
	projectID = "proj"
)

// fakeClock is a settable clock, so tests hit window and cooldown boundaries
// to the nanosecond.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is a sandbox behind a real HTTP server.
type env struct {
	t     *testing.T
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	clock *fakeClock
}

// newEnv starts a sandbox with a fake clock (unless opts.Now is set) and no
// budget (unless opts.Limit is set), so tests that do not study the budget
// are not limited by it.
func newEnv(t *testing.T, opts sandbox.Options) *env {
	t.Helper()
	e := &env{t: t}
	if opts.Now == nil {
		e.clock = newFakeClock()
		opts.Now = e.clock.Now
	}
	if opts.Limit == 0 {
		opts.Limit = -1
	}
	e.sb = sandbox.New(opts)
	e.srv = newServer(t, e.sb)
	return e
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as an object.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

func (r response) Message(t *testing.T) string {
	t.Helper()
	msg, _ := r.JSON(t)["message"].(string)
	return msg
}

// raw sends a request exactly as described: no header is added.
func (e *env) raw(method, path, body string, header http.Header) response {
	e.t.Helper()
	resp, err := e.send(context.Background(), method, path, body, header)
	require.NoError(e.t, err)
	return resp
}

func (e *env) send(ctx context.Context, method, path, body string, header http.Header) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// api sends an API request the way a correct client does: API key, and a
// JSON body with its Content-Type when body is not nil.
func (e *env) api(method, path string, body any) response {
	e.t.Helper()
	return e.raw(method, path, jsonBody(e.t, body), apiHeader(body != nil))
}

func apiHeader(withBody bool) http.Header {
	h := http.Header{"Authorization": {apiKey}, "User-Agent": {"sandbox-test"}}
	if withBody {
		h.Set("Content-Type", "application/json")
	}
	return h
}

func jsonBody(t *testing.T, body any) string {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return ""
	case string:
		return b
	}
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	return string(raw)
}

func usersPath(project string) string { return "/v3/projects/" + project + "/users" }

// create creates a key and returns it.
func (e *env) create(body any) string {
	e.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	r := e.api(http.MethodPost, usersPath(projectID), body)
	require.Equal(e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	var out struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
		UserKey string `json:"user_key"`
	}
	require.NoError(e.t, json.Unmarshal(r.Body, &out))
	require.True(e.t, out.Success)
	require.Equal(e.t, "Success!", out.Message)
	return out.UserKey
}

type usersAnswer struct {
	Success bool           `json:"success"`
	Message string         `json:"message"`
	Users   []luarmor.User `json:"users"`
}

// list calls GET .../users with the given query.
func (e *env) list(query url.Values) (response, usersAnswer) {
	e.t.Helper()
	path := usersPath(projectID)
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	r := e.api(http.MethodGet, path, nil)
	var out usersAnswer
	if r.Status == http.StatusOK {
		require.NoError(e.t, json.Unmarshal(r.Body, &out), "body: %s", r.Body)
	}
	return r, out
}

// get fetches one key over the API.
func (e *env) get(key string) luarmor.User {
	e.t.Helper()
	r, out := e.list(url.Values{"user_key": {key}})
	require.Equal(e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Len(e.t, out.Users, 1)
	return out.Users[0]
}

func keysOf(users []luarmor.User) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.UserKey
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// jsonUnmarshal decodes an answer into a typed struct.
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
