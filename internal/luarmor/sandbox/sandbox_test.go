package sandbox_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor/sandbox"
)

func TestBudgetWindowBoundary(t *testing.T) {
	t.Parallel()
	const window = 10 * time.Second
	e := newEnv(t, sandbox.Options{Limit: 3, Window: window})
	t0 := e.clock.Now()
	list := func() response { return e.api(http.MethodGet, usersPath(projectID), nil) }

	// Exactly Limit requests fit in the window.
	for range 3 {
		require.Equal(t, http.StatusOK, list().Status)
	}

	// Request Limit+1, one nanosecond before the first leaves the window.
	e.clock.Set(t0.Add(window - time.Nanosecond))
	r := list()
	require.Equal(t, http.StatusTooManyRequests, r.Status)
	require.Equal(t, map[string]any{"success": false, "message": "Too many requests, slow down."}, r.JSON(t))

	// Exactly Window after the first three they are out of (t-Window, t]; the
	// refused request is still in and counts, so two more fit, not three.
	e.clock.Set(t0.Add(window))
	require.Equal(t, http.StatusOK, list().Status)
	require.Equal(t, http.StatusOK, list().Status)
	require.Equal(t, http.StatusTooManyRequests, list().Status)

	var statuses []int
	for _, c := range e.sb.Calls() {
		statuses = append(statuses, c.Status)
	}
	require.Equal(t, []int{200, 200, 200, 429, 200, 200, 429}, statuses)
}

func TestBudgetCountsEveryAPIRequestButStatusAndHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Limit: 4, Window: time.Minute})

	// An auth failure, an unban (no key needed), an unknown route and a
	// faulted request all reach the API and spend budget.
	require.Equal(t, http.StatusForbidden, e.raw(http.MethodGet, usersPath(projectID), "", nil).Status)
	require.Equal(t, http.StatusNotFound, e.raw(http.MethodGet, usersPath(projectID)+"/unban?unban_token=nope", "", nil).Status)
	require.Equal(t, http.StatusNotFound, e.api(http.MethodGet, "/v3/nothing", nil).Status)
	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultHTTP500})
	require.Equal(t, http.StatusInternalServerError, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.Equal(t, http.StatusTooManyRequests, e.api(http.MethodGet, usersPath(projectID), nil).Status)

	// GET /status and the hooks stay available with the budget spent.
	for range 3 {
		require.Equal(t, http.StatusOK, e.raw(http.MethodGet, "/status", "", nil).Status)
		require.Equal(t, http.StatusOK, e.raw(http.MethodGet, "/_sandbox/calls", "", nil).Status)
	}
	require.Len(t, e.sb.Calls(), 8) // 5 API calls + 3 status calls; hooks are not logged
}

func TestBudgetDisabledAndSetLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Limit: -1})
	for range 100 {
		require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	}

	// Requests received while the budget was disabled are not counted.
	e.sb.SetLimit(2, time.Hour)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	e.clock.Advance(30 * time.Minute)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.Equal(t, http.StatusTooManyRequests, e.api(http.MethodGet, usersPath(projectID), nil).Status)

	// Counted requests (the refused one too) stay counted when the limit
	// changes: three are in the window, so one more fits under a limit of 4.
	e.sb.SetLimit(4, time.Hour)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	require.Equal(t, http.StatusTooManyRequests, e.api(http.MethodGet, usersPath(projectID), nil).Status)
}

func TestBudgetDefaultsToSixtyPerMinute(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	sb := sandbox.New(sandbox.Options{Now: clock.Now})
	e := &env{t: t, sb: sb, clock: clock}
	e.srv = newServer(t, sb)
	for range 60 {
		require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	}
	require.Equal(t, http.StatusTooManyRequests, e.api(http.MethodGet, usersPath(projectID), nil).Status)
	clock.Advance(time.Minute)
	require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
}
