package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The intake scenario, run tiny: every round measures the service and the
// baseline, the table shows one of them, every answered event was stored,
// and the webhook-to-key phase breaks each purchase down by the jobs that
// delivered it.
func TestIntakeScenarioComparesRoundsAndBreaksPurchasesDown(t *testing.T) {
	b := setupBench(t)
	o := options{concurrency: 4, rounds: 2, warmup: 100 * time.Millisecond, duration: 400 * time.Millisecond,
		purchases: 3, luarmor: 5 * time.Millisecond, poll: 2 * time.Millisecond}
	var rep Report
	require.NoError(t, intakeScenario(context.Background(), o, b.dbs, b.tmpl, slog.New(slog.DiscardHandler), t.Logf, &rep))

	in := rep.Intake
	require.Len(t, in.Rounds, 2)
	require.False(t, in.Rounds[0].BaselineFirst)
	require.True(t, in.Rounds[1].BaselineFirst)
	var ratios []float64
	for _, r := range in.Rounds {
		require.Positive(t, r.BaselinePerS)
		require.Positive(t, r.ServicePerS)
		ratios = append(ratios, r.RatioToBaseline)
	}
	require.Contains(t, ratios, in.Ratio, "the table's ratio is one round's")
	require.Equal(t, min(ratios[0], ratios[1]), in.Ratio, "of two rounds, the lower middle one")
	require.Empty(t, in.Notes, "in every window, every 200 has its row and no request failed")
	for _, key := range []string{"baseline", "service_unpaid", "service_paid"} {
		require.NotNil(t, in.row(key), key)
	}
	require.NotNil(t, in.Processing, "a backlog was drained")
	require.Positive(t, in.Processing.Events)

	require.NotNil(t, rep.Latency)
	require.Equal(t, 3, rep.Latency.Purchases)
	require.Empty(t, rep.Latency.MilestonesError)
	var steps []string
	for _, s := range rep.Latency.Milestones {
		steps = append(steps, s.Step)
	}
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "create_key started", "key recorded", "key seen by the poll"}, steps)
}

// The table shows the median round, but a failure in any round is noted:
// a round that lost rows or requests does not measure what it claims.
func TestIntakeRoundsNoteAFailureInAnyRound(t *testing.T) {
	row := func(key string, perS float64, ok, stored, errors int) IntakeRow {
		return IntakeRow{Key: key, Name: key, EventsPerSecond: perS, OK: ok, OKTotal: ok, Stored: stored, Errors: errors}
	}
	var in IntakeReport
	base, svc := in.addRounds([]intakeRound{
		{baseline: row("baseline", 100, 1000, 1000, 0), service: row("service_unpaid", 70, 700, 700, 0)},
		{baseline: row("baseline", 100, 1000, 1000, 0), service: row("service_unpaid", 90, 900, 899, 0)},
		{baseline: row("baseline", 100, 1000, 1000, 3), service: row("service_unpaid", 60, 600, 600, 0)},
	})
	require.InDelta(t, 100, base.EventsPerSecond, 0)
	require.InDelta(t, 70, svc.EventsPerSecond, 0, "the median of 0.6, 0.7 and 0.9")
	require.Equal(t, []string{
		"round 2, service_unpaid: 900 answers 200 but 899 rows stored",
		"round 3, baseline: 3 failed requests in the timed window, 0 in warm-up; first: ",
	}, in.Notes)
	in.add(base)
	in.add(svc)
	in.compare()
	require.Len(t, in.Notes, 2, "the median round's rows are not checked twice")
	require.InDelta(t, 0.7, in.Ratio, 1e-9)
}
