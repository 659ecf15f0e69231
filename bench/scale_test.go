package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/retention"
)

func durations(msList ...int) []time.Duration {
	out := make([]time.Duration, len(msList))
	for i, v := range msList {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// A row's percentiles are nearest-rank over its sorted latencies, and its
// goal is checked on the percentile it names.
func TestScaleRowChecksItsGoalOnTheNamedPercentile(t *testing.T) {
	lat := durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
		21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
		41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
		61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
		81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 400)
	sortDurations(lat)

	r := newScaleRow("buyer", "order page", "GET /orders/{cs_…}", lat, 100*time.Millisecond, "p99")
	require.Equal(t, 100, r.Samples)
	require.Equal(t, 50.0, r.P50Ms)
	require.Equal(t, 99.0, r.P99Ms)
	require.Equal(t, 400.0, r.MaxMs)
	require.True(t, r.Met, "p99 99 ms is under 100 ms; the one slower answer is past p99")

	r = newScaleRow("periodic", "resume_orders", "", lat, 50*time.Millisecond, "p50")
	require.False(t, r.Met, "p50 50 ms is not under 50 ms")
	r = newScaleRow("periodic", "resume_orders", "", lat, 51*time.Millisecond, "p50")
	require.True(t, r.Met)

	r = newScaleRow("periodic", "prune", "", lat, 0, "")
	require.True(t, r.Met, "a row without a goal never fails one")

	r = newScaleRow("buyer", "order page", "", nil, time.Second, "p99")
	require.False(t, r.Met, "a row with no successful request has not met its goal")
	require.Zero(t, r.P99Ms)
}

// The report prints every row with its goal and failures, intake at both
// sizes with their ratio, the bytes per order of each large table with the
// small ones summed, the database's before and after, and each phase.
func TestScaleReportPrintsEveryRowBytesAndPhases(t *testing.T) {
	rep := &ScaleReport{
		Orders: 1_000_000, LoadAtStart: "0.10 0.20 0.30", LoadAtEnd: "1.00 1.10 1.20", RowBudgetS: 15,
		Phases: []Phase{{Name: "seed 1000000 orders and ANALYZE", Seconds: 301.25}, {Name: "whole run", Seconds: 512}},
		Rows: []ScaleRow{
			newScaleRow("buyer", "order page", "GET /orders/{cs_…}", durations(1, 2, 3), lookupGoal, "p99"),
			{Group: "console", Name: "search by email", How: "POST /console/orders q=…", GoalMs: 15, GoalOn: "p99",
				Errors: 3, FirstError: "HTTP 500", Cut: true},
			newScaleRow("periodic", "prune batch", "retention.Pruner", durations(70), 0, ""),
		},
		Intake:      []ScaleIntake{{Orders: 1_000_000, EventsPerSecond: 900, P50Ms: 10, P99Ms: 40}, {Orders: 10_000, EventsPerSecond: 1000}},
		IntakeRatio: 0.9,
		Storage: &ScaleBytes{Orders: 1_000_000, DatabaseBefore: 5_300_000_000, DatabaseAfter: 2_000_000_000,
			Pruned: map[string]int64{"stripe_event_payloads": 1_400_000},
			Tables: []TableBytes{
				{Table: "stripe_events", Before: 3_000_000_000, After: 500_000_000},
				{Table: "orders", Before: 700_000_000, After: 700_000_000},
				{Table: "support_audit", Before: 20_000_000, After: 20_000_000},
				{Table: "stock_keys_deleted", Before: 10_000_000, After: 10_000_000},
			}},
	}
	var b strings.Builder
	writeScaleText(&b, rep)
	out := b.String()

	for _, want := range []string{
		"## Years of orders: 1,000,000 orders",
		"Load average at start 0.10 0.20 0.30, at end 1.00 1.10 1.20",
		"| buyer | order page | `GET /orders/{cs_…}` | 3 | 2.00 ms | 3.00 ms | 3.00 ms | p99 < 15.0 ms: met |",
		"| console | search by email | `POST /console/orders q=…` | 0 |",
		"NOT met; stopped at the row's time budget; 3 FAILED: HTTP 500 |",
		"(2 unmeasured first), each row for at most 15s;",
		"| periodic | prune batch | `retention.Pruner` | 1 | 70.0 ms | 70.0 ms | 70.0 ms | none |",
		"| 1,000,000 orders | 900 | 10.0 ms | 40.0 ms | 0 |",
		"Intake at 1,000,000 orders / at 10,000: **0.90**.",
		"Pruned: stripe_event_payloads 1,400,000.",
		"| stripe_events | 3.00 KB | 500 B |",
		"| orders | 700 B | 700 B |",
		"| other tables | 30 B | 30 B |",
		"| **database** | **5.30 KB** | **2.00 KB** |",
		"After / before: 0.38 (goal < 0.50: met)",
		"seed 1000000 orders and ANALYZE 301.2 s; whole run 512.0 s.",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "| support_audit |", "a table under 1% of the database is summed into other tables")
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10_000: "10,000", 1_000_000: "1,000,000", -12345: "-12,345"} {
		require.Equal(t, want, thousands(n))
	}
}

