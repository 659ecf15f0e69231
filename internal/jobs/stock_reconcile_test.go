package jobs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// priceBought is the price testBundle.purchase buys.
const priceBought = "price_a"

// adoptDeps stocks the price purchases buy (key_days 14).
func adoptDeps(b *testBundle, stock int) jobs.Deps {
	d := b.deps
	d.Catalog = &catalog.Catalog{Prices: map[string]catalog.Product{priceBought: {ProjectID: project, KeyDays: 14, Stock: stock}}}
	d.CreateLease = 300 * time.Millisecond
	return d
}

func newReference(t *testing.T) string {
	t.Helper()
	b := make([]byte, 10)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "fk_" + hex.EncodeToString(b)
}

// lostStockKey makes in Luarmor a stock key the database has no row of,
// as a restored backup leaves it, and returns the key.
func (b *testBundle) lostStockKey(t *testing.T, keyDays int) string {
	t.Helper()
	key, err := b.deps.Luarmor.CreateUser(context.Background(), project, luarmor.CreateUserRequest{Note: jobs.StockNote(newReference(t)), KeyDays: keyDays})
	require.NoError(t, err)
	return key
}

func (b *testBundle) stockRows(t *testing.T) map[string]string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT user_key, status FROM stock_keys WHERE user_key IS NOT NULL`)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var k, s string
		require.NoError(t, rows.Scan(&k, &s))
		out[k] = s
	}
	require.NoError(t, rows.Err())
	return out
}

func TestReconcileAdoptsALostStockKeyWhichIsThenSold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 1)
	ctx := context.Background()
	lost := b.lostStockKey(t, 14)
	used := b.lostStockKey(t, 14)
	require.NoError(t, b.sandbox.Execute(project, used, "hwid-of-a-buyer"))
	banned := b.lostStockKey(t, 14)
	require.NoError(t, deps.Luarmor.Blacklist(ctx, project, luarmor.BlacklistRequest{UserKey: banned, BanReason: "chargeback"}))
	otherDays := b.lostStockKey(t, 30)
	_, err := deps.Luarmor.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: "cs_test_x ref:" + newReference(t) + " stock ref:x@example.com", KeyDays: 14})
	require.NoError(t, err)

	sum, err := jobs.ReconcileStock(ctx, deps)
	require.NoError(t, err)
	require.Equal(t, jobs.StockReconcileSummary{Listed: 4, Adopted: 1, Unusable: 2, NoPrice: 1}, sum,
		"a sold key's note naming 'stock ref:' elsewhere is not a stock note")
	require.Equal(t, map[string]string{lost: "ready"}, b.stockRows(t), "only the unused key is adopted; %s, %s and %s are not", used, banned, otherDays)

	again, err := jobs.ReconcileStock(ctx, deps)
	require.NoError(t, err)
	require.Equal(t, jobs.StockReconcileSummary{Listed: 4, Known: 1, Unusable: 2, NoPrice: 1}, again, "a repeated run adopts nothing more")

	// The adopted key fills the stock of 1, so the refill makes none, and
	// a purchase is sold the adopted key without a create.
	client, err := jobs.NewClient(deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	b.purchase(t, client, "cs_test_adopted01", 1)
	o := b.waitFulfilled(t, w, "cs_test_adopted01")
	require.Equal(t, lost, o.Keys[0].UserKey, "the purchase got the adopted key")
	require.Zero(t, o.Keys[0].CreateAttempts, "sold from stock: no create was sent for the unit")
	require.Equal(t, "sold", b.stockRows(t)[lost])
}

func TestConcurrentReconcilesAdoptEachKeyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 1)
	ctx := context.Background()
	var lost []string
	for range 5 {
		lost = append(lost, b.lostStockKey(t, 14))
	}
	// A refill cut off after its create: a pending row whose key exists.
	var planned *postgres.StockKey
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		planned, err = postgres.ClaimStockKey(ctx, tx, postgres.StockPlan{PriceID: priceBought, ProjectID: project, KeyDays: 14, Target: 1}, "dead-runner", time.Hour)
		return err
	}))
	made, err := deps.Luarmor.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: jobs.StockNote(planned.Reference), KeyDays: 14})
	require.NoError(t, err)

	const runs = 4
	sums := make([]jobs.StockReconcileSummary, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { sums[i], errs[i] = jobs.ReconcileStock(ctx, deps) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	adopted, recorded := 0, 0
	for _, s := range sums {
		require.Equal(t, 6, s.Listed)
		require.Equal(t, 6, s.Adopted+s.Made+s.Known, "each run settled every key")
		adopted += s.Adopted
		recorded += s.Made
	}
	require.Equal(t, 5, adopted, "each lost key adopted by exactly one run")
	require.GreaterOrEqual(t, recorded, 1, "the cut-off refill's key recorded made")
	want := map[string]string{made: "ready"}
	for _, k := range lost {
		want[k] = "ready"
	}
	require.Equal(t, want, b.stockRows(t))
	n, pending, err := postgrestest.StockLevel(ctx, b.pool, priceBought)
	require.NoError(t, err)
	require.Equal(t, []int{6, 0}, []int{n, pending}, "adopted keys count toward the price's stock")
}

func TestOperatorReconcileRunsAsAJobBesideThePeriodicOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 1)
	ctx := context.Background()
	// The stock already holds its one key, so no refill makes another.
	full := b.lostStockKey(t, 14)
	ok, err := postgres.AdoptStockKey(ctx, b.pool, postgres.StockPlan{PriceID: priceBought, ProjectID: project, KeyDays: 14},
		stockReferenceOf(t, b, full), full)
	require.NoError(t, err)
	require.True(t, ok)
	var lost []string
	for range 3 {
		lost = append(lost, b.lostStockKey(t, 14))
	}
	// Two replicas: the leader queues the periodic run at start; the
	// operator's run, in the maintenance queue, may overlap it.
	var clients []*jobs.StockAdmin
	var rivers []*river.Client[pgx.Tx]
	for i := range 2 {
		client, err := jobs.NewClient(deps, jobs.Config{ID: "replica-" + string(rune('a'+i))})
		require.NoError(t, err)
		rivers = append(rivers, client)
		clients = append(clients, &jobs.StockAdmin{Pool: b.pool, River: client, Catalog: deps.Catalog, Logger: deps.Logger})
	}
	w := fulfillertest.WatchJobs(t, rivers[0], rivers[1])
	for _, client := range rivers {
		fulfillertest.StartRiver(t, client)
	}
	id, err := clients[0].QueueReconcile(ctx, jobs.ActorCLI, "")
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var sum jobs.StockReconcileSummary
	require.NoError(t, clients[1].Wait(waitCtx, id, &sum))
	require.Equal(t, 4, sum.Listed)
	require.Equal(t, 4, sum.Adopted+sum.Known)

	waitNoneInFlight(t, w, rivers[0], jobs.ReconcileStockArgs{}.Kind())
	rows := b.stockRows(t)
	require.Len(t, rows, 4, "no key was made: the stock was full")
	for _, k := range lost {
		require.Equal(t, "ready", rows[k])
	}
	require.Equal(t, 4, b.sandbox.CallCount(http.MethodPost, "/users"))
	total := 0
	for _, run := range listJobs(t, rivers[0], river.NewJobListParams().Kinds(jobs.ReconcileStockArgs{}.Kind()).States(rivertype.JobStateCompleted)) {
		var s jobs.StockReconcileSummary
		if out := run.Output(); out != nil {
			require.NoError(t, json.Unmarshal(out, &s))
		}
		total += s.Adopted
	}
	require.Equal(t, 3, total, "the periodic and the operator's runs adopted each key once between them")
}

// stockReferenceOf reads the reference in a stock key's note.
func stockReferenceOf(t *testing.T, b *testBundle, key string) string {
	t.Helper()
	u, ok := b.sandbox.User(project, key)
	require.True(t, ok)
	ref, found := strings.CutPrefix(u.Note, "stock ref:")
	require.True(t, found, u.Note)
	return ref
}

func ptr[T any](v T) *T { return &v }

// readyStock records n keys made in Luarmor as ready stock of priceBought.
func (b *testBundle) readyStock(t *testing.T, n int) []string {
	t.Helper()
	var keys []string
	for range n {
		k := b.lostStockKey(t, 14)
		ok, err := postgres.AdoptStockKey(context.Background(), b.pool, postgres.StockPlan{PriceID: priceBought, ProjectID: project, KeyDays: 14},
			stockReferenceOf(t, b, k), k)
		require.NoError(t, err)
		require.True(t, ok)
		keys = append(keys, k)
	}
	return keys
}

func TestReconcileRetiresReadyKeysUsedOrBannedWhileInStockAndNeverSellsThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 5)
	ctx := context.Background()
	keys := b.readyStock(t, 5)
	clean := keys[4]
	// What the shop's staff, or whoever had a key from them, did in the
	// dashboard or with the loader while the keys waited in stock.
	spoiled := map[string]sandbox.UserState{
		keys[0]: {Banned: ptr(true), BanReason: "leaked"},
		keys[1]: {Identifier: ptr("pc-of-someone")},
		keys[2]: {DiscordID: ptr("333333333333333333")},
		keys[3]: {StartedAt: ptr(time.Now().Add(-time.Hour))},
	}
	for k, st := range spoiled {
		_, err := b.sandbox.SetUserState(project, k, st)
		require.NoError(t, err)
	}

	sum, err := jobs.ReconcileStock(ctx, deps)
	require.NoError(t, err)
	require.Equal(t, jobs.StockReconcileSummary{Listed: 5, Known: 1, Retired: 4}, sum)
	rows := b.stockRows(t)
	for k := range spoiled {
		require.Equal(t, "retiring", rows[k], "a used or banned key is out of sale")
		require.True(t, b.inLuarmor(k), "and left in Luarmor for the operator to check")
	}
	require.Equal(t, "ready", rows[clean])
	again, err := jobs.ReconcileStock(ctx, deps)
	require.NoError(t, err)
	require.Equal(t, jobs.StockReconcileSummary{Listed: 5, Known: 5}, again, "a repeated run retires nothing more")

	// The refill counts only the clean key and makes four more; a purchase
	// of five is sold those, never a retired key.
	admin, w := stockAdmin(t, b, deps)
	b.waitStockOf(t, w, priceBought, 5)
	require.Equal(t, 5+4, b.sandbox.CallCount(http.MethodPost, "/users"), "the refill replaced the four retired keys")
	b.purchase(t, admin.River, "cs_test_retired01", 5)
	o := b.waitFulfilled(t, w, "cs_test_retired01")
	require.Len(t, o.Keys, 5)
	for _, k := range o.Keys {
		_, bad := spoiled[k.UserKey]
		require.False(t, bad, "a retired key was sold")
		require.Zero(t, k.CreateAttempts, "sold from stock")
	}

	// The operator deletes them with the stock command, though the price
	// is still stocked: they are out of sale for good.
	del := b.deleteStock(t, admin, priceBought)
	require.Equal(t, jobs.StockDeleteSummary{Deleted: 4}, del)
	for k := range spoiled {
		require.False(t, b.inLuarmor(k))
	}
}
