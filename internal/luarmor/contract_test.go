package luarmor_test

// Contract tests: the client against the sandbox, over real HTTP, for every
// endpoint of the reference and every error class the client reports.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

const (
	sbKey     = "contract-api-key-0123456789"
	sbProject = "proj_contract"
	discordA  = "123456789012345678"
	discordB  = "223456789012345678"
)

type contract struct {
	sb     *sandbox.Sandbox
	client *luarmor.Client
	url    string
	clock  *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func setupContract(t *testing.T, opts sandbox.Options) *contract {
	t.Helper()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	if opts.APIKey == "" {
		opts.APIKey = sbKey
	}
	if opts.Projects == nil {
		opts.Projects = []string{sbProject}
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	// The client's own bodies must hold no field Luarmor would drop.
	opts.StrictBody = true
	sb := sandbox.New(opts)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &contract{sb: sb, url: srv.URL, clock: clk,
		client: luarmor.NewClient(sbKey, luarmor.WithBaseURL(srv.URL), luarmor.WithTimeout(5*time.Second))}
}

func TestContractStatusDetailsStats(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()

	st, err := c.client.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "v3", st.Version)
	require.True(t, st.Active)

	d, err := c.client.KeyDetails(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, d.Projects)
	require.Equal(t, sbProject, d.Projects[0].ID)

	_, err = c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
	require.NoError(t, err)
	stats, err := c.client.KeyStats(ctx, false)
	require.NoError(t, err)
	require.Equal(t, int64(1), *stats.Stats.Users)
	limit, known := stats.UserLimit()
	require.True(t, known)
	require.Positive(t, limit)
	stats, err = c.client.KeyStats(ctx, true)
	require.NoError(t, err)
	require.Nil(t, stats.Stats.Users)

	for _, call := range c.sb.Calls() {
		require.NotContains(t, call.Path, sbKey, "the call log never holds the API key")
	}
}

func TestContractCreateFindUpdateDelete(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()

	key, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{Note: "cs_test_1 buyer@example.com ref:fk_1", KeyDays: 30, DiscordID: discordA})
	require.NoError(t, err)
	require.Len(t, key, 32)

	u, err := c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.Equal(t, 30, u.KeyDays)
	require.Equal(t, luarmor.NeverExpires, u.AuthExpire, "key_days is pending until first use")
	require.Equal(t, discordA, u.DiscordID)
	require.Empty(t, u.Identifier)

	// Activation through the sandbox's hook starts the timer.
	require.NoError(t, c.sb.Execute(sbProject, key, "hwid-1"))
	u, err = c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.Equal(t, c.clock.Now().Unix()+30*86400, u.AuthExpire)
	require.Equal(t, "hwid-1", u.Identifier)
	require.Equal(t, luarmor.StatusActive, u.Status)

	// Find by every filter.
	for _, opts := range []luarmor.ListUsersOptions{
		{Search: "ref:fk_1"}, {Search: "buyer@example"}, {DiscordID: discordA}, {Identifier: "hwid-1"}, {UserKey: key},
	} {
		users, err := c.client.ListUsers(ctx, sbProject, opts)
		require.NoError(t, err)
		require.Len(t, users, 1, "%+v", opts)
		require.Equal(t, key, users[0].UserKey)
	}
	users, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{Search: "nothing-like-this"})
	require.NoError(t, err)
	require.Empty(t, users)

	// Update: absent fields stay, auth_expire is absolute.
	expire := c.clock.Now().Unix() + 90*86400
	note := "edited"
	require.NoError(t, c.client.UpdateUser(ctx, sbProject, luarmor.UpdateUserRequest{UserKey: key, AuthExpire: &expire, Note: &note}))
	u, err = c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.Equal(t, expire, u.AuthExpire)
	require.Equal(t, "edited", u.Note)
	require.Equal(t, discordA, u.DiscordID)
	never := luarmor.NeverExpires
	require.NoError(t, c.client.UpdateUser(ctx, sbProject, luarmor.UpdateUserRequest{UserKey: key, AuthExpire: &never}))
	u, err = c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.Equal(t, luarmor.NeverExpires, u.AuthExpire)

	require.NoError(t, c.client.DeleteUser(ctx, sbProject, key))
	_, err = c.client.GetUser(ctx, sbProject, key)
	require.ErrorIs(t, err, luarmor.ErrNotFound)
	err = c.client.DeleteUser(ctx, sbProject, key)
	require.ErrorIs(t, err, luarmor.ErrNotFound)
	err = c.client.UpdateUser(ctx, sbProject, luarmor.UpdateUserRequest{UserKey: key, Note: &note})
	require.ErrorIs(t, err, luarmor.ErrNotFound)
}