// The scale scenario, run at its smallest: every look-up and periodic
// query answers without a failure, the retention job prunes the old event
// bodies, and the database shrinks by them.
func TestScaleScenarioTimesEveryLookupWithoutAFailure(t *testing.T) {
	b := setupBench(t)
	o := scaleOptions{orders: scaleCompareOrders, samples: 3, runs: 2, rowBudget: time.Minute,
		load: loadOptions{concurrency: 2, warmup: 100 * time.Millisecond, duration: time.Second}}
	rep, err := scaleScenario(context.Background(), o, b.dbs, b.tmpl, slog.New(slog.DiscardHandler), t.Logf)
	require.NoError(t, err)

	require.NotEmpty(t, rep.Rows)
	for _, r := range rep.Rows {
		require.Zero(t, r.Errors, "%s %s: %s", r.Group, r.Name, r.FirstError)
		require.Positive(t, r.Samples, "%s %s", r.Group, r.Name)
	}
	require.Len(t, rep.Intake, 1, "at 10,000 orders intake is not compared with itself")
	require.Positive(t, rep.Intake[0].EventsPerSecond)
	require.Zero(t, rep.Intake[0].Errors, rep.Intake[0].FirstError)

	st := rep.Storage
	require.Positive(t, st.Pruned[retention.Prunables[0].Kind], "the seeded history's old event bodies were pruned")
	require.Less(t, st.DatabaseAfter, st.DatabaseBefore)
	for _, tb := range st.Tables {
		if tb.Table == "stripe_events" {
			require.Less(t, tb.After, tb.Before/2, "most of stripe_events is the bodies")
		}
	}
}

// A row times n calls after its unmeasured ones, counts failures apart,
// and stops at its time budget once one call was timed.
func TestTimeRowStopsAtItsBudget(t *testing.T) {
	ctx := context.Background()
	calls := 0
	fast := timed{group: "g", name: "fast", goal: time.Second, goalOn: "p99", run: func(context.Context, int) error {
		calls++
		if calls == scaleWarmup+2 {
			return errors.New("refused\nby the server")
		}
		return nil
	}}
	r := timeRow(ctx, fast, 10, time.Minute)
	require.Equal(t, scaleWarmup+10, calls)
	require.Equal(t, 9, r.Samples)
	require.Equal(t, 1, r.Errors)
	require.Equal(t, "refused by the server", r.FirstError, "one line, for the table")
	require.False(t, r.Cut)

	slow := timed{group: "g", name: "slow", goal: time.Second, goalOn: "p99", run: func(context.Context, int) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	}}
	r = timeRow(ctx, slow, 1000, 100*time.Millisecond)
	require.True(t, r.Cut)
	require.GreaterOrEqual(t, r.Samples, 1)
	require.Less(t, r.Samples, 10)
}
