package sandbox_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

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