func TestContractPaging(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()
	var keys []string
	for i := 0; i < 7; i++ {
		k, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{Note: "batch"})
		require.NoError(t, err)
		keys = append(keys, k)
	}
	var got []string
	for from := 0; from < 7; from += 3 {
		until := from + 3
		page, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{From: &from, Until: &until})
		require.NoError(t, err)
		for _, u := range page {
			got = append(got, u.UserKey)
		}
	}
	require.Equal(t, keys, got, "pages cover every key once, in creation order")
}

func TestContractDiscordRules(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()
	a, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{DiscordID: discordA})
	require.NoError(t, err)
	b, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
	require.NoError(t, err)

	_, err = c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{DiscordID: discordA})
	require.ErrorIs(t, err, luarmor.ErrDiscordInUse)
	require.ErrorIs(t, err, luarmor.ErrConflict)

	err = c.client.LinkDiscord(ctx, sbProject, luarmor.LinkDiscordRequest{UserKey: b, DiscordID: discordA})
	require.ErrorIs(t, err, luarmor.ErrDiscordInUse)
	err = c.client.LinkDiscord(ctx, sbProject, luarmor.LinkDiscordRequest{UserKey: a, DiscordID: discordB})
	require.ErrorIs(t, err, luarmor.ErrAlreadyLinked)
	require.NoError(t, c.client.LinkDiscord(ctx, sbProject, luarmor.LinkDiscordRequest{UserKey: a, DiscordID: discordB, Force: true}))
	require.NoError(t, c.client.LinkDiscord(ctx, sbProject, luarmor.LinkDiscordRequest{UserKey: b, DiscordID: discordA}))
	err = c.client.LinkDiscord(ctx, sbProject, luarmor.LinkDiscordRequest{UserKey: b, DiscordID: "nope", Force: true})
	require.ErrorIs(t, err, luarmor.ErrInvalidInput)
	require.ErrorIs(t, err, luarmor.ErrInvalidDiscordID)

	users, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{DiscordID: discordA})
	require.NoError(t, err)
	require.Len(t, users, 1)
	require.Equal(t, b, users[0].UserKey)
}

func TestContractResetHWID(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{ResetCooldown: time.Hour})
	ctx := context.Background()
	key, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
	require.NoError(t, err)
	require.NoError(t, c.sb.Execute(sbProject, key, "hwid-1"))

	require.NoError(t, c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key}))
	u, err := c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.Empty(t, u.Identifier)
	require.Equal(t, luarmor.StatusReset, u.Status)
	require.Equal(t, 1, u.TotalResets)

	err = c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key})
	require.ErrorIs(t, err, luarmor.ErrCooldown)
	require.ErrorIs(t, err, luarmor.ErrConflict)
	require.NoError(t, c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key, Force: true}))
	c.clock.Advance(time.Hour)
	require.NoError(t, c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key}))

	// Resets disabled for the project: refused with force too.
	c.sb.SetHWIDResetsEnabled(sbProject, false)
	err = c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key, Force: true})
	require.ErrorIs(t, err, luarmor.ErrResetDisabled)
	require.ErrorIs(t, err, luarmor.ErrConflict)
	require.False(t, luarmor.IsRetryable(err))
	c.sb.SetHWIDResetsEnabled(sbProject, true)

	// A banned key: refused with force too, for good.
	require.NoError(t, c.client.Blacklist(ctx, sbProject, luarmor.BlacklistRequest{UserKey: key}))
	err = c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: key, Force: true})
	require.Error(t, err)
	require.False(t, luarmor.IsRetryable(err))
	require.ErrorContains(t, err, "banned")

	err = c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: "missing", Force: true})
	require.ErrorIs(t, err, luarmor.ErrNotFound)
}

