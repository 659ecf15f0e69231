package main

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor/sandbox"
)

// A purchase whose webhook was sent at t0 and whose key showed wait later.
func seenBuy(id string, t0 time.Time, wait time.Duration, keys ...string) buyerResult {
	return buyerResult{sessionID: id, sent: t0, answered: 2 * time.Millisecond, webhookOK: true, seenAt: t0.Add(wait), keys: keys}
}

// The checks pass a run where every buyer saw its one key, no two orders
// share a key and Luarmor's creations match the run; each departure from
// that is reported, naming the purchase by its number.
func TestBurstFailuresReportEveryMissingDuplicateOrMisplacedKey(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	good := []buyerResult{seenBuy("cs_a", t0, 10*time.Millisecond, "KEY_A"), seenBuy("cs_b", t0, 20*time.Millisecond, "KEY_B")}
	require.Empty(t, burstFailures("stocked", good, []int{0, 0}, true, time.Minute))
	require.Empty(t, burstFailures("made", good, []int{1, 2}, false, time.Minute), "a retried creation is not a failure")

	notSeen := append([]buyerResult(nil), good...)
	notSeen[1].seenAt, notSeen[1].keys = time.Time{}, nil
	require.Equal(t, []string{"stocked: purchase 2: its buyer saw no key within 1m0s of the webhook"},
		burstFailures("stocked", notSeen, []int{0, 0}, true, time.Minute))

	twice := []buyerResult{good[0], seenBuy("cs_b", t0, time.Millisecond, "KEY_A")}
	require.Equal(t, []string{"stocked: purchases 1 and 2 were shown the same key"},
		burstFailures("stocked", twice, []int{0, 0}, true, time.Minute))

	twoKeys := []buyerResult{good[0], seenBuy("cs_b", t0, time.Millisecond, "KEY_B", "KEY_C")}
	require.Equal(t, []string{"stocked: purchase 2: one unit bought, 2 keys shown"},
		burstFailures("stocked", twoKeys, []int{0, 0}, true, time.Minute))

	require.Equal(t, []string{"stocked: purchase 1: sold from stock, yet 1 Luarmor key creations name its order"},
		burstFailures("stocked", good, []int{1, 0}, true, time.Minute))
	require.Equal(t, []string{"made: purchase 2: made to order, yet no Luarmor key creation names its order (the creation count would miss stocked ones too)"},
		burstFailures("made", good, []int{1, 0}, false, time.Minute))

	refused := []buyerResult{good[0], {sessionID: "cs_b"}}
	require.Equal(t, []string{"stocked: purchase 2: its webhook was not accepted"},
		burstFailures("stocked", refused, []int{0, 0}, true, time.Minute))
	revoked := []buyerResult{good[0], {sessionID: "cs_b", webhookOK: true, ended: "revoked"}}
	require.Equal(t, []string{"stocked: purchase 2: the order ended revoked instead of fulfilled"},
		burstFailures("stocked", revoked, []int{0, 0}, true, time.Minute))
}

// Waits count the seen purchases only, answer times the accepted webhooks
// only; both come out sorted for the percentiles.
func TestSummarizeBuysSortsTheSeenWaitsAndTheAnswers(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	buys := []buyerResult{
		seenBuy("cs_1", t0, 30*time.Millisecond, "K1"),
		seenBuy("cs_2", t0.Add(time.Second), 10*time.Millisecond, "K2"),
		{sessionID: "cs_3", sent: t0, answered: time.Millisecond, webhookOK: true, early: 2},
		{sessionID: "cs_4", sent: t0},
		seenBuy("cs_5", t0, 20*time.Millisecond, "K5"),
	}
	buys[0].answered = 5 * time.Millisecond
	s := summarizeBuys(buys)
	require.Equal(t, 3, s.seen)
	require.Equal(t, 2, s.early)
	require.Equal(t, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}, s.waits)
	require.Equal(t, []time.Duration{time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond}, s.answers,
		"the refused webhook has no answer time")
	require.Equal(t, 20*time.Millisecond, percentile(s.waits, 50))
	require.Equal(t, 30*time.Millisecond, percentile(s.waits, 99))
}

