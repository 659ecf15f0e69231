package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
)

func TestFaultHTTP500(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTTP500})

	r := e.api(http.MethodPost, usersPath(projectID), luarmor.CreateUserRequest{Note: "x"})
	require.Equal(t, http.StatusInternalServerError, r.Status)
	require.Equal(t, "application/json; charset=utf-8", r.Header.Get("Content-Type"))
	require.Equal(t, false, r.JSON(t)["success"])
	require.Empty(t, e.sb.Users(projectID), "a 500 fault does not apply the request")

	e.create(nil)
	calls := e.sb.Calls()
	require.Len(t, calls, 2)
	require.Equal(t, sandbox.FaultHTTP500, calls[0].Fault)
	require.Equal(t, http.StatusInternalServerError, calls[0].Status)
	require.JSONEq(t, `{"note":"x"}`, string(calls[0].Body))
	require.Equal(t, sandbox.FaultKind(""), calls[1].Fault)
	require.Equal(t, http.StatusOK, calls[1].Status)
}

func TestFaultHTMLPages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind   sandbox.FaultKind
		status int
		text   string
	}{
		{sandbox.FaultHTML502, http.StatusBadGateway, "502 Bad Gateway"},
		{sandbox.FaultHTML403, http.StatusForbidden, "Access denied"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			e.sb.InjectFault(sandbox.Fault{Kind: tc.kind})
			r := e.api(http.MethodPost, usersPath(projectID), map[string]any{})
			require.Equal(t, tc.status, r.Status)
			require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/html"))
			require.Contains(t, string(r.Body), tc.text)
			require.False(t, json.Valid(r.Body), "edge pages are not JSON")
			require.Empty(t, e.sb.Users(projectID))
			require.Equal(t, tc.kind, e.sb.Calls()[0].Fault)
		})
	}
}

func TestFaultRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{}) // budget disabled
	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultRateLimit, Times: 2})
	for range 2 {
		r := e.api(http.MethodPost, usersPath(projectID), map[string]any{})
		require.Equal(t, http.StatusTooManyRequests, r.Status)
		require.Equal(t, "Too many requests, slow down.", r.Message(t))
	}
	require.Empty(t, e.sb.Users(projectID))
	e.create(nil)
}

func TestFaultRefuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRefuse})
	r := e.api(http.MethodPost, usersPath(projectID), luarmor.CreateUserRequest{Note: "x"})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Request refused.", r.Message(t))
	require.Empty(t, e.sb.Users(projectID), "a refusal does not apply the request")
	require.Equal(t, sandbox.FaultRefuse, e.sb.Calls()[0].Fault)
	e.create(nil)

	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRefuse, Message: "Discord ID is taken"})
	r = e.api(http.MethodPost, usersPath(projectID), luarmor.CreateUserRequest{Note: "y"})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "Discord ID is taken", r.Message(t), "a refusal in the words the test gives")
	require.Len(t, e.sb.Users(projectID), 1)
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})

	e.sb.InjectFault(sandbox.Fault{Method: http.MethodGet, Kind: sandbox.FaultLatency, Latency: 150 * time.Millisecond})
	start := time.Now()
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)

	// A client that gives up during the wait leaves nothing applied.
	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, Kind: sandbox.FaultLatency, Latency: 400 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := e.send(ctx, http.MethodPost, usersPath(projectID), `{}`, apiHeader(true))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Never(t, func() bool { return len(e.sb.Users(projectID)) > 0 }, 700*time.Millisecond, 20*time.Millisecond)
	calls := e.sb.Calls()
	require.Equal(t, sandbox.FaultLatency, calls[1].Fault)
	require.Equal(t, 0, calls[1].Status, "no answer was produced")
}

func TestSetLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.sb.SetLatency(100 * time.Millisecond)
	start := time.Now()
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	e.sb.SetLatency(0)
}

func TestFaultApplyThenDrop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultApplyThenDrop})

	_, err := e.send(t.Context(), http.MethodPost, usersPath(projectID), `{"note":"ref-1"}`, apiHeader(true))
	require.Error(t, err, "the client sees a connection error")

	users := e.sb.Users(projectID)
	require.Len(t, users, 1, "yet the key was created")
	require.Equal(t, "ref-1", users[0].Note)
	calls := e.sb.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, sandbox.FaultApplyThenDrop, calls[0].Fault)
	require.Equal(t, http.StatusOK, calls[0].Status, "the status of the lost answer")

	e.create(nil)
	require.Len(t, e.sb.Users(projectID), 2)
}

func TestFaultTimesAndMatching(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	list := func() int { return e.api(http.MethodGet, usersPath(projectID), nil).Status }

	e.sb.InjectFault(sandbox.Fault{Method: http.MethodGet, PathContains: "/users", Kind: sandbox.FaultHTTP500, Times: 2})
	e.create(nil)                                                                                     // other method
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, "/v3/keys/"+apiKey+"/details", nil).Status) // other path
	require.Equal(t, http.StatusInternalServerError, list())
	require.Equal(t, http.StatusInternalServerError, list())
	require.Equal(t, http.StatusOK, list())

	// Times 0 means once; paths match in their logged, redacted form.
	e.sb.InjectFault(sandbox.Fault{PathContains: "{api_key}/details", Kind: sandbox.FaultHTTP500})
	require.Equal(t, http.StatusInternalServerError, e.api(http.MethodGet, "/v3/keys/"+apiKey+"/details", nil).Status)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, "/v3/keys/"+apiKey+"/details", nil).Status)

	// Faults apply in injection order, one per request.
	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTML502})
	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultRateLimit})
	require.Equal(t, http.StatusBadGateway, list())
	require.Equal(t, http.StatusTooManyRequests, list())
	require.Equal(t, http.StatusOK, list())

	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTTP500, Times: 5})
	e.sb.ClearFaults()
	require.Equal(t, http.StatusOK, list())

	require.Panics(t, func() { e.sb.InjectFault(sandbox.Fault{Kind: "nope"}) })
}

func TestCallLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	key := e.create(luarmor.CreateUserRequest{Note: "a"})
	e.api(http.MethodDelete, usersPath(projectID)+"?user_key="+key, nil)

	calls := e.sb.Calls()
	require.Len(t, calls, 2)
	require.Equal(t, e.clock.Now(), calls[0].Time)
	require.Equal(t, http.MethodPost, calls[0].Method)
	require.Equal(t, usersPath(projectID), calls[0].Path)
	require.Equal(t, `{"note":"a"}`, string(calls[0].Body))
	require.Equal(t, "user_key="+key, calls[1].Query)
	require.Equal(t, http.StatusOK, calls[1].Status)

	calls[0].Body[0] = 'X' // a copy
	require.Equal(t, `{"note":"a"}`, string(e.sb.Calls()[0].Body))

	e.sb.ResetCalls()
	require.Empty(t, e.sb.Calls())
}
