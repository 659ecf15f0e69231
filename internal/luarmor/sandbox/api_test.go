package sandbox_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

const (
	discord1 = "123456789012345678"
	discord2 = "223456789012345678"
	discord3 = "323456789012345678"
	discord4 = "42345678901234567" // 17 digits, the shortest valid snowflake
)

func TestStatusNeedsNoKeyAndHasNoEnvelope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	r := e.raw(http.MethodGet, "/status", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, map[string]any{
		"version":         "v3",
		"active":          true,
		"message":         "API is up and working!",
		"warning":         false,
		"warning_message": "No warning",
	}, r.JSON(t))
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{APIKey: "secret-key"})
	path := usersPath(projectID)

	for name, h := range map[string]http.Header{
		"missing": {},
		"wrong":   {"Authorization": {"other"}},
		"bearer":  {"Authorization": {"Bearer secret-key"}},
	} {
		r := e.raw(http.MethodGet, path, "", h)
		require.Equal(t, http.StatusForbidden, r.Status, name)
		require.Equal(t, false, r.JSON(t)["success"], name)
		require.Equal(t, "Invalid API key! Visit https://luarmor.net/ to get access.", r.Message(t), name)
	}

	ok := http.Header{"Authorization": {"secret-key"}}
	require.Equal(t, http.StatusOK, e.raw(http.MethodGet, path, "", ok).Status)

	// The account routes also check the key in the path.
	r := e.raw(http.MethodGet, "/v3/keys/other/details", "", ok)
	require.Equal(t, http.StatusForbidden, r.Status)
	require.Equal(t, "Wrong API key", r.Message(t))
	r = e.raw(http.MethodGet, "/v3/keys/secret-key/details", "", http.Header{"Authorization": {"other"}})
	require.Equal(t, http.StatusForbidden, r.Status)
	require.True(t, strings.HasPrefix(r.Message(t), "Invalid API key!"))

	r = e.raw(http.MethodGet, "/v3/keys/secret-key/details", "", ok)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	body := r.JSON(t)
	require.Equal(t, true, body["success"])
	require.Equal(t, "Success!", body["message"])
	require.NotEmpty(t, body["email"])

	// The key never reaches the call log.
	for _, c := range e.sb.Calls() {
		require.NotContains(t, c.Path, "secret-key")
	}
	require.Equal(t, "/v3/keys/{api_key}/details", e.sb.Calls()[len(e.sb.Calls())-1].Path)
}

func TestContentTypeAndJSONChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{StrictBody: true})
	path := usersPath(projectID)
	keyOnly := http.Header{"Authorization": {apiKey}}
	withCT := func(ct string) http.Header {
		return http.Header{"Authorization": {apiKey}, "Content-Type": {ct}}
	}

	cases := []struct {
		name   string
		body   string
		header http.Header
		msg    string
	}{
		{"no content type", `{"note":"x"}`, keyOnly, "Content-Type must be application/json"},
		{"no content type, empty body", "", keyOnly, "Content-Type must be application/json"},
		{"text/plain", `{"note":"x"}`, withCT("text/plain"), "Content-Type must be application/json"},
		{"malformed", `{"note":`, withCT("application/json"), "Invalid JSON body"},
		{"unknown field", `{"keydays":3}`, withCT("application/json"), `Invalid JSON body: json: unknown field "keydays"`},
		{"wrong type", `{"key_days":"3"}`, withCT("application/json"), "Invalid JSON body"},
		{"trailing data", `{} {}`, withCT("application/json"), "Invalid JSON body"},
	}
	for _, tc := range cases {
		r := e.raw(http.MethodPost, path, tc.body, tc.header)
		require.Equal(t, http.StatusBadRequest, r.Status, tc.name)
		require.Equal(t, false, r.JSON(t)["success"], tc.name)
		require.True(t, strings.HasPrefix(r.Message(t), tc.msg), "%s: %s", tc.name, r.Message(t))
	}
	require.Empty(t, e.sb.Users(projectID), "refused requests create nothing")

	// Parameters are allowed, and an empty body is an empty object.
	r := e.raw(http.MethodPost, path, `{"note":"ok"}`, withCT("application/json; charset=utf-8"))
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	r = e.raw(http.MethodPost, path, "", withCT("application/json"))
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Len(t, e.sb.Users(projectID), 2)
}