// Only key creations count, each for the orders its note names; note
// rewrites and look-ups naming an order, and creations for the stock
// (no order named), do not.
func TestCreatesForCountsTheCreationsNamingEachOrder(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	create := func(note string) sandbox.Call {
		return sandbox.Call{Time: at, Method: http.MethodPost, Path: "/v3/projects/p1/users", Body: []byte(`{"note":"` + note + `"}`), Status: http.StatusOK}
	}
	calls := []sandbox.Call{
		create("stock"),
		create("cs_made buyer@example.com ref:fk_1"),
		create("cs_made buyer@example.com ref:fk_1"),
		{Time: at, Method: http.MethodPatch, Path: "/v3/projects/p1/users", Body: []byte(`{"note":"cs_sold buyer@example.com"}`)},
		{Time: at, Method: http.MethodGet, Path: "/v3/projects/p1/users", Query: "search=cs_sold"},
	}
	require.Equal(t, []int{2, 0, 0}, createsFor(calls, []string{"cs_made", "cs_sold", "cs_none"}))
}

// Each buyer has its own address, so the service's per-client bounds
// treat the buyers as the distinct people they are.
func TestBuyerAddressesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for n := range 70000 {
		a := buyerAddress(n)
		require.False(t, seen[a], "address %s given twice", a)
		seen[a] = true
	}
	require.Equal(t, "10.0.0.1", buyerAddress(0))
}

// A goal is met only by a run where every key was seen.
func TestBurstGoalsNeedEveryKeySeen(t *testing.T) {
	runs := []BurstRun{
		{Key: burstIdleStocked, Purchases: 10, Seen: 10, P50Ms: 12},
		{Key: burstStocked, Purchases: 100, Seen: 99, P50Ms: 40, P99Ms: 200},
		{Key: burstMadeToOrder, Purchases: 100, Seen: 100, P50Ms: 95},
	}
	var met []bool
	for _, g := range burstGoals(runs) {
		met = append(met, g.Met)
	}
	require.Equal(t, []bool{true, false, false, false}, met)
}

// The burst scenario, run small, as `make test` runs it: with a stock
// every buyer sees its key with no Luarmor key creation for its order;
// made to order every order has its creation; no key is seen twice.
func TestBurstScenarioSellsFromStockWithoutCreatingKeysAndMakesToOrderWith(t *testing.T) {
	b := setupBench(t)
	const purchases = 10
	o := burstOptions{purchases: purchases, spread: 200 * time.Millisecond, latency: 5 * time.Millisecond, idle: 2,
		timeout: time.Minute, fillTimeout: time.Minute}
	rep, err := burstScenario(context.Background(), b.dbs, b.tmpl, slog.New(slog.DiscardHandler), o, t.Logf)
	require.NoError(t, err)
	require.Empty(t, rep.Failures)
	require.Len(t, rep.Runs, 3)
	idle, stocked, made := rep.Runs[0], rep.Runs[1], rep.Runs[2]
	require.Equal(t, burstIdleStocked, idle.Key)
	require.Equal(t, 2, idle.Seen)
	require.Equal(t, purchases, stocked.Seen)
	require.Zero(t, idle.LuarmorCreates+stocked.LuarmorCreates, "no Luarmor key creation names a stocked order")
	require.Equal(t, purchases, made.Seen)
	require.GreaterOrEqual(t, made.LuarmorCreates, purchases, "every order made to order, one creation each")
	require.Positive(t, stocked.P50Ms)
	require.LessOrEqual(t, stocked.P50Ms, stocked.MaxMs)

	// Every run says where its time went, by the path it took: a stocked
	// key is recorded by the webhook's own job, a made one after create_key.
	for _, r := range rep.Runs {
		require.Empty(t, r.StepsError, r.Name)
	}
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "key recorded", "key seen by the poll"},
		stepsOf(stocked))
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "create_key started", "key recorded", "key seen by the poll"},
		stepsOf(made))
	require.Equal(t, stepsOf(made), stepNames([]BurstRun{stocked, made}), "the report's rows keep each step in its place")
}

func stepsOf(r BurstRun) []string {
	var names []string
	for _, st := range r.Steps {
		names = append(names, st.Step)
	}
	return names
}
