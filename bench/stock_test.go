package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
)

// The stock scenario, run tiny: the stock is filled by refill_stock before
// the spike, and with it every order gets its key from stock with no
// Luarmor call on the purchase path; without it every key is made to order
// through the budget. No key is delivered twice either way.
func TestStockScenarioSellsTheSpikeFromStockAndMakesItToOrderWithout(t *testing.T) {
	b := setupBench(t)
	const purchases = 20
	o := stockOptions{rate: "60/1s", count: 60, window: time.Second, purchases: purchases, spread: time.Second,
		latency: 5 * time.Millisecond, deadline: time.Minute, fillTimeout: time.Minute}
	rep, err := stockScenario(context.Background(), b.dbs, b.tmpl, slog.New(slog.DiscardHandler), o, t.Logf)
	require.NoError(t, err)
	require.Len(t, rep.Runs, 2)
	deliver := budget.ClassDeliver.String()

	with, without := rep.Runs[0], rep.Runs[1]
	require.Equal(t, purchases, with.Stock)
	require.GreaterOrEqual(t, with.FillCalls, purchases, "the stock was made by Luarmor calls, one a key")
	require.Equal(t, purchases, with.Delivered, "every order showed its key")
	require.Zero(t, with.CallsByClass[deliver], "no Luarmor call on the purchase path")
	require.Equal(t, purchases, with.Hits, "every unit sold from stock")
	require.Zero(t, with.Misses)
	require.Zero(t, with.DeliveredTwice)

	require.Zero(t, without.Stock)
	require.Equal(t, purchases, without.Delivered, "every order showed its key")
	require.GreaterOrEqual(t, without.CallsByClass[deliver], purchases, "every key made to order, one create each")
	require.Zero(t, without.Hits+without.Misses, "a price without stock counts no sales")
	require.Zero(t, without.DeliveredTwice)
	stepNames := func(run StockRun) []string {
		var names []string
		for _, s := range run.Steps {
			names = append(names, s.Step)
		}
		return names
	}
	require.Empty(t, with.StepsError)
	require.Empty(t, without.StepsError)
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "key recorded", "key seen by the poll"},
		stepNames(with), "a sale from stock runs no create_key")
	require.Equal(t, []string{"webhook answered", "handle_events started", "handle_events done", "create_key started", "key recorded", "key seen by the poll"},
		stepNames(without))
}
