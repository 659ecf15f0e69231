package luarmor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
)

const testKey = "secret-api-key-0123456789"

// setupServer returns a client talking to a handler that the test controls,
// in the style of go-github's tests: the handler asserts method, path and body.
func setupServer(t *testing.T, h http.HandlerFunc) *luarmor.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return luarmor.NewClient(testKey, luarmor.WithBaseURL(srv.URL), luarmor.WithUserAgent("fulfiller-test/1"))
}

func TestRequestShape(t *testing.T) {
	t.Parallel()
	var got struct {
		method, path, query, auth, ctype, ua string
		body                                 map[string]any
	}
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.EscapedPath(), r.URL.RawQuery
		got.auth, got.ctype, got.ua = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent")
		got.body = nil
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			require.NoError(t, json.Unmarshal(b, &got.body))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true,"message":"Success!","user_key":"KEY"}`)
	})
	ctx := context.Background()
	expire := int64(1700000000)

	key, err := c.CreateUser(ctx, "proj/1", luarmor.CreateUserRequest{Note: "cs_1", KeyDays: 30, DiscordID: "123456789012345678"})
	require.NoError(t, err)
	require.Equal(t, "KEY", key)
	require.Equal(t, "POST", got.method)
	require.Equal(t, "/v3/projects/proj%2F1/users", got.path)
	require.Equal(t, testKey, got.auth, "raw key, no Bearer prefix")
	require.Equal(t, "application/json", got.ctype)
	require.Equal(t, "fulfiller-test/1", got.ua)
	require.Equal(t, map[string]any{"note": "cs_1", "key_days": float64(30), "discord_id": "123456789012345678"}, got.body)

	require.NoError(t, c.UpdateUser(ctx, "p", luarmor.UpdateUserRequest{UserKey: "K", AuthExpire: &expire}))
	require.Equal(t, "PATCH", got.method)
	require.Equal(t, map[string]any{"user_key": "K", "auth_expire": float64(expire)}, got.body, "absent fields are not sent")

	require.NoError(t, c.DeleteUser(ctx, "p", "K&x"))
	require.Equal(t, "DELETE", got.method)
	require.Equal(t, "/v3/projects/p/users", got.path)
	require.Equal(t, "user_key=K%26x", got.query)

	from, until := 10, 20
	_, err = c.ListUsers(ctx, "p", luarmor.ListUsersOptions{Search: "cs_1", DiscordID: "d", Identifier: "h", UserKey: "k", From: &from, Until: &until})
	require.NoError(t, err)
	require.Equal(t, "GET", got.method)
	require.Equal(t, "discord_id=d&from=10&identifier=h&search=cs_1&until=20&user_key=k", got.query)

	require.NoError(t, c.ResetHWID(ctx, "p", luarmor.ResetHWIDRequest{UserKey: "K", Force: true}))
	require.Equal(t, "/v3/projects/p/users/resethwid", got.path)
	require.Equal(t, map[string]any{"user_key": "K", "force": true}, got.body)

	require.NoError(t, c.LinkDiscord(ctx, "p", luarmor.LinkDiscordRequest{UserKey: "K", DiscordID: "1"}))
	require.Equal(t, "/v3/projects/p/users/linkdiscord", got.path)
	require.Equal(t, map[string]any{"user_key": "K", "discord_id": "1"}, got.body)

	never := luarmor.NeverExpires
	require.NoError(t, c.Blacklist(ctx, "p", luarmor.BlacklistRequest{UserKey: "K", BanReason: "Payment disputed", BanExpire: &never}))
	require.Equal(t, "/v3/projects/p/users/blacklist", got.path)
	require.Equal(t, map[string]any{"user_key": "K", "ban_reason": "Payment disputed", "ban_expire": float64(-1)}, got.body)

	require.NoError(t, c.Unban(ctx, "p", "TOKEN"))
	require.Equal(t, "GET", got.method)
	require.Equal(t, "/v3/projects/p/users/unban", got.path)
	require.Equal(t, "unban_token=TOKEN", got.query)
	require.Empty(t, got.auth, "unban needs no API key, so none is sent")

	require.NoError(t, c.UpdateScript(ctx, "p", "s1", luarmor.UpdateScriptRequest{Script: "print(1)", Silent: true}))
	require.Equal(t, "PUT", got.method)
	require.Equal(t, "/v3/projects/p/scripts/s1", got.path)
	require.Equal(t, map[string]any{"script": "print(1)", "silent": true}, got.body)

	_, err = c.KeyStats(ctx, true)
	require.NoError(t, err)
	require.Equal(t, "/v3/keys/"+testKey+"/stats", got.path)
	require.Equal(t, "noUsers=true", got.query)
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		ctype     string
		body      string
		is        []error
		isNot     []error
		retryable bool
	}{
		{"success false on 200", 200, "application/json", `{"success":false,"message":"Discord ID already exists"}`,
			[]error{luarmor.ErrDiscordInUse, luarmor.ErrConflict}, []error{luarmor.ErrOutcomeUnknown}, false},
		{"key not found", 404, "application/json", `{"success":false,"message":"Key not found"}`,
			[]error{luarmor.ErrNotFound}, []error{luarmor.ErrConflict, luarmor.ErrProjectRefused}, false},
		{"project not found", 404, "application/json", `{"success":false,"message":"Project not found!"}`,
			[]error{luarmor.ErrNotFound, luarmor.ErrProjectRefused}, []error{luarmor.ErrConflict}, false},
		{"invalid project id", 400, "application/json", `{"success":false,"message":"Invalid project id"}`,
			[]error{luarmor.ErrInvalidInput, luarmor.ErrProjectRefused}, []error{luarmor.ErrInvalidDiscordID}, false},
		{"user key doesn't exist on 400", 400, "application/json", `{"success":false,"message":"User key doesn't exist"}`,
			[]error{luarmor.ErrNotFound}, nil, false},
		{"already linked", 400, "application/json", `{"success":false,"message":"This key already has a discord linked to it"}`,
			[]error{luarmor.ErrAlreadyLinked, luarmor.ErrConflict}, nil, false},
		{"cooldown", 400, "application/json", `{"success":false,"message":"User is on cooldown."}`,
			[]error{luarmor.ErrCooldown, luarmor.ErrConflict}, nil, false},
		{"reset disabled", 400, "application/json", `{"success":false,"message":"Reset Hwid is disabled for this script"}`,
			[]error{luarmor.ErrResetDisabled, luarmor.ErrConflict}, nil, false},
		{"invalid discord", 400, "application/json", `{"success":false,"message":"Invalid discord_id"}`,
			[]error{luarmor.ErrInvalidInput, luarmor.ErrInvalidDiscordID}, []error{luarmor.ErrConflict}, false},
		{"invalid key_days", 400, "application/json", `{"success":false,"message":"Invalid key_days"}`,
			[]error{luarmor.ErrInvalidInput}, []error{luarmor.ErrInvalidDiscordID, luarmor.ErrProjectRefused}, false},
		{"wrong api key", 403, "application/json", `{"success":false,"message":"Invalid API key! Check it."}`,
			[]error{luarmor.ErrUnauthorized}, nil, false},
		{"edge html 403", 403, "text/html", `<html><title>Access denied</title></html>`,
			[]error{luarmor.ErrUnauthorized}, []error{luarmor.ErrOutcomeUnknown}, false},
		{"edge html 502", 502, "text/html; charset=utf-8", `<html>Bad gateway</html>`,
			[]error{luarmor.ErrServer, luarmor.ErrOutcomeUnknown}, nil, true},
		{"json 500", 500, "application/json", `{"success":false,"message":"Internal error"}`,
			[]error{luarmor.ErrServer, luarmor.ErrOutcomeUnknown}, nil, true},
		{"unreadable 200", 200, "application/json", `{"success":tr`,
			[]error{luarmor.ErrOutcomeUnknown}, []error{luarmor.ErrServer}, true},
		{"200 without envelope", 200, "application/json", `{"ok":1}`,
			[]error{luarmor.ErrOutcomeUnknown}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			err := c.LinkDiscord(context.Background(), "p", luarmor.LinkDiscordRequest{UserKey: "K", DiscordID: "1"})
			require.Error(t, err)
			var le *luarmor.Error
			require.ErrorAs(t, err, &le)
			require.Equal(t, tc.status, le.StatusCode)
			require.Equal(t, "POST /v3/projects/{project_id}/users/linkdiscord", le.Endpoint)
			for _, target := range tc.is {
				require.ErrorIs(t, err, target)
			}
			for _, target := range tc.isNot {
				require.NotErrorIs(t, err, target)
			}
			require.Equal(t, tc.retryable, luarmor.IsRetryable(err))
			require.NotContains(t, err.Error(), testKey)
		})
	}
}

// TestDiscordRefusalSpellings answers a create with every spelling of the
// Discord refusals the public clients list (luarmor-rs
// src/models/response.rs, luarmor-ts src/interfaces/IKeyCreate.ts), in
// other cases and with other punctuation, and with messages that name the
// Discord ID in words of no known class.
func TestDiscordRefusalSpellings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		message string
		status  int
		want    error
		code    luarmor.Code
	}{
		{"Discord ID already exists", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"Discord ID already exists.", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"Discord ID already exist.", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"Discord ID already exist.", 200, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"discord id already exist", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"  DISCORD ID  ALREADY EXIST!  ", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"Discord ID already exists in this project.", 400, luarmor.ErrDiscordInUse, luarmor.CodeDiscordInUse},
		{"Invalid discord_id", 400, luarmor.ErrInvalidDiscordID, luarmor.CodeInvalidInput},
		{"invalid Discord ID.", 400, luarmor.ErrInvalidDiscordID, luarmor.CodeInvalidInput},
		{"This key already has a discord linked to it", 400, luarmor.ErrAlreadyLinked, luarmor.CodeAlreadyLinked},
		{"Discord ID is taken", 400, luarmor.ErrDiscordUnrecognised, luarmor.CodeDiscordUnknown},
		{"discord_id must be a snowflake", 400, luarmor.ErrDiscordUnrecognised, luarmor.CodeDiscordUnknown},
		{"Discord ID already existing somewhere", 400, luarmor.ErrDiscordUnrecognised, luarmor.CodeDiscordUnknown},
	}
	discordErrs := []error{luarmor.ErrDiscordInUse, luarmor.ErrInvalidDiscordID, luarmor.ErrAlreadyLinked, luarmor.ErrDiscordUnrecognised}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.message), func(t *testing.T) {
			t.Parallel()
			c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				b, _ := json.Marshal(map[string]any{"success": false, "message": tc.message})
				_, _ = w.Write(b)
			})
			_, err := c.CreateUser(context.Background(), "p", luarmor.CreateUserRequest{DiscordID: "123456789012345678"})
			var le *luarmor.Error
			require.ErrorAs(t, err, &le)
			require.Equal(t, tc.code, le.Code)
			require.Equal(t, tc.message, le.Message, "the message is kept as Luarmor sent it")
			for _, target := range discordErrs {
				if errors.Is(tc.want, target) {
					require.ErrorIs(t, err, target)
				} else {
					require.NotErrorIs(t, err, target)
				}
			}
		})
	}
}

func TestUnauthorizedErrorSaysToWhitelist(t *testing.T) {
	t.Parallel()
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "<html>Access denied | api.luarmor.net used Cloudflare to restrict access</html>")
	})
	_, err := c.KeyDetails(context.Background())
	require.ErrorIs(t, err, luarmor.ErrUnauthorized)
	require.Contains(t, err.Error(), "whitelist")
	require.Contains(t, err.Error(), "HTTP 403")
	require.Contains(t, err.Error(), "GET /v3/keys/{api_key}/details")
	require.NotContains(t, err.Error(), testKey)
}

func TestRateLimitError(t *testing.T) {
	t.Parallel()
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"success":false,"message":"Too many requests"}`)
	})
	_, err := c.CreateUser(context.Background(), "p", luarmor.CreateUserRequest{})
	var rl *luarmor.RateLimitError
	require.ErrorAs(t, err, &rl)
	require.Equal(t, "Too many requests", rl.Message)
	require.True(t, luarmor.IsRetryable(err))
	require.NotErrorIs(t, err, luarmor.ErrOutcomeUnknown, "a 429 was not applied")
}

