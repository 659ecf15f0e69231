package sandbox_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

func TestHTTPHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Limit: 3, Window: time.Minute})
	// Hooks need no API key and no Content-Type.
	hook := func(method, path, body string) response {
		t.Helper()
		return e.raw(method, "/_sandbox"+path, body, nil)
	}

	key := e.create(luarmor.CreateUserRequest{KeyDays: 1}) // API call 1 of 3

	r := hook(http.MethodPost, "/execute", `{"project_id":"proj","user_key":"`+key+`","hwid":"pc-1"}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var executed struct {
		Success bool         `json:"success"`
		User    luarmor.User `json:"user"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &executed))
	require.True(t, executed.Success)
	require.Equal(t, "pc-1", executed.User.Identifier)
	require.Equal(t, e.clock.Now().Unix()+86400, executed.User.AuthExpire)

	r = hook(http.MethodPost, "/execute", `{"project_id":"proj","user_key":"`+key+`","hwid":"pc-2"}`)
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "hwid_mismatch", r.JSON(t)["error"])
	r = hook(http.MethodPost, "/execute", `{"project_id":"proj","user_key":"nope","hwid":"pc-1"}`)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "key_not_found", r.JSON(t)["error"])
	require.Equal(t, http.StatusBadRequest, hook(http.MethodPost, "/execute", `{"user":"x"}`).Status)

	r = hook(http.MethodGet, "/projects/proj/users", "")
	require.Equal(t, http.StatusOK, r.Status)
	var listed struct {
		Users []luarmor.User `json:"users"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &listed))
	require.Equal(t, []string{key}, keysOf(listed.Users))
	r = hook(http.MethodGet, "/projects/proj/users/"+key, "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, key, r.JSON(t)["user"].(map[string]any)["user_key"])
	require.Equal(t, http.StatusNotFound, hook(http.MethodGet, "/projects/proj/users/nope", "").Status)
	require.Equal(t, `{"success":true,"users":[]}`, string(hook(http.MethodGet, "/projects/none/users", "").Body))

	// Faults.
	r = hook(http.MethodPost, "/faults", `{"kind":"html502","path_contains":"/users","times":1}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, http.StatusBadGateway, e.api(http.MethodGet, usersPath(projectID), nil).Status) // API call 2 of 3
	require.Equal(t, http.StatusBadRequest, hook(http.MethodPost, "/faults", `{"kind":"meteor"}`).Status)
	require.Equal(t, http.StatusBadRequest, hook(http.MethodPost, "/faults", `{"kind":"latency","latency":"soon"}`).Status)
	require.Equal(t, http.StatusOK, hook(http.MethodPost, "/faults", `{"kind":"http500"}`).Status)
	require.Equal(t, http.StatusOK, hook(http.MethodDelete, "/faults", "").Status)

	// Call log.
	r = hook(http.MethodGet, "/calls", "")
	require.Equal(t, http.StatusOK, r.Status)
	var calls struct {
		Calls []struct {
			Method string            `json:"method"`
			Path   string            `json:"path"`
			Body   string            `json:"body"`
			Status int               `json:"status"`
			Fault  sandbox.FaultKind `json:"fault"`
		} `json:"calls"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &calls))
	require.Len(t, calls.Calls, 2, "hooks are not logged")
	require.Equal(t, `{"key_days":1}`, calls.Calls[0].Body)
	require.Equal(t, sandbox.FaultHTML502, calls.Calls[1].Fault)
	require.Equal(t, http.StatusBadGateway, calls.Calls[1].Status)
	require.Equal(t, http.StatusOK, hook(http.MethodDelete, "/calls", "").Status)
	require.Empty(t, e.sb.Calls())

	// The many hook requests above spent no budget: one API call is left.
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.Equal(t, http.StatusTooManyRequests, e.api(http.MethodGet, usersPath(projectID), nil).Status)

	r = hook(http.MethodPut, "/limit", `{"limit":-1}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.Equal(t, http.StatusBadRequest, hook(http.MethodPut, "/limit", `{"limit":1,"window":"x"}`).Status)

	require.Equal(t, http.StatusOK, hook(http.MethodPut, "/latency", `{"latency":"100ms"}`).Status)
	start := time.Now()
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	require.Equal(t, http.StatusOK, hook(http.MethodPut, "/latency", `{"latency":"0s"}`).Status)

	require.Equal(t, http.StatusOK, e.api(http.MethodPut, "/v3/projects/proj/scripts/s1", luarmor.UpdateScriptRequest{Script: "x"}).Status)
	r = hook(http.MethodGet, "/projects/proj/scripts/s1", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "x", r.JSON(t)["script"].(map[string]any)["source"])

	r = hook(http.MethodGet, "/nothing", "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, false, r.JSON(t)["success"])
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

func TestHWIDResetsHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Projects: []string{projectID}})
	key := e.create(luarmor.CreateUserRequest{Identifier: "pc-1"})
	hook := func(project, body string) response {
		t.Helper()
		return e.raw(http.MethodPut, "/_sandbox/projects/"+project+"/hwid-resets", body, nil)
	}
	reset := func() response {
		return e.api(http.MethodPost, usersPath(projectID)+"/resethwid", luarmor.ResetHWIDRequest{UserKey: key, Force: true})
	}

	require.Equal(t, http.StatusOK, hook(projectID, `{"enabled":false}`).Status)
	r := reset()
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Reset Hwid is disabled for this script", r.Message(t))

	require.Equal(t, http.StatusOK, hook(projectID, `{"enabled":true}`).Status)
	require.Equal(t, http.StatusOK, reset().Status)

	require.Equal(t, http.StatusNotFound, hook("unknown-project", `{"enabled":false}`).Status)
	require.Equal(t, http.StatusBadRequest, hook(projectID, `{"enabled":"no"}`).Status)
}
