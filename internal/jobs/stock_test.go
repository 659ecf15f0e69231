package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

const priceStock = "price_stock"

func stockDeps(b *testBundle, stock int) jobs.Deps {
	d := b.deps
	d.Catalog = &catalog.Catalog{Prices: map[string]catalog.Product{priceStock: {ProjectID: project, KeyDays: 7, Stock: stock}}}
	d.CreateLease = 300 * time.Millisecond
	return d
}

// lookupsByReference counts the searches for one key's reference, not the
// stock reconciliation's listings.
func (b *testBundle) lookupsByReference() int {
	n := 0
	for _, c := range b.sandbox.Calls() {
		if c.Method == http.MethodGet && strings.HasSuffix(c.Path, "/users") && strings.Contains(c.Query, "search=fk_") {
			n++
		}
	}
	return n
}

func (b *testBundle) stockUsers() int {
	n := 0
	for _, u := range b.sandbox.Users(project) {
		if strings.HasPrefix(u.Note, "stock ref:fk_") {
			n++
		}
	}
	return n
}

func TestRefillFillsToNAndNotBeyondWhenRunTwiceAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := stockDeps(b, 5)
	// Two replicas, each running a refill of the price at once (the
	// second copy is queued past the job's own uniqueness, as a rescued
	// duplicate would be).
	var replicas []*river.Client[pgx.Tx]
	for i := range 2 {
		client, err := jobs.NewClient(deps, jobs.Config{ID: fmt.Sprintf("replica-%d", i)})
		require.NoError(t, err)
		replicas = append(replicas, client)
	}
	w := fulfillertest.WatchJobs(t, replicas[0], replicas[1])
	for _, client := range replicas {
		fulfillertest.StartRiver(t, client)
	}
	inserter, err := jobs.NewClient(deps, jobs.Config{InsertOnly: true})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = inserter.Insert(ctx, jobs.RefillStockArgs{PriceID: priceStock}, nil)
	require.NoError(t, err)
	_, err = inserter.Insert(ctx, jobs.RefillStockArgs{PriceID: priceStock}, &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: time.Hour}})
	require.NoError(t, err)

	b.waitStockOf(t, w, priceStock, 5)
	waitNoneInFlight(t, w, replicas[0], jobs.RefillStockArgs{}.Kind())
	require.Equal(t, 5, b.stockUsers(), "Luarmor holds exactly N stock keys")
	require.Equal(t, 5, b.sandbox.CallCount(http.MethodPost, "/users"), "one create per key")
}

func TestRefillCutOffAfterTheCreateFindsTheKeyByItsReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := stockDeps(b, 3)
	var crashes atomic.Int32
	client, err := jobs.NewClientWithRefillCrash(deps, jobs.Config{}, func(context.Context) error {
		if crashes.Add(1) == 1 {
			return errors.New("process killed after Luarmor created the stock key")
		}
		return nil
	})
	require.NoError(t, err)
	w := b.start(t, client)
	_, err = client.Insert(context.Background(), jobs.RefillStockArgs{PriceID: priceStock}, nil)
	require.NoError(t, err)

	b.waitStockOf(t, w, priceStock, 3)
	waitNoneInFlight(t, w, client, jobs.RefillStockArgs{}.Kind())
	require.EqualValues(t, 3, crashes.Load(), "the crash hook ran once per create")
	require.Equal(t, 3, b.stockUsers(), "the crash did not take the stock past N")
	require.Equal(t, 3, b.sandbox.CallCount(http.MethodPost, "/users"), "the key made before the crash was found, not made again")
	// The stock reconciliation run at start may record the key before the
	// refill's retry looks it up.
	require.LessOrEqual(t, b.lookupsByReference(), 1, "at most one look-up by reference")
}