// Like the real API, the sandbox ignores body fields it does not know unless
// it is strict.
func TestUnknownBodyFieldsAreIgnoredUnlessStrict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	r := e.api(http.MethodPost, usersPath(projectID), map[string]any{"note": "kept", "keydays": 3, "extra": map[string]any{"a": 1}})
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	users := e.sb.Users(projectID)
	require.Len(t, users, 1)
	require.Equal(t, "kept", users[0].Note)
	require.Zero(t, users[0].KeyDays, "the misspelt field is dropped, as production would")
	r = e.api(http.MethodPatch, usersPath(projectID), map[string]any{"user_key": users[0].UserKey, "note": "edited", "force": true})
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, "edited", e.sb.Users(projectID)[0].Note)

	strict := newEnv(t, sandbox.Options{StrictBody: true})
	r = strict.api(http.MethodPost, usersPath(projectID), map[string]any{"note": "kept", "keydays": 3})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, `Invalid JSON body: json: unknown field "keydays"`, r.Message(t))
	require.Empty(t, strict.sb.Users(projectID))
}

func TestProjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Projects: []string{"known"}})
	r := e.api(http.MethodGet, usersPath("unknown"), nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, map[string]any{"success": false, "message": "Project not found!"}, r.JSON(t))
	r = e.api(http.MethodPost, usersPath("unknown"), map[string]any{})
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath("known"), nil).Status)
	require.ErrorIs(t, e.sb.Execute("unknown", "k", "hwid"), sandbox.ErrProjectNotFound)

	// Without a project list any ID works and appears in the account details.
	open := newEnv(t, sandbox.Options{})
	require.Equal(t, http.StatusOK, open.api(http.MethodGet, usersPath("anything"), nil).Status)
	r = open.api(http.MethodGet, "/v3/keys/"+apiKey+"/details", nil)
	require.Equal(t, http.StatusOK, r.Status)
	var details struct {
		luarmor.KeyDetails
		Success bool `json:"success"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &details))
	require.Len(t, details.Projects, 1)
	require.Equal(t, "anything", details.Projects[0].ID)
	require.Equal(t, int64(86400), details.Projects[0].Settings.ResetHWIDCooldown)
}

func TestUnknownRouteIsJSON404(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	r := e.api(http.MethodGet, "/v3/projects/p/nothing", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, false, r.JSON(t)["success"])
	r = e.api(http.MethodPut, usersPath(projectID), map[string]any{})
	require.Equal(t, http.StatusNotFound, r.Status)
}

func TestCreateLifetimeKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	key := e.create(map[string]any{"note": "order-1"})
	require.True(t, isAlnum32(key), key)
	require.Equal(t, luarmor.User{
		UserKey:        key,
		IdentifierType: "HWID",
		Note:           "order-1",
		Status:         luarmor.StatusReset,
		AuthExpire:     luarmor.NeverExpires,
	}, e.get(key))
	require.NotEqual(t, key, e.create(nil), "every create mints a new key")
}

func TestCreateWithAuthExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	now := e.clock.Now().Unix()

	// Unclaimed: the remaining time becomes key_days, rounded up.
	key := e.create(luarmor.CreateUserRequest{AuthExpire: ptr(now + 36*3600)})
	u := e.get(key)
	require.Equal(t, luarmor.NeverExpires, u.AuthExpire)
	require.Equal(t, 2, u.KeyDays)
	key = e.create(luarmor.CreateUserRequest{AuthExpire: ptr(now + 2*86400)})
	require.Equal(t, 2, e.get(key).KeyDays)

	// Claimed by an identifier or a Discord ID: the clock runs now.
	key = e.create(luarmor.CreateUserRequest{AuthExpire: ptr(now + 3600), Identifier: "hwid-1"})
	u = e.get(key)
	require.Equal(t, now+3600, u.AuthExpire)
	require.Equal(t, 0, u.KeyDays)
	require.Equal(t, luarmor.StatusActive, u.Status)
	key = e.create(luarmor.CreateUserRequest{AuthExpire: ptr(now + 3600), DiscordID: discord1})
	require.Equal(t, now+3600, e.get(key).AuthExpire)

	// Explicit lifetime.
	key = e.create(luarmor.CreateUserRequest{AuthExpire: ptr(luarmor.NeverExpires)})
	require.Equal(t, luarmor.NeverExpires, e.get(key).AuthExpire)
	require.Equal(t, 0, e.get(key).KeyDays)

	for name, body := range map[string]any{
		"both":          map[string]any{"key_days": 3, "auth_expire": now + 3600},
		"past":          map[string]any{"auth_expire": now},
		"below -1":      map[string]any{"auth_expire": -2},
		"negative days": map[string]any{"key_days": -1},
	} {
		r := e.api(http.MethodPost, usersPath(projectID), body)
		require.Equal(t, http.StatusBadRequest, r.Status, name)
	}
}

func TestEditUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	key := e.create(luarmor.CreateUserRequest{Note: "n1", KeyDays: 7, DiscordID: discord1})
	patch := func(body any) response { return e.api(http.MethodPatch, usersPath(projectID), body) }

	r := patch(luarmor.UpdateUserRequest{UserKey: key, Note: ptr("n2")})
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, map[string]any{"success": true, "message": "User has been edited successfully!"}, r.JSON(t))
	u := e.get(key)
	require.Equal(t, "n2", u.Note)
	require.Equal(t, 7, u.KeyDays, "absent fields are unchanged")
	require.Equal(t, discord1, u.DiscordID)

	expire := e.clock.Now().Unix() + 86400
	require.Equal(t, http.StatusOK, patch(luarmor.UpdateUserRequest{UserKey: key, AuthExpire: &expire}).Status)
	u = e.get(key)
	require.Equal(t, expire, u.AuthExpire)
	require.Equal(t, 0, u.KeyDays, "an absolute expiry replaces the pending timer")

	require.Equal(t, http.StatusOK, patch(luarmor.UpdateUserRequest{UserKey: key, AuthExpire: ptr(luarmor.NeverExpires)}).Status)
	require.Equal(t, luarmor.NeverExpires, e.get(key).AuthExpire)

	require.Equal(t, http.StatusOK, patch(luarmor.UpdateUserRequest{UserKey: key, Identifier: ptr("hwid-x")}).Status)
	require.Equal(t, luarmor.StatusActive, e.get(key).Status)
	require.Equal(t, http.StatusOK, patch(luarmor.UpdateUserRequest{UserKey: key, DiscordID: ptr("")}).Status)
	require.Equal(t, "", e.get(key).DiscordID)

	r = patch(luarmor.UpdateUserRequest{UserKey: "nope", Note: ptr("x")})
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "User key doesn't exist", r.Message(t))
	r = patch(map[string]any{"note": "x"})
	require.Equal(t, http.StatusBadRequest, r.Status)
	r = patch(luarmor.UpdateUserRequest{UserKey: key, AuthExpire: ptr(int64(-5))})
	require.Equal(t, http.StatusBadRequest, r.Status)
}

func TestDeleteUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	key := e.create(nil)
	r := e.api(http.MethodDelete, usersPath(projectID)+"?user_key="+key, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "User has been deleted!", r.Message(t))
	require.Empty(t, e.sb.Users(projectID))
	_, ok := e.sb.User(projectID, key)
	require.False(t, ok)

	r = e.api(http.MethodDelete, usersPath(projectID)+"?user_key="+key, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "Key not found", r.Message(t), "the delete's own wording (luarmor-ts IDeleteKey)")
	require.Equal(t, http.StatusBadRequest, e.api(http.MethodDelete, usersPath(projectID), nil).Status)
}

func TestListSearchAndPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	var keys []string
	for i := 1; i <= 5; i++ {
		keys = append(keys, e.create(luarmor.CreateUserRequest{Note: fmt.Sprintf("order-%d", i)}))
	}
	other := e.create(luarmor.CreateUserRequest{Note: "manual", Identifier: "HWID-abc", DiscordID: discord1})

	page := func(q url.Values) []string {
		t.Helper()
		r, out := e.list(q)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
		require.True(t, out.Success)
		require.NotNil(t, out.Users, "an empty result is [], not null")
		return keysOf(out.Users)
	}

	require.Equal(t, append(append([]string{}, keys...), other), page(nil), "creation order")
	require.Equal(t, []string{keys[2]}, page(url.Values{"search": {"ORDER-3"}}), "case-insensitive substring of note")
	require.Equal(t, []string{other}, page(url.Values{"search": {"wid-ab"}}), "substring of identifier")
	require.Equal(t, []string{other}, page(url.Values{"search": {discord1[3:12]}}), "substring of discord_id")
	require.Equal(t, []string{keys[4]}, page(url.Values{"search": {keys[4][5:20]}}), "substring of user_key")
	require.Empty(t, page(url.Values{"search": {"nothing"}}))

	// Paging: from inclusive, until exclusive, over the matches.
	require.Equal(t, keys[1:3], page(url.Values{"search": {"order"}, "from": {"1"}, "until": {"3"}}))
	require.Equal(t, keys[4:], page(url.Values{"search": {"order"}, "from": {"4"}}))
	require.Equal(t, keys[:2], page(url.Values{"until": {"2"}}))
	require.Empty(t, page(url.Values{"from": {"10"}}))
	require.Empty(t, page(url.Values{"from": {"2"}, "until": {"2"}}))
	require.Equal(t, []string{other}, page(url.Values{"from": {"5"}, "until": {"100"}}))
	for _, q := range []url.Values{
		{"from": {"-1"}}, {"until": {"x"}}, {"from": {"3"}, "until": {"1"}},
	} {
		r, _ := e.list(q)
		require.Equal(t, http.StatusBadRequest, r.Status, q.Encode())
	}

	// Exact filters.
	require.Equal(t, []string{other}, page(url.Values{"discord_id": {discord1}}))
	require.Equal(t, []string{other}, page(url.Values{"identifier": {"HWID-abc"}}))
	require.Empty(t, page(url.Values{"identifier": {"HWID"}}), "identifier is exact, not a substring")
	require.Equal(t, []string{keys[0]}, page(url.Values{"user_key": {keys[0]}}))
	require.Empty(t, page(url.Values{"user_key": {"missing"}}), "no match is success with []")
	require.Empty(t, page(url.Values{"user_key": {keys[0]}, "search": {"order-2"}}), "filters combine with AND")
}

func TestDiscordAndIdentifierUniqueness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	create := func(body any) response { return e.api(http.MethodPost, usersPath(projectID), body) }
	link := func(key, id string, force bool) response {
		return e.api(http.MethodPost, usersPath(projectID)+"/linkdiscord",
			luarmor.LinkDiscordRequest{UserKey: key, DiscordID: id, Force: force})
	}

	for _, bad := range []string{"123", "1234567890123456789012", "12345678901234567a"} {
		r := create(luarmor.CreateUserRequest{DiscordID: bad})
		require.Equal(t, http.StatusBadRequest, r.Status, bad)
		require.Equal(t, "Invalid discord_id", r.Message(t))
	}

	a := e.create(luarmor.CreateUserRequest{DiscordID: discord1, Identifier: "hwid-a"})
	r := create(luarmor.CreateUserRequest{DiscordID: discord1})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Discord ID already exist.", r.Message(t), "the create's spelling, as luarmor-ts types it")
	r = create(luarmor.CreateUserRequest{Identifier: "hwid-a"})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Identifier already exists.", r.Message(t))

	b := e.create(nil)
	r = e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: b, DiscordID: ptr(discord1)})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Discord ID already exists", r.Message(t))
	r = e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: b, Identifier: ptr("hwid-a")})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Identifier already exists.", r.Message(t))
	r = e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: b, DiscordID: ptr(discord2)})
	require.Equal(t, http.StatusOK, r.Status)
	r = e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: a, DiscordID: ptr(discord1)})
	require.Equal(t, http.StatusOK, r.Status, "re-setting a key's own ID is fine")

	c := e.create(nil)
	r = link(c, discord1, false)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Discord ID already exists", r.Message(t))
	require.Equal(t, http.StatusBadRequest, link(c, discord1, true).Status, "force does not steal another key's ID")
	require.Equal(t, "Invalid discord_id", link(c, "42", false).Message(t))
	require.Equal(t, http.StatusNotFound, link("missing", discord3, false).Status)

	r = link(c, discord3, false)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "Discord ID successfully linked!", r.Message(t))
	r = link(c, discord3, false)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "This key already has a discord linked to it", r.Message(t))
	r = link(c, discord4, false)
	require.Equal(t, "This key already has a discord linked to it", r.Message(t))
	require.Equal(t, http.StatusOK, link(c, discord4, true).Status, "force overwrites this key's link")
	require.Equal(t, discord4, e.get(c).DiscordID)
	// discord3 is free again and may go to another key.
	require.Equal(t, http.StatusOK, create(luarmor.CreateUserRequest{DiscordID: discord3}).Status)

	// Uniqueness is per project.
	r = e.api(http.MethodPost, usersPath("other-project"), luarmor.CreateUserRequest{DiscordID: discord1, Identifier: "hwid-a"})
	require.Equal(t, http.StatusOK, r.Status)
}

func TestResetHWIDCooldownAndForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{ResetCooldown: time.Hour})
	reset := func(key string, force bool) response {
		return e.api(http.MethodPost, usersPath(projectID)+"/resethwid", luarmor.ResetHWIDRequest{UserKey: key, Force: force})
	}
	key := e.create(luarmor.CreateUserRequest{Identifier: "hwid-1"})

	r := reset(key, false)
	require.Equal(t, http.StatusOK, r.Status, "the first reset has no cooldown")
	require.Equal(t, map[string]any{"success": true, "message": "Successfully reset!"}, r.JSON(t))
	first := e.clock.Now()
	u := e.get(key)
	require.Equal(t, "", u.Identifier)
	require.Equal(t, luarmor.StatusReset, u.Status)
	require.Equal(t, first.Unix(), u.LastReset)
	require.Equal(t, 1, u.TotalResets)

	require.NoError(t, e.sb.Execute(projectID, key, "hwid-2"), "a reset key binds the next HWID")
	require.Equal(t, luarmor.StatusActive, e.get(key).Status)

	e.clock.Set(first.Add(time.Hour - time.Nanosecond))
	r = reset(key, false)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "User is on cooldown.", r.Message(t))
	require.Equal(t, "hwid-2", e.get(key).Identifier, "a refused reset changes nothing")

	require.Equal(t, http.StatusOK, reset(key, true).Status, "force skips the cooldown")
	second := e.clock.Now()
	require.Equal(t, 2, e.get(key).TotalResets)

	e.clock.Set(second.Add(time.Hour))
	require.Equal(t, http.StatusOK, reset(key, false).Status, "the cooldown ends exactly ResetCooldown later")

	// Banned keys cannot be reset, even with force.
	require.Equal(t, http.StatusOK, e.api(http.MethodPost, usersPath(projectID)+"/blacklist",
		luarmor.BlacklistRequest{UserKey: key}).Status)
	r = reset(key, true)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, 3, e.get(key).TotalResets)

	require.Equal(t, http.StatusNotFound, reset("missing", false).Status)
	require.Equal(t, http.StatusBadRequest, reset("", false).Status)

	// A project with resets disabled refuses every reset, forced too, and
	// changes nothing; turned on again, resets work.
	other := e.create(luarmor.CreateUserRequest{Identifier: "hwid-3"})
	require.True(t, e.sb.SetHWIDResetsEnabled(projectID, false))
	for _, force := range []bool{false, true} {
		r = reset(other, force)
		require.Equal(t, http.StatusBadRequest, r.Status)
		require.Equal(t, "Reset Hwid is disabled for this script", r.Message(t))
	}
	require.Equal(t, "hwid-3", e.get(other).Identifier)
	require.Equal(t, 0, e.get(other).TotalResets)
	require.True(t, e.sb.SetHWIDResetsEnabled(projectID, true))
	require.Equal(t, http.StatusOK, reset(other, false).Status)

	// A negative cooldown disables it.
	free := newEnv(t, sandbox.Options{ResetCooldown: -1})
	k := free.create(nil)
	for range 3 {
		r := free.api(http.MethodPost, usersPath(projectID)+"/resethwid", luarmor.ResetHWIDRequest{UserKey: k})
		require.Equal(t, http.StatusOK, r.Status)
	}
}

func TestBlacklistAndUnbanTokenRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	blacklist := func(body any) response {
		return e.api(http.MethodPost, usersPath(projectID)+"/blacklist", body)
	}
	unban := func(token string) response {
		// No Authorization header: the token is the credential.
		return e.raw(http.MethodGet, usersPath(projectID)+"/unban?unban_token="+url.QueryEscape(token), "", nil)
	}
	key := e.create(luarmor.CreateUserRequest{Identifier: "hwid-1"})

	r := blacklist(luarmor.BlacklistRequest{UserKey: key, BanReason: "chargeback"})
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	u := e.get(key)
	require.True(t, u.IsBanned())
	require.Equal(t, "chargeback", u.BanReason)
	require.Equal(t, luarmor.NeverExpires, u.BanExpire)
	require.Equal(t, luarmor.StatusActive, u.Status, "a banned key keeps its status")
	first := u.UnbanToken
	require.True(t, isAlnum32(first), first)
	err := e.sb.Execute(projectID, key, "hwid-1")
	require.ErrorIs(t, err, sandbox.ErrBanned)
	require.Contains(t, err.Error(), "chargeback")

	require.Equal(t, http.StatusOK, blacklist(luarmor.BlacklistRequest{UserKey: key, BanReason: "again"}).Status)
	second := e.get(key).UnbanToken
	require.True(t, isAlnum32(second), second)
	require.NotEqual(t, first, second, "every blacklist issues a new token")

	r = unban(first)
	require.Equal(t, http.StatusNotFound, r.Status, "the old token is dead")
	require.True(t, e.get(key).IsBanned())

	r = unban(second)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, true, r.JSON(t)["success"])
	u = e.get(key)
	require.False(t, u.IsBanned())
	require.Equal(t, "", u.UnbanToken)
	require.NoError(t, e.sb.Execute(projectID, key, "hwid-1"))
	require.Equal(t, http.StatusNotFound, unban(second).Status, "a token unbans once")
	require.Equal(t, http.StatusBadRequest, unban("").Status)

	// A temporary ban lifts by itself.
	until := e.clock.Now().Unix() + 60
	require.Equal(t, http.StatusOK, blacklist(luarmor.BlacklistRequest{UserKey: key, BanExpire: &until}).Status)
	require.Equal(t, until, e.get(key).BanExpire)
	require.ErrorIs(t, e.sb.Execute(projectID, key, "hwid-1"), sandbox.ErrBanned)
	e.clock.Advance(60 * time.Second)
	require.NoError(t, e.sb.Execute(projectID, key, "hwid-1"))
	require.False(t, e.get(key).IsBanned())

	past := e.clock.Now().Unix()
	require.Equal(t, http.StatusBadRequest, blacklist(luarmor.BlacklistRequest{UserKey: key, BanExpire: &past}).Status)
	require.Equal(t, http.StatusNotFound, blacklist(luarmor.BlacklistRequest{UserKey: "missing"}).Status)
}

func TestScriptsAndStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	path := "/v3/projects/" + projectID + "/scripts/script-1"
	r := e.api(http.MethodPut, path, luarmor.UpdateScriptRequest{Script: "print('v1')", Lightning: true})
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, true, r.JSON(t)["success"])
	r = e.api(http.MethodPut, path, luarmor.UpdateScriptRequest{Script: "print('v2')"})
	require.Equal(t, http.StatusOK, r.Status)
	sc, ok := e.sb.Script(projectID, "script-1")
	require.True(t, ok)
	require.Equal(t, sandbox.ScriptUpload{Version: 2, Source: "print('v2')"}, sc)
	require.Equal(t, http.StatusBadRequest, e.api(http.MethodPut, path, map[string]any{"script": ""}).Status)

	key := e.create(nil)
	e.create(nil)
	require.NoError(t, e.sb.Execute(projectID, key, "hwid"))
	require.NoError(t, e.sb.Execute(projectID, key, "hwid"))

	r = e.api(http.MethodGet, "/v3/keys/"+apiKey+"/stats", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, true, r.JSON(t)["success"])
	var stats luarmor.KeyStats
	require.NoError(t, jsonUnmarshal(r.Body, &stats))
	require.Equal(t, int64(2), *stats.Stats.Users)
	require.Equal(t, []int64{2}, stats.ExecutionData.Executions, "one point for the month, 2025-03")
	require.Equal(t, *stats.Stats.Default.Obfuscations-2, *stats.Stats.Obfuscations, "two uploads spent two obfuscations")
	require.Equal(t, int64(1), *stats.Stats.Scripts)
	require.Equal(t, time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC).Unix(), *stats.Stats.ResetAt)

	body := e.api(http.MethodGet, "/v3/keys/"+apiKey+"/stats?noUsers=true", nil).JSON(t)
	require.NotContains(t, body["stats"], "users")
	require.Contains(t, body["stats"].(map[string]any)["default"], "users", "the plan's limit stays")
	require.Equal(t, []any{float64(2)}, body["execution_data"].(map[string]any)["executions"])

	details := e.api(http.MethodGet, "/v3/keys/"+apiKey+"/details", nil)
	var d struct{ luarmor.KeyDetails }
	require.NoError(t, jsonUnmarshal(details.Body, &d))
	require.Equal(t, "script-1", d.Projects[0].Scripts[0].ScriptID)
	require.Equal(t, "2", d.Projects[0].Scripts[0].ScriptVersion)
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		body := jsonBody(t, luarmor.CreateUserRequest{Note: fmt.Sprintf("n%d", i)})
		wg.Go(func() {
			r, err := e.send(t.Context(), http.MethodPost, usersPath(projectID), body, apiHeader(true))
			if err == nil && r.Status != http.StatusOK {
				err = errors.New(string(r.Body))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := map[string]bool{}
	for _, u := range e.sb.Users(projectID) {
		require.False(t, seen[u.UserKey])
		seen[u.UserKey] = true
	}
	require.Len(t, seen, n)
	require.Len(t, e.sb.Calls(), n)
}

func TestStatsReportThePlansUserLimit(t *testing.T) {
	t.Parallel()
	for opt, want := range map[int]int64{0: 100000, 25: 25, -1: 0} {
		e := newEnv(t, sandbox.Options{MaxUsers: opt})
		e.create(nil)
		var stats luarmor.KeyStats
		require.NoError(t, jsonUnmarshal(e.api(http.MethodGet, "/v3/keys/"+apiKey+"/stats", nil).Body, &stats))
		limit, known := stats.UserLimit()
		require.Equal(t, want, limit, "MaxUsers %d", opt)
		require.Equal(t, opt >= 0, known, "MaxUsers %d", opt)
		require.Equal(t, int64(1), *stats.Stats.Users)
	}
}

// Luarmor's documentation does not say what a PATCH of auth_expire does to
// a key nobody claimed; the sandbox does either, by its switch.
func TestEditExpiryOfAnUnclaimedKeyUnderBothBehaviours(t *testing.T) {
	t.Parallel()
	for _, asDays := range []bool{false, true} {
		e := newEnv(t, sandbox.Options{UnclaimedExpiryAsKeyDays: asDays})
		now := e.clock.Now().Unix()
		unclaimed := e.create(luarmor.CreateUserRequest{KeyDays: 30})
		claimed := e.create(luarmor.CreateUserRequest{KeyDays: 30, Identifier: "hwid-1"})
		for _, key := range []string{unclaimed, claimed} {
			r := e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: key, AuthExpire: ptr(now + 36*3600)})
			require.Equal(t, http.StatusOK, r.Status)
		}
		u := e.get(unclaimed)
		if asDays {
			require.Equal(t, luarmor.NeverExpires, u.AuthExpire, "kept as key_days, which start at first use")
			require.Equal(t, 2, u.KeyDays, "rounded up, as the create does")
		} else {
			require.Equal(t, now+36*3600, u.AuthExpire)
			require.Zero(t, u.KeyDays)
		}
		require.Equal(t, now+36*3600, e.get(claimed).AuthExpire, "a claimed key's clock runs, whichever the behaviour")

		// An expiry in the past expires any key.
		r := e.api(http.MethodPatch, usersPath(projectID), luarmor.UpdateUserRequest{UserKey: unclaimed, AuthExpire: ptr(now - 60)})
		require.Equal(t, http.StatusOK, r.Status)
		require.Equal(t, now-60, e.get(unclaimed).AuthExpire)
	}
}

// Any negative ban_expire bans for good, as the public clients send it;
// and the users listing carries a message like every other answer.
func TestNegativeBanExpireIsPermanentAndTheListingHasAMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	for _, expire := range []int64{-1, -2, -1700000000} {
		key := e.create(luarmor.CreateUserRequest{KeyDays: 30})
		r := e.api(http.MethodPost, usersPath(projectID)+"/blacklist", luarmor.BlacklistRequest{UserKey: key, BanReason: "x", BanExpire: ptr(expire)})
		require.Equal(t, http.StatusOK, r.Status, "ban_expire %d", expire)
		u := e.get(key)
		require.Equal(t, 1, u.Banned)
		require.Equal(t, luarmor.NeverExpires, u.BanExpire, "ban_expire %d is permanent", expire)
	}
	r, _ := e.list(url.Values{})
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "Success!", r.JSON(t)["message"])
}

// isAlnum32 reports whether s has the shape of a key or unban token the
// sandbox mints: 32 letters and digits.
func isAlnum32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