func TestContractBlacklistAndUnban(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()
	key, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
	require.NoError(t, err)

	never := luarmor.NeverExpires
	require.NoError(t, c.client.Blacklist(ctx, sbProject, luarmor.BlacklistRequest{UserKey: key, BanReason: "Payment disputed", BanExpire: &never}))
	u, err := c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.True(t, u.IsBanned())
	require.Equal(t, "Payment disputed", u.BanReason)
	require.Equal(t, luarmor.NeverExpires, u.BanExpire)
	first := u.UnbanToken
	require.Len(t, first, 32)

	require.NoError(t, c.client.Blacklist(ctx, sbProject, luarmor.BlacklistRequest{UserKey: key, BanReason: "again"}))
	u, err = c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.NotEqual(t, first, u.UnbanToken, "every blacklist issues a new token")

	require.Error(t, c.client.Unban(ctx, sbProject, first), "the old token no longer unbans")
	require.NoError(t, c.client.Unban(ctx, sbProject, u.UnbanToken))
	u, err = c.client.GetUser(ctx, sbProject, key)
	require.NoError(t, err)
	require.False(t, u.IsBanned())

	// Unban needs no API key: the sandbox's call log shows none was required.
	calls := c.sb.Calls()
	last := calls[len(calls)-2]
	require.Contains(t, last.Path, "/users/unban")
	require.Equal(t, http.StatusOK, last.Status)
}

func TestContractUpdateScript(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	ctx := context.Background()
	require.NoError(t, c.client.UpdateScript(ctx, sbProject, "script1", luarmor.UpdateScriptRequest{Script: "print('v2')", Silent: true}))
	s, ok := c.sb.Script(sbProject, "script1")
	require.True(t, ok)
	require.Equal(t, "print('v2')", s.Source)
	require.True(t, s.Silent)
}

func TestContractErrorClasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("unknown project", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		_, err := c.client.CreateUser(ctx, "other_project", luarmor.CreateUserRequest{})
		require.ErrorIs(t, err, luarmor.ErrNotFound)
		require.ErrorIs(t, err, luarmor.ErrProjectRefused)
		require.Contains(t, err.Error(), "Project not found")
	})
	t.Run("wrong api key", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		bad := luarmor.NewClient("wrong-key-value", luarmor.WithBaseURL(c.url))
		_, err := bad.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
		require.ErrorIs(t, err, luarmor.ErrUnauthorized)
		require.Contains(t, err.Error(), "whitelist")
		require.NotContains(t, err.Error(), "wrong-key-value")
		_, err = bad.KeyDetails(ctx)
		require.ErrorIs(t, err, luarmor.ErrUnauthorized)
		require.NotContains(t, err.Error(), "wrong-key-value")
	})
	t.Run("edge 403 html", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		c.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTML403})
		_, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{})
		require.ErrorIs(t, err, luarmor.ErrUnauthorized)
		require.Contains(t, err.Error(), "non-JSON")
		require.False(t, luarmor.IsRetryable(err))
	})
	t.Run("edge 502 html", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		c.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTML502})
		_, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
		require.ErrorIs(t, err, luarmor.ErrServer)
		require.ErrorIs(t, err, luarmor.ErrOutcomeUnknown)
		require.True(t, luarmor.IsRetryable(err))
	})
	t.Run("json 500", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		c.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTTP500})
		err := c.client.ResetHWID(ctx, sbProject, luarmor.ResetHWIDRequest{UserKey: "x"})
		require.ErrorIs(t, err, luarmor.ErrServer)
	})
	t.Run("rate limited past the budget", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{Limit: 3, Window: time.Minute})
		for i := 0; i < 3; i++ {
			_, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{})
			require.NoError(t, err)
		}
		_, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
		var rl *luarmor.RateLimitError
		require.ErrorAs(t, err, &rl)
		require.Empty(t, c.sb.Users(sbProject), "a 429 applies nothing")
		c.clock.Advance(time.Minute)
		_, err = c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
		require.NoError(t, err)
	})
	t.Run("applied but the answer is lost", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		c.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, Kind: sandbox.FaultApplyThenDrop})
		_, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{Note: "ref:fk_lost"})
		require.ErrorIs(t, err, luarmor.ErrOutcomeUnknown)
		users, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{Search: "ref:fk_lost"})
		require.NoError(t, err)
		require.Len(t, users, 1, "the key exists: look it up before creating again")
	})
	t.Run("timeout after sending", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		c.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: 2 * time.Second})
		slow := luarmor.NewClient(sbKey, luarmor.WithBaseURL(c.url), luarmor.WithTimeout(100*time.Millisecond))
		_, err := slow.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{})
		require.ErrorIs(t, err, luarmor.ErrOutcomeUnknown)
	})
	t.Run("invalid input", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		_, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{DiscordID: "abc"})
		require.ErrorIs(t, err, luarmor.ErrInvalidInput)
		require.False(t, luarmor.IsRetryable(err))
	})
	t.Run("identifier in use", func(t *testing.T) {
		t.Parallel()
		c := setupContract(t, sandbox.Options{})
		_, err := c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{Identifier: "hwid-x"})
		require.NoError(t, err)
		_, err = c.client.CreateUser(ctx, sbProject, luarmor.CreateUserRequest{Identifier: "hwid-x"})
		require.ErrorIs(t, err, luarmor.ErrIdentifierInUse)
	})
}

