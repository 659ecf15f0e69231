package jobs_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// priceGone is a price the catalog no longer lists whose keys are still
// in stock, of the same (project, key_days) as priceBought.
const priceGone = "price_gone"

// orphanStock makes n keys in Luarmor recorded as ready stock of priceGone.
func (b *testBundle) orphanStock(t *testing.T, n int) []string {
	t.Helper()
	var keys []string
	for range n {
		k := b.lostStockKey(t, 14)
		ok, err := postgres.AdoptStockKey(context.Background(), b.pool, postgres.StockPlan{PriceID: priceGone, ProjectID: project, KeyDays: 14},
			stockReferenceOf(t, b, k), k)
		require.NoError(t, err)
		require.True(t, ok)
		keys = append(keys, k)
	}
	return keys
}

func (b *testBundle) inLuarmor(key string) bool {
	_, ok := b.sandbox.User(project, key)
	return ok
}

// deletedKeys are the keys Luarmor was asked to delete.
func (b *testBundle) deletedKeys() map[string]bool {
	out := map[string]bool{}
	for _, c := range b.sandbox.Calls() {
		if c.Method == http.MethodDelete {
			q, _ := url.ParseQuery(c.Query)
			out[q.Get("user_key")] = true
		}
	}
	return out
}

// stockAdmin starts a client of deps and returns the stock commands'
// view of it, and the watch of its jobs.
func stockAdmin(t *testing.T, b *testBundle, deps jobs.Deps) (*jobs.StockAdmin, *fulfillertest.JobWatch) {
	t.Helper()
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	return &jobs.StockAdmin{Pool: b.pool, River: client, Catalog: deps.Catalog, Logger: deps.Logger}, w
}

func (b *testBundle) deleteStock(t *testing.T, admin *jobs.StockAdmin, priceID string) jobs.StockDeleteSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := admin.QueueDelete(ctx, jobs.ActorCLI, "", priceID)
	require.NoError(t, err)
	var sum jobs.StockDeleteSummary
	require.NoError(t, admin.Wait(ctx, id, &sum))
	return sum
}

func TestDeleteStockRefusesAPriceTheCatalogStocks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 1)
	admin, _ := stockAdmin(t, b, deps)
	ctx := context.Background()

	_, err := admin.QueueDelete(ctx, jobs.ActorCLI, "", priceBought)
	require.Equal(t, order.ECONFLICT, order.ErrorCode(err))
	require.Contains(t, order.ErrorMessage(err), "lower its stock to 0 or remove the price from the catalog first")

	// The command's catalog may be older than the service's: the job
	// checks the service's own and refuses too.
	res, err := admin.River.Insert(ctx, jobs.DeleteStockArgs{PriceID: priceBought, Actor: jobs.ActorCLI}, nil)
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var sum jobs.StockDeleteSummary
	err = admin.Wait(waitCtx, res.Job.ID, &sum)
	require.ErrorContains(t, err, string(rivertype.JobStateCancelled))
	require.ErrorContains(t, err, "lower its stock to 0")
	require.Zero(t, b.sandbox.CallCount(http.MethodDelete, "/users"), "nothing was deleted")
}

func TestDeleteStockDeletesAnOrphansUnsoldKeysAndKeepsSoldOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orphan := b.orphanStock(t, 3)
	deps := adoptDeps(b, 1)
	admin, w := stockAdmin(t, b, deps)
	// A purchase of the stocked price is sold the oldest ready key of its
	// (project, key_days): the orphan's first.
	b.purchase(t, admin.River, "cs_test_orphan0001", 1)
	o := b.waitFulfilled(t, w, "cs_test_orphan0001")
	require.Equal(t, orphan[0], o.Keys[0].UserKey)
	b.waitStockOf(t, w, priceBought, 1)

	levels, err := admin.Levels(context.Background())
	require.NoError(t, err)
	gone := findLevels(t, levels, priceGone)
	require.True(t, gone.Orphan())
	require.Equal(t, []int{2, 1}, []int{gone.Ready, gone.Sold})
	require.False(t, findLevels(t, levels, priceBought).Orphan())

	sum := b.deleteStock(t, admin, priceGone)
	require.Equal(t, jobs.StockDeleteSummary{Retired: 2, Deleted: 2}, sum)
	require.True(t, b.inLuarmor(orphan[0]), "the sold key is kept")
	require.False(t, b.inLuarmor(orphan[1]))
	require.False(t, b.inLuarmor(orphan[2]))
	rows := b.stockRows(t)
	require.Equal(t, "sold", rows[orphan[0]])
	require.NotContains(t, rows, orphan[1])
	require.NotContains(t, rows, orphan[2])
	require.Len(t, b.deletedKeys(), 2, "only the orphan's unsold keys were deleted")
	ready, _, err := postgrestest.StockLevel(context.Background(), b.pool, priceBought)
	require.NoError(t, err)
	require.Equal(t, 1, ready, "the stocked price's keys are untouched")

	again := b.deleteStock(t, admin, priceGone)
	require.Equal(t, jobs.StockDeleteSummary{}, again, "a repeated delete finds nothing left")
}

