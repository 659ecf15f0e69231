package sandbox_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor/sandbox"
)

// flakyAPI is the fault mix of a Luarmor having a bad day: 35% of requests
// fail, a fifth of them after the change was applied.
var flakyAPI = []sandbox.RandomFault{
	{Kind: sandbox.FaultHTTP500, Rate: 0.10},
	{Kind: sandbox.FaultApplyThenDrop, Rate: 0.20},
	{Kind: sandbox.FaultHTML502, Rate: 0.05},
}

// faultsOf counts the call log's requests per injected fault ("" = none).
func faultsOf(calls []sandbox.Call) map[sandbox.FaultKind]int {
	n := map[sandbox.FaultKind]int{}
	for _, c := range calls {
		n[c.Fault]++
	}
	return n
}

func TestRandomFaultsHitTheirShareOfRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Seed: 7})
	e.sb.SetRandomFaults(flakyAPI...)

	const requests = 1000
	for range requests {
		// POST, so that Go's transport never repeats a dropped request.
		_, _ = e.send(t.Context(), http.MethodPost, usersPath(projectID), `{}`, apiHeader(true))
	}
	calls := e.sb.Calls()
	require.Len(t, calls, requests)
	got := faultsOf(calls)
	// Each share within a few standard deviations of its rate; the seed
	// makes the draw the same on every run.
	require.InDelta(t, 100, got[sandbox.FaultHTTP500], 30)
	require.InDelta(t, 200, got[sandbox.FaultApplyThenDrop], 40)
	require.InDelta(t, 50, got[sandbox.FaultHTML502], 20)
	require.Equal(t, requests, got[""]+got[sandbox.FaultHTTP500]+got[sandbox.FaultApplyThenDrop]+got[sandbox.FaultHTML502],
		"one fault at most per request")
	// 500 and 502 apply nothing; a dropped answer was applied.
	require.Len(t, e.sb.Users(projectID), got[""]+got[sandbox.FaultApplyThenDrop])
	for _, c := range calls {
		switch c.Fault {
		case sandbox.FaultHTTP500:
			require.Equal(t, http.StatusInternalServerError, c.Status)
		case sandbox.FaultHTML502:
			require.Equal(t, http.StatusBadGateway, c.Status)
		default:
			require.Equal(t, http.StatusOK, c.Status)
		}
	}
}

func TestRandomFaultsReplayWithTheirSeed(t *testing.T) {
	t.Parallel()
	sequence := func(seed uint64) []sandbox.FaultKind {
		e := newEnv(t, sandbox.Options{Seed: seed})
		e.sb.SetRandomFaults(flakyAPI...)
		for range 60 {
			_, _ = e.send(t.Context(), http.MethodPost, usersPath(projectID), `{}`, apiHeader(true))
		}
		var kinds []sandbox.FaultKind
		for _, c := range e.sb.Calls() {
			kinds = append(kinds, c.Fault)
		}
		return kinds
	}
	first := sequence(42)
	require.Equal(t, first, sequence(42), "the same seed, the same faults")
	require.NotEqual(t, first, sequence(43))
}

func TestRandomFaultsMatchingPriorityAndClearing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	list := func() int { return e.api(http.MethodGet, usersPath(projectID), nil).Status }
	create := func() int { return e.api(http.MethodPost, usersPath(projectID), map[string]any{}).Status }

	e.sb.SetRandomFaults(sandbox.RandomFault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTTP500, Rate: 1})
	require.Equal(t, http.StatusOK, list(), "another method is spared")
	require.Equal(t, http.StatusInternalServerError, create())

	// A queued fault comes first: tests that script one exact failure keep
	// it even on a flaky sandbox.
	e.sb.InjectFault(sandbox.Fault{Method: http.MethodPost, Kind: sandbox.FaultHTML502})
	require.Equal(t, http.StatusBadGateway, create())
	require.Equal(t, http.StatusInternalServerError, create())

	e.sb.SetRandomFaults() // none
	require.Equal(t, http.StatusOK, create())
	e.sb.SetRandomFaults(sandbox.RandomFault{Kind: sandbox.FaultRateLimit, Rate: 1})
	require.Equal(t, http.StatusTooManyRequests, list())
	e.sb.ClearFaults()
	require.Equal(t, http.StatusOK, list())

	require.Panics(t, func() { e.sb.SetRandomFaults(sandbox.RandomFault{Kind: "nope", Rate: 0.1}) })
	require.Panics(t, func() { e.sb.SetRandomFaults(sandbox.RandomFault{Kind: sandbox.FaultHTTP500, Rate: 1.5}) })
	require.Panics(t, func() {
		e.sb.SetRandomFaults(sandbox.RandomFault{Kind: sandbox.FaultHTTP500, Rate: 0.6}, sandbox.RandomFault{Kind: sandbox.FaultHTML502, Rate: 0.6})
	}, "rates adding up to more than 1")
}

func TestLatencyRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Seed: 1})
	const lo, hi = 20 * time.Millisecond, 60 * time.Millisecond
	e.sb.SetLatencyRange(lo, hi)
	for range 12 {
		start := time.Now()
		require.Equal(t, http.StatusOK, e.api(http.MethodGet, usersPath(projectID), nil).Status)
		calls := e.sb.Calls()
		waited := calls[len(calls)-1].Latency
		require.GreaterOrEqual(t, time.Since(start), waited, "the answer waited its draw")
	}
	distinct := map[time.Duration]bool{}
	for _, c := range e.sb.Calls() {
		require.GreaterOrEqual(t, c.Latency, lo)
		require.LessOrEqual(t, c.Latency, hi)
		distinct[c.Latency] = true
	}
	require.Greater(t, len(distinct), 1, "the wait varies")

	// A latency fault adds to the draw.
	e.sb.InjectFault(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: 100 * time.Millisecond})
	e.api(http.MethodGet, usersPath(projectID), nil)
	calls := e.sb.Calls()
	require.GreaterOrEqual(t, calls[len(calls)-1].Latency, lo+100*time.Millisecond)

	e.sb.SetLatency(0)
	e.api(http.MethodGet, usersPath(projectID), nil)
	calls = e.sb.Calls()
	require.Zero(t, calls[len(calls)-1].Latency)
}

func TestRandomFaultAndLatencyRangeHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	hook := func(method, path, body string) response {
		t.Helper()
		return e.raw(method, "/_sandbox"+path, body, nil)
	}

	r := hook(http.MethodPut, "/faults/random", `{"faults":[{"method":"POST","kind":"http500","rate":1}]}`)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	require.Equal(t, http.StatusInternalServerError, e.api(http.MethodPost, usersPath(projectID), map[string]any{}).Status)
	for _, bad := range []string{
		`{"faults":[{"kind":"meteor","rate":0.1}]}`,
		`{"faults":[{"kind":"http500","rate":2}]}`,
		`{"faults":[{"kind":"http500","rate":0.7},{"kind":"html502","rate":0.7}]}`,
		`{"faults":[{"kind":"latency","rate":0.1,"latency":"soon"}]}`,
	} {
		require.Equal(t, http.StatusBadRequest, hook(http.MethodPut, "/faults/random", bad).Status, bad)
	}
	require.Equal(t, http.StatusOK, hook(http.MethodDelete, "/faults", "").Status)
	require.Equal(t, http.StatusOK, e.api(http.MethodPost, usersPath(projectID), map[string]any{}).Status, "cleared")

	require.Equal(t, http.StatusOK, hook(http.MethodPut, "/latency", `{"latency":"10ms","max":"30ms"}`).Status)
	require.Equal(t, http.StatusBadRequest, hook(http.MethodPut, "/latency", `{"latency":"10ms","max":"later"}`).Status)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := e.send(ctx, http.MethodGet, usersPath(projectID), "", apiHeader(false))
	require.NoError(t, err)
	r = hook(http.MethodGet, "/calls", "")
	var calls struct {
		Calls []struct {
			Fault   sandbox.FaultKind `json:"fault"`
			Latency string            `json:"latency"`
		} `json:"calls"`
	}
	require.NoError(t, jsonUnmarshal(r.Body, &calls))
	require.Len(t, calls.Calls, 3)
	require.Equal(t, sandbox.FaultHTTP500, calls.Calls[0].Fault)
	waited, err := time.ParseDuration(calls.Calls[2].Latency)
	require.NoError(t, err)
	require.GreaterOrEqual(t, waited, 10*time.Millisecond)
	require.LessOrEqual(t, waited, 30*time.Millisecond)
}
