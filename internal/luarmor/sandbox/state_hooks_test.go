package sandbox_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

func TestSetUserStateAgesBindsAndBansAKeyWithoutAnAPICall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Projects: []string{projectID}})
	key := e.create(luarmor.CreateUserRequest{KeyDays: 7})
	other := e.create(luarmor.CreateUserRequest{KeyDays: 7, Identifier: "pc-taken", DiscordID: "111111111111111111"})
	e.sb.ResetCalls()

	started := e.clock.Now().Add(-2 * time.Hour)
	u, err := e.sb.SetUserState(projectID, key, sandbox.UserState{
		Identifier: ptr("pc-1"), DiscordID: ptr("222222222222222222"), StartedAt: &started,
		Banned: ptr(true), BanReason: "abuse", TotalExecutions: ptr(3), LastReset: &started,
	})
	require.NoError(t, err)
	require.Equal(t, "pc-1", u.Identifier)
	require.Equal(t, luarmor.StatusActive, u.Status)
	require.Equal(t, "222222222222222222", u.DiscordID)
	require.Equal(t, started.Unix()+7*86400, u.AuthExpire, "the timer started at StartedAt")
	require.Zero(t, u.KeyDays)
	require.True(t, u.IsBanned())
	require.Equal(t, "abuse", u.BanReason)
	require.Equal(t, luarmor.NeverExpires, u.BanExpire)
	require.Len(t, u.UnbanToken, 32)
	require.Equal(t, 3, u.TotalExecutions)
	require.Equal(t, started.Unix(), u.LastReset)
	require.Equal(t, 1, u.TotalResets)
	stored, ok := e.sb.User(projectID, key)
	require.True(t, ok)
	require.Equal(t, u, stored)
	require.Empty(t, e.sb.Calls(), "a hook is no API request")

	// A banned key refuses execution, as a dashboard ban does.
	require.ErrorIs(t, e.sb.Execute(projectID, key, "pc-1"), sandbox.ErrBanned)
	u, err = e.sb.SetUserState(projectID, key, sandbox.UserState{Banned: ptr(false), Identifier: ptr("")})
	require.NoError(t, err)
	require.False(t, u.IsBanned())
	require.Empty(t, u.UnbanToken)
	require.Equal(t, luarmor.StatusReset, u.Status)

	// Refused whole: nothing of a refused change is applied.
	for name, st := range map[string]sandbox.UserState{
		"started twice":       {StartedAt: &started},
		"HWID of another key": {Identifier: ptr("pc-taken"), TotalExecutions: ptr(9)},
		"Discord of another":  {DiscordID: ptr("111111111111111111")},
		"invalid Discord":     {DiscordID: ptr("not-a-snowflake")},
		"negative executions": {TotalExecutions: ptr(-1)},
	} {
		_, err := e.sb.SetUserState(projectID, key, st)
		require.ErrorIs(t, err, sandbox.ErrInvalidState, name)
	}
	after, _ := e.sb.User(projectID, key)
	require.Equal(t, 3, after.TotalExecutions)
	_, err = e.sb.SetUserState(projectID, "nope", sandbox.UserState{})
	require.True(t, errors.Is(err, sandbox.ErrKeyNotFound))
	_, err = e.sb.SetUserState("unknown", other, sandbox.UserState{})
	require.True(t, errors.Is(err, sandbox.ErrProjectNotFound))
}

func TestSetUserStateHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Projects: []string{projectID}})
	key := e.create(luarmor.CreateUserRequest{KeyDays: 1})
	hook := func(k, body string) response {
		t.Helper()
		return e.raw(http.MethodPatch, "/_sandbox/projects/"+projectID+"/users/"+k, body, nil)
	}

	at := e.clock.Now().Add(-time.Hour).UTC()
	r := hook(key, `{"identifier":"pc-9","started_at":"`+at.Format(time.RFC3339)+`","banned":true,"ban_reason":"leaked"}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var out struct {
		User luarmor.User `json:"user"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &out))
	require.Equal(t, "pc-9", out.User.Identifier)
	require.Equal(t, at.Unix()+86400, out.User.AuthExpire)
	require.True(t, out.User.IsBanned())

	require.Equal(t, http.StatusBadRequest, hook(key, `{"started_at":"`+at.Format(time.RFC3339)+`"}`).Status, "the timer runs already")
	require.Equal(t, http.StatusBadRequest, hook(key, `{"hwid":"pc-1"}`).Status, "unknown field")
	require.Equal(t, http.StatusNotFound, hook("nope", `{}`).Status)
}