func TestContractSandboxWindowBoundaryFromCallLog(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{Limit: 5, Window: 10 * time.Second})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{})
		require.NoError(t, err)
		c.clock.Advance(time.Second)
	}
	// Calls at t=0..4; at t=5 the window (t-10s, t] holds five: refused.
	_, err := c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{})
	var rl *luarmor.RateLimitError
	require.ErrorAs(t, err, &rl)
	// At t=10 the call at t=0 has left the window, but the refused call at
	// t=5 still counts: refused calls spend budget too.
	c.clock.Advance(5 * time.Second)
	_, err = c.client.ListUsers(ctx, sbProject, luarmor.ListUsersOptions{})
	require.ErrorAs(t, err, &rl)

	statuses := []int{}
	for _, call := range c.sb.Calls() {
		statuses = append(statuses, call.Status)
	}
	require.Equal(t, []int{200, 200, 200, 200, 200, 429, 429}, statuses)
	require.True(t, strings.HasSuffix(c.sb.Calls()[0].Path, "/users"))
}

// TestContractAnswersHaveTheClientsShape compares the sandbox's account
// answers with the fixtures written from the public clients' models
// (testdata/README.md): the same fields, nested the same way, of the same
// JSON types.
func TestContractAnswersHaveTheClientsShape(t *testing.T) {
	t.Parallel()
	c := setupContract(t, sandbox.Options{})
	_, err := c.client.CreateUser(context.Background(), sbProject, luarmor.CreateUserRequest{})
	require.NoError(t, err)
	require.NoError(t, c.sb.Execute(sbProject, mustFirstKey(t, c), "hwid-1"))
	require.NoError(t, c.client.UpdateScript(context.Background(), sbProject, "script-1", luarmor.UpdateScriptRequest{Script: "print(1)"}))
	for path, fixture := range map[string]string{
		"/v3/keys/" + sbKey + "/stats":              "key_stats.json",
		"/v3/keys/" + sbKey + "/stats?noUsers=true": "key_stats_no_users.json",
		"/v3/keys/" + sbKey + "/details":            "key_details.json",
	} {
		req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", sbKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", got)
		want, err := os.ReadFile(filepath.Join("testdata", fixture))
		require.NoError(t, err)
		require.Equal(t, shapeOf(t, want), shapeOf(t, got), "the sandbox's answer has the shape of %s", fixture)
	}
}

func mustFirstKey(t *testing.T, c *contract) string {
	t.Helper()
	users := c.sb.Users(sbProject)
	require.NotEmpty(t, users)
	return users[0].UserKey
}

// shapeOf lists every field path of a JSON document with its JSON type;
// array elements share the path "[]".
func shapeOf(t *testing.T, doc []byte) map[string]string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(doc, &v))
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			out[path] = "object"
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			out[path] = "array"
			for _, e := range x {
				walk(path+"[]", e)
			}
		case string:
			out[path] = "string"
		case float64:
			out[path] = "number"
		case bool:
			out[path] = "bool"
		default:
			out[path] = "null"
		}
	}
	walk("", v)
	return out
}