func TestRefillCutOffThenUnstockedStillRecordsTheKeyItMade(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	crashed := make(chan struct{})
	var crashes atomic.Int32
	crashing, err := jobs.NewClientWithRefillCrash(stockDeps(b, 1), jobs.Config{}, func(context.Context) error {
		if crashes.Add(1) == 1 {
			close(crashed)
		}
		return errors.New("process killed after Luarmor created the stock key")
	})
	require.NoError(t, err)
	fulfillertest.StartRiver(t, crashing)
	<-crashed
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, crashing.Stop(stopCtx))
	require.Equal(t, 1, b.stockUsers(), "the cut-off refill made a key in Luarmor")

	// The operator takes the price's stock away before the refill's retry.
	unstocked := stockDeps(b, 0)
	client, err := jobs.NewClient(unstocked, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	waitNoneInFlight(t, w, client, jobs.RefillStockArgs{}.Kind())

	var ready, pending int
	var recorded string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending'),
		COALESCE(max(user_key), '') FROM stock_keys WHERE price_id = $1`, priceStock).Scan(&ready, &pending, &recorded))
	require.Zero(t, pending, "no stock key is left pending with its Luarmor key unknown to the database")
	require.Equal(t, 1, ready)
	require.Equal(t, b.sandbox.Users(project)[0].UserKey, recorded, "the key the cut-off refill made is the one recorded")
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodPost, "/users"), "found by its reference, not made again")
}

func TestRefillKeepsNKeysOfThePricesCurrentKeyDays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	week, err := jobs.NewClient(stockDeps(b, 2), jobs.Config{})
	require.NoError(t, err)
	weekWatch := b.start(t, week)
	b.waitStockOf(t, weekWatch, priceStock, 2)
	waitNoneInFlight(t, weekWatch, week, jobs.RefillStockArgs{}.Kind())
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, week.Stop(stopCtx))

	// The catalog now sells the price as a 30-day key: a unit of it can
	// only take a 30-day key, so the week keys are no stock of it.
	month := stockDeps(b, 2)
	month.Catalog = &catalog.Catalog{Prices: map[string]catalog.Product{priceStock: {ProjectID: project, KeyDays: 30, Stock: 2}}}
	client, err := jobs.NewClient(month, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	waitUntil(t, w, "the price's stock holds N keys its units can take", func() bool {
		var n int
		err := b.pool.QueryRow(ctx, `SELECT count(*) FROM stock_keys WHERE price_id = $1 AND key_days = 30 AND status = 'ready'`,
			priceStock).Scan(&n)
		return err == nil && n == 2
	})
	waitNoneInFlight(t, w, client, jobs.RefillStockArgs{}.Kind())
	require.Equal(t, 4, b.sandbox.CallCount(http.MethodPost, "/users"), "N keys per plan, none beyond")
}

func TestRefillWhoseLeaseWasOvertakenRemovesTheKeyItMade(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var recorded string
	var overtaken atomic.Bool
	// Between Luarmor's answer and the commit, another runner that took
	// the lease over (this request outlived it) records a key of its own.
	client, err := jobs.NewClientWithRefillCrash(stockDeps(b, 1), jobs.Config{}, func(context.Context) error {
		if overtaken.Swap(true) {
			return nil
		}
		var id int64
		var reference string
		if err := b.pool.QueryRow(ctx, `SELECT id, reference FROM stock_keys WHERE status = 'pending'`).Scan(&id, &reference); err != nil {
			return err
		}
		k, err := b.deps.Luarmor.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: jobs.StockNote(reference), KeyDays: 7})
		if err != nil {
			return err
		}
		recorded = k
		return postgres.StockKeyMade(ctx, b.pool, id, k)
	})
	require.NoError(t, err)
	w := b.start(t, client)
	b.waitStockOf(t, w, priceStock, 1)
	waitNoneInFlight(t, w, client, jobs.RefillStockArgs{}.Kind())

	require.True(t, overtaken.Load())
	users := b.sandbox.Users(project)
	require.Len(t, users, 1, "the key the overtaken run made is deleted, not left in Luarmor unknown to the database")
	require.Equal(t, recorded, users[0].UserKey, "the recorded key stays")
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM stock_keys WHERE user_key = $1 AND status = 'ready'`, recorded).Scan(&n))
	require.Equal(t, 1, n)
}
