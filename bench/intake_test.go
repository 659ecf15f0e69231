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
	require.Empty(t, in.Notes, "every 200 has its row and no request failed")
	for _, key := range []string{"baseline", "service_unpaid", "service_paid"} {
		require.NotNil(t, in.row(key), key)
	}
	require.NotNil(t, in.row("service_unpaid").Processing, "the first round's backlog was drained")

	require.NotNil(t, rep.Latency)
	require.Equal(t, 3, rep.Latency.Purchases)
	require.Empty(t, rep.Latency.MilestonesError)
	var steps []string
	for _, s := range rep.Latency.Milestones {
		steps = append(steps, s.Step)
	}
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "create_key started", "key recorded", "key seen by the poll"}, steps)
}
