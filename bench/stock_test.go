package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
	"fulfiller/internal/testdb"
)

type stockBundle struct {
	dbs  *databases
	tmpl string
}

func setupStock(t *testing.T) stockBundle {
	t.Helper()
	testdb.ServerURL(t) // fails with what to do when DATABASE_URL is unset
	dbs, err := newDatabases()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dbs.dropAll()) })
	tmpl, err := dbs.migratedTemplate(context.Background())
	require.NoError(t, err)
	return stockBundle{dbs: dbs, tmpl: tmpl}
}

// The stock scenario, run tiny: the stock is filled by refill_stock before
// the spike, and with it every order gets its key from stock with no
// Luarmor call on the purchase path; without it every key is made to order
// through the budget. No key is delivered twice either way.
func TestStockScenarioSellsTheSpikeFromStockAndMakesItToOrderWithout(t *testing.T) {
	b := setupStock(t)
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
	require.Len(t, without.Steps, len(with.Steps), "both runs broken down step by step")
}
