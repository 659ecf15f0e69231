package jobs

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres/postgrestest"
)

// jobInsertCounter counts River's job inserts sent through a pool.
type jobInsertCounter struct{ inserts atomic.Int32 }

func (c *jobInsertCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "INSERT INTO") && strings.Contains(data.SQL, "river_job") {
		c.inserts.Add(1)
	}
	return ctx
}

func (c *jobInsertCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// jobTxSetup returns a pool whose job inserts are counted and a context
// that carries an insert-only River client, as a running job's does.
func jobTxSetup(t *testing.T) (context.Context, *pgxpool.Pool, *jobInsertCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(postgrestest.NewURL(t))
	require.NoError(t, err)
	counter := &jobInsertCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	client, err := NewClient(Deps{Pool: pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Config{InsertOnly: true})
	require.NoError(t, err)
	return rivertest.WorkContext(context.Background(), client), pool, counter
}

// beginTestJobTx begins a job's transaction, rolled back at the test's
// end unless committed.
func beginTestJobTx(ctx context.Context, t *testing.T, pool *pgxpool.Pool) *jobTx {
	t.Helper()
	tx, err := beginJobTx(ctx, pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) }) // no-op after Commit
	return tx
}

func jobsOfKind(t *testing.T, pool *pgxpool.Pool, kind string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = $1`, kind).Scan(&n))
	return n
}

// A step's jobs are inserted when its transaction commits: one call's
// jobs, and other calls' jobs of other kinds, in one statement; a kind
// queued again by another call in a statement of its own (a unique job
// queued twice is inserted once).
func TestJobTxInsertsAStepsJobsTogetherAtItsCommit(t *testing.T) {
	t.Parallel()
	ctx, pool, counter := jobTxSetup(t)
	tx := beginTestJobTx(ctx, t, pool)

	require.NoError(t, insertMany(ctx, tx, StockKeyCheckArgs{OrderKeyID: 1}, SyncKeyArgs{LedgerKeyID: 7}))
	require.NoError(t, insertMany(ctx, tx, RefillStockArgs{PriceID: "price_a"}))
	require.Zero(t, counter.inserts.Load(), "nothing is inserted before the commit")
	require.NoError(t, tx.Commit(ctx))
	require.EqualValues(t, 1, counter.inserts.Load(), "three kinds, one statement")
	require.Equal(t, 1, jobsOfKind(t, pool, StockKeyCheckArgs{}.Kind()))
	require.Equal(t, 1, jobsOfKind(t, pool, SyncKeyArgs{}.Kind()))
	require.Equal(t, 1, jobsOfKind(t, pool, RefillStockArgs{}.Kind()))

	counter.inserts.Store(0)
	tx = beginTestJobTx(ctx, t, pool)
	// The same writer twice (River refuses one statement meeting one
	// unique key twice), and two checks of two units.
	require.NoError(t, insertMany(ctx, tx, SyncKeyArgs{LedgerKeyID: 8}, StockKeyCheckArgs{OrderKeyID: 2}))
	require.NoError(t, insertMany(ctx, tx, SyncKeyArgs{LedgerKeyID: 8}, StockKeyCheckArgs{OrderKeyID: 3}))
	require.NoError(t, tx.Commit(ctx))
	require.EqualValues(t, 2, counter.inserts.Load())
	require.Equal(t, 2, jobsOfKind(t, pool, SyncKeyArgs{}.Kind()), "ledger keys 7 and 8, each once")
	require.Equal(t, 3, jobsOfKind(t, pool, StockKeyCheckArgs{}.Kind()))

	// One call's many jobs of a kind (a refund's writers of 50 keys), and
	// another kind after them: one statement, as before.
	counter.inserts.Store(0)
	tx = beginTestJobTx(ctx, t, pool)
	writers := make([]river.JobArgs, 50)
	for i := range writers {
		writers[i] = SyncKeyArgs{LedgerKeyID: int64(100 + i), Urgent: true}
	}
	require.NoError(t, insertMany(ctx, tx, writers...))
	require.NoError(t, insertMany(ctx, tx, StockKeyCheckArgs{OrderKeyID: 4}))
	require.NoError(t, tx.Commit(ctx))
	require.EqualValues(t, 1, counter.inserts.Load())
	require.Equal(t, 52, jobsOfKind(t, pool, SyncKeyArgs{}.Kind()))
}

// A savepoint's jobs go with its writes: dropped when it is rolled back,
// inserted with the transaction once it is released; a transaction rolled
// back inserts none.
func TestJobTxKeepsASavepointsJobsWithItsWrites(t *testing.T) {
	t.Parallel()
	ctx, pool, counter := jobTxSetup(t)
	tx := beginTestJobTx(ctx, t, pool)

	skipped, err := tx.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, insertMany(ctx, skipped, StockKeyCheckArgs{OrderKeyID: 1}))
	require.NoError(t, skipped.Rollback(ctx))

	handled, err := tx.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, insertMany(ctx, handled, StockKeyCheckArgs{OrderKeyID: 2}))
	nested, err := handled.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, insertMany(ctx, nested, SyncKeyArgs{LedgerKeyID: 2}))
	require.NoError(t, nested.Commit(ctx))
	require.NoError(t, handled.Commit(ctx))
	require.Zero(t, counter.inserts.Load(), "a released savepoint's jobs wait for the commit")
	require.NoError(t, tx.Commit(ctx))

	rows, err := pool.Query(ctx, `SELECT (args->>'order_key_id')::bigint FROM river_job WHERE kind = $1`, StockKeyCheckArgs{}.Kind())
	require.NoError(t, err)
	checked, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{2}, checked, "the rolled-back savepoint's check is not queued")
	require.Equal(t, 1, jobsOfKind(t, pool, SyncKeyArgs{}.Kind()))

	rolledBack := beginTestJobTx(ctx, t, pool)
	require.NoError(t, insertMany(ctx, rolledBack, StockKeyCheckArgs{OrderKeyID: 9}))
	require.NoError(t, rolledBack.Rollback(ctx))
	require.Equal(t, 1, jobsOfKind(t, pool, StockKeyCheckArgs{}.Kind()))
}