func TestErrorBodyIsReadThroughALimit(t *testing.T) {
	t.Parallel()
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		// Far more than any error page: the client must stop reading.
		chunk := strings.Repeat("x", 1<<16)
		for i := 0; i < 256; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	err := c.ResetHWID(context.Background(), "p", luarmor.ResetHWIDRequest{UserKey: "K"})
	require.ErrorIs(t, err, luarmor.ErrServer)
	require.Contains(t, err.Error(), "larger than")
	require.Less(t, len(err.Error()), 1000)
}

func TestTimeoutAfterSendIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	c := luarmor.NewClient(testKey, luarmor.WithBaseURL(srv.URL), luarmor.WithTimeout(100*time.Millisecond))

	_, err := c.KeyDetails(context.Background())
	var te *luarmor.TransportError
	require.ErrorAs(t, err, &te)
	require.True(t, te.Sent)
	require.ErrorIs(t, err, luarmor.ErrOutcomeUnknown)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, luarmor.IsRetryable(err))
	require.NotContains(t, err.Error(), testKey, "the URL of the key endpoints holds the API key")
	require.NotContains(t, err.Error(), srv.URL)
}

func TestConnectionRefusedIsNotSent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	c := luarmor.NewClient(testKey, luarmor.WithBaseURL("http://"+addr))
	_, err = c.KeyStats(context.Background(), false)
	require.ErrorIs(t, err, luarmor.ErrNotSent)
	require.NotErrorIs(t, err, luarmor.ErrOutcomeUnknown)
	require.NotContains(t, err.Error(), testKey)
}

func TestConnectionCutAfterRequestIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		require.NoError(t, err)
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	c := luarmor.NewClient(testKey, luarmor.WithBaseURL(srv.URL))
	_, err := c.CreateUser(context.Background(), "p", luarmor.CreateUserRequest{Note: "ref"})
	require.ErrorIs(t, err, luarmor.ErrOutcomeUnknown)
}

func TestGetUserNotFound(t *testing.T) {
	t.Parallel()
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"success":true,"users":[]}`)
	})
	_, err := c.GetUser(context.Background(), "p", "K")
	require.ErrorIs(t, err, luarmor.ErrNotFound)
}

func TestRequiredArgumentsAreCheckedBeforeSending(t *testing.T) {
	t.Parallel()
	c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("no request expected, got %s %s", r.Method, r.URL.Path)
	})
	ctx := context.Background()
	for _, err := range []error{
		c.UpdateUser(ctx, "p", luarmor.UpdateUserRequest{}),
		c.DeleteUser(ctx, "p", ""),
		c.Unban(ctx, "p", ""),
		c.UpdateScript(ctx, "p", "s", luarmor.UpdateScriptRequest{}),
		func() error { _, err := c.GetUser(ctx, "p", ""); return err }(),
	} {
		require.Error(t, err)
		require.Contains(t, err.Error(), "required")
	}
}