func TestSaleDuringDeleteNeverGetsAKeyBeingDeleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orphan := b.orphanStock(t, 12)
	b.sandbox.SetLatency(10 * time.Millisecond) // the deletion spans the sale
	deps := adoptDeps(b, 1)
	admin, w := stockAdmin(t, b, deps)

	b.purchase(t, admin.River, "cs_test_during001", 8)
	sum := b.deleteStock(t, admin, priceGone)
	o := b.waitFulfilled(t, w, "cs_test_during001")

	deleted := b.deletedKeys()
	require.Equal(t, sum.Deleted, len(deleted))
	for _, k := range o.Keys {
		require.False(t, deleted[k.UserKey], "a sold key was deleted")
		require.True(t, b.inLuarmor(k.UserKey), "every delivered key still exists")
	}
	rows := b.stockRows(t)
	sold := 0
	for _, k := range orphan {
		switch {
		case deleted[k]:
			require.NotContains(t, rows, k, "a deleted key's row is dropped")
		default:
			require.Equal(t, "sold", rows[k], "an orphan key not deleted was sold")
			sold++
		}
	}
	require.Equal(t, len(orphan), sold+sum.Deleted)
}

func TestDeleteCutOffAfterTheLuarmorCallIsFinishedByTheNextRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orphan := b.orphanStock(t, 3)
	references := map[string]string{}
	for _, k := range orphan {
		references[k] = stockReferenceOf(t, b, k)
	}
	ctx := context.Background()
	// A run cut off after its Luarmor delete: its key out of sale and gone
	// from Luarmor, its row still there.
	_, err := postgres.RetireStock(ctx, b.pool, priceGone)
	require.NoError(t, err)
	require.NoError(t, b.deps.Luarmor.DeleteUser(ctx, project, orphan[2]))
	// The answer to the next delete is lost after Luarmor applied it: the
	// job retries, and Luarmor's 404 counts as deleted.
	b.sandbox.InjectFault(sandbox.Fault{Method: http.MethodDelete, Kind: sandbox.FaultApplyThenDrop, Times: 1})

	admin, _ := stockAdmin(t, b, adoptDeps(b, 0))
	sum := b.deleteStock(t, admin, priceGone)
	require.Equal(t, jobs.StockDeleteSummary{Deleted: 1, AlreadyGone: 2}, sum, "the retry's summary: the cut-off key and the lost answer's key were already gone")
	for _, k := range orphan {
		require.False(t, b.inLuarmor(k))
	}
	require.Empty(t, b.stockRows(t))
	require.Equal(t, 5, b.sandbox.CallCount(http.MethodDelete, "/users"), "the cut-off run's, the lost answer's and the retry's three")

	// A reconciliation that listed the keys before their deletion adopts
	// none of them.
	sum2, err := jobs.ReconcileStock(ctx, adoptDeps(b, 1))
	require.NoError(t, err)
	require.Zero(t, sum2.Listed)
	for _, k := range orphan[:2] {
		ok, err := postgres.AdoptStockKey(ctx, b.pool, postgres.StockPlan{PriceID: priceBought, ProjectID: project, KeyDays: 14}, references[k], k)
		require.NoError(t, err)
		require.False(t, ok, "a deleted key is never adopted again")
	}
}

func findLevels(t *testing.T, levels []jobs.PriceStock, priceID string) jobs.PriceStock {
	t.Helper()
	for _, l := range levels {
		if l.PriceID == priceID {
			return l
		}
	}
	require.Failf(t, "no stock line", "price %s", priceID)
	return jobs.PriceStock{}
}

// waitStockOf waits until priceID's stock holds ready keys and none is
// being made.
func (b *testBundle) waitStockOf(t *testing.T, w *fulfillertest.JobWatch, priceID string, ready int) {
	t.Helper()
	waitUntil(t, w, fmt.Sprintf("%d ready keys of %s and none being made", ready, priceID), func() bool {
		n, pending, err := postgrestest.StockLevel(context.Background(), b.pool, priceID)
		return err == nil && n == ready && pending == 0
	})
}

// retiredStockOfRestockedPrice leaves n keys of priceGone out of sale, as a
// deletion Luarmor refused leaves them, and puts priceGone back in the
// catalog with a stock of n.
func retiredStockOfRestockedPrice(t *testing.T, b *testBundle, n int) ([]string, jobs.Deps) {
	t.Helper()
	keys := b.orphanStock(t, n)
	retired, err := postgres.RetireStock(context.Background(), b.pool, priceGone)
	require.NoError(t, err)
	require.Equal(t, n, retired)
	deps := adoptDeps(b, 0)
	deps.Catalog = &catalog.Catalog{Prices: map[string]catalog.Product{priceGone: {ProjectID: project, KeyDays: 14, Stock: n}}}
	return keys, deps
}

func TestKeysBeingDeletedAreNoStockOfARestockedPrice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _ = retiredStockOfRestockedPrice(t, b, 2)
	ctx := context.Background()
	// The retiring keys are never sold: the refill plans their
	// replacements instead of counting them as the stock.
	var planned *postgres.StockKey
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		planned, err = postgres.ClaimStockKey(ctx, tx, postgres.StockPlan{PriceID: priceGone, ProjectID: project, KeyDays: 14, Target: 2}, "runner", time.Minute)
		return err
	}))
	require.NotNil(t, planned, "a refill of a price whose only keys are being deleted plans a key")
}

func TestDeleteFinishesTheRetiringKeysOfARestockedPrice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys, deps := retiredStockOfRestockedPrice(t, b, 2)
	admin, _ := stockAdmin(t, b, deps)
	// The price is stocked again, but its keys already out of sale still
	// wait for their deletion: the command queues it, as the job allows.
	sum := b.deleteStock(t, admin, priceGone)
	require.Equal(t, jobs.StockDeleteSummary{Deleted: 2}, sum)
	for _, k := range keys {
		require.False(t, b.inLuarmor(k))
		require.NotContains(t, b.stockRows(t), k)
	}
}
