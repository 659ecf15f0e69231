package sandbox_test

import (
	"errors"
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

func TestKeyDaysActivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	key := e.create(luarmor.CreateUserRequest{KeyDays: 30, DiscordID: discord1})

	u := e.get(key)
	require.Equal(t, luarmor.NeverExpires, u.AuthExpire, "the timer waits for the first execution")
	require.Equal(t, 30, u.KeyDays)

	// Stocked keys do not age.
	e.clock.Advance(5 * 24 * time.Hour)
	require.Equal(t, luarmor.NeverExpires, e.get(key).AuthExpire)

	require.NoError(t, e.sb.Execute(projectID, key, "hwid-a"))
	activated := e.clock.Now()
	u = e.get(key)
	require.Equal(t, activated.Unix()+30*86400, u.AuthExpire)
	require.Equal(t, 0, u.KeyDays)
	require.Equal(t, "hwid-a", u.Identifier)
	require.Equal(t, luarmor.StatusActive, u.Status)
	require.Equal(t, 1, u.TotalExecutions)

	// The timer starts once.
	e.clock.Advance(time.Hour)
	require.NoError(t, e.sb.Execute(projectID, key, "hwid-a"))
	require.Equal(t, activated.Unix()+30*86400, e.get(key).AuthExpire)
	require.Equal(t, 2, e.get(key).TotalExecutions)

	err := e.sb.Execute(projectID, key, "hwid-b")
	require.ErrorIs(t, err, sandbox.ErrHWIDMismatch)
	require.Equal(t, 2, e.get(key).TotalExecutions, "a refused execution changes nothing")

	e.clock.Set(time.Unix(activated.Unix()+30*86400-1, 0))
	require.NoError(t, e.sb.Execute(projectID, key, "hwid-a"))
	e.clock.Set(time.Unix(activated.Unix()+30*86400, 0))
	require.ErrorIs(t, e.sb.Execute(projectID, key, "hwid-a"), sandbox.ErrExpired)

	require.ErrorIs(t, e.sb.Execute(projectID, "missing", "hwid-a"), sandbox.ErrKeyNotFound)
	require.ErrorIs(t, e.sb.Execute(projectID, key, " "), sandbox.ErrInvalidHWID)
}
