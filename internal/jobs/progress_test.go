package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
)

// followProgress reads job id's recorded progress every few milliseconds
// until it finishes, and returns each change seen, in order.
func followProgress(t *testing.T, client *river.Client[pgx.Tx], id int64) []jobs.Progress {
	t.Helper()
	var seen []jobs.Progress
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		job, err := client.JobGet(context.Background(), id)
		require.NoError(t, err)
		if p := jobs.ProgressOf(job); p != nil && (len(seen) == 0 || *p != seen[len(seen)-1]) {
			seen = append(seen, *p)
		}
		if job.FinalizedAt != nil {
			return seen
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("job %d did not finish in 30 s; progress seen: %v", id, seen)
	return nil
}

// requireInOrder checks the counts never go back and never pass total.
func requireInOrder(t *testing.T, seen []jobs.Progress, total int) {
	t.Helper()
	require.NotEmpty(t, seen)
	for i, p := range seen {
		require.LessOrEqual(t, p.Done, p.Total, "never past the total: %v", seen)
		require.LessOrEqual(t, p.Total, total, "%v", seen)
		if i > 0 {
			require.GreaterOrEqual(t, p.Done, seen[i-1].Done, "counts never go back: %v", seen)
		}
	}
}

func TestRefillReportsKeysMadeInOrderAndACrashCountsNothingTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := stockDeps(b, 4)
	deps.ProgressEvery = time.Nanosecond
	b.sandbox.SetLatency(40 * time.Millisecond)
	var creates atomic.Int32
	client, err := jobs.NewClientWithRefillCrash(deps, jobs.Config{}, func(context.Context) error {
		if creates.Add(1) == 2 {
			return errors.New("process killed after Luarmor created the second stock key")
		}
		return nil
	})
	require.NoError(t, err)
	b.start(t, client)
	res, err := client.Insert(context.Background(), jobs.RefillStockArgs{PriceID: priceStock}, nil)
	require.NoError(t, err)

	seen := followProgress(t, client, res.Job.ID)
	requireInOrder(t, seen, 4)
	last := seen[len(seen)-1]
	require.Equal(t, jobs.Progress{Phase: "making keys", Done: 4, Total: 4, Unit: "keys made", UpdatedAt: last.UpdatedAt}, last,
		"the refill ends at its total: the key made before the crash is counted once: %v", seen)
	require.Equal(t, 4, b.stockUsers())
	job, err := client.JobGet(context.Background(), res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, 2, job.Attempt, "the crash was retried")
	require.Equal(t, &last, jobs.ProgressOf(job), "the completed refill keeps its last count")
}

func TestDeleteReportsKeysDeletedInOrderUpToTheTotal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.orphanStock(t, 4)
	deps := b.deps
	deps.ProgressEvery = time.Nanosecond
	b.sandbox.SetLatency(40 * time.Millisecond)
	admin, _ := stockAdmin(t, b, deps)
	id, err := admin.QueueDelete(context.Background(), jobs.ActorCLI, "", priceGone)
	require.NoError(t, err)

	seen := followProgress(t, admin.River, id)
	requireInOrder(t, seen, 4)
	require.Equal(t, 4, seen[len(seen)-1].Total)
	require.Equal(t, 4, seen[len(seen)-1].Done, "the last key deleted is reported before the summary: %v", seen)
	require.Greater(t, len(seen), 2, "reported as it went: %v", seen)
	var sum jobs.StockDeleteSummary
	require.NoError(t, admin.Wait(context.Background(), id, &sum))
	require.Equal(t, 4, sum.Deleted)
	job, err := admin.River.JobGet(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, &seen[len(seen)-1], jobs.ProgressOf(job), "the summary carries the last count")
}

func TestStockReconcileReportsKeysCheckedInOrderUpToTheTotal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deps := adoptDeps(b, 10)
	deps.ProgressEvery = time.Nanosecond
	for range 3 {
		b.lostStockKey(t, 14)
	}
	admin, _ := stockAdmin(t, b, deps)
	id, err := admin.QueueReconcile(context.Background(), jobs.ActorCLI, "")
	require.NoError(t, err)

	seen := followProgress(t, admin.River, id)
	requireInOrder(t, seen, 1000)
	require.Contains(t, seen[0].Phase, "listing the stock keys of project "+project+" (1 of 1)")
	var sum jobs.StockReconcileSummary
	require.NoError(t, admin.Wait(context.Background(), id, &sum))
	require.GreaterOrEqual(t, sum.Adopted, 3)
}

// A job can record its last count and complete, its summary replacing the
// count, between two of WaitJob's reads: the summary carries the last
// count (ProgressRecorder.WithLastCount), and WaitJob shows it, once.
func TestWaitJobShowsTheLastCountTheSummaryCarries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	res, err := client.Insert(ctx, jobs.DeleteStockArgs{PriceID: priceStock}, nil)
	require.NoError(t, err)
	counted := jobs.Progress{Phase: "deleting keys", Done: 40, Total: 60, Unit: "keys deleted", UpdatedAt: time.Now().UTC()}
	_, err = client.JobUpdate(ctx, res.Job.ID, &river.JobUpdateParams{Output: jobs.ProgressOutput{Progress: &counted}})
	require.NoError(t, err)

	shown := make(chan jobs.Progress, 10)
	var summary jobs.StockDeleteSummary
	waited := make(chan error, 1)
	go func() {
		waited <- jobs.WaitJob(ctx, client, res.Job.ID, &summary, func(p jobs.Progress) { shown <- p })
	}()
	first := <-shown
	require.Equal(t, 40, first.Done)
	// The job records its last count and completes at once, as River's
	// completion of the worker's output does, before WaitJob reads again.
	last := jobs.Progress{Phase: "deleting keys", Done: 60, Total: 60, Unit: "keys deleted", UpdatedAt: time.Now().UTC()}
	output, err := json.Marshal(map[string]any{"retired": 60, "deleted": 58, "already_gone": 2, "progress": last})
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE river_job SET state = 'completed', finalized_at = now(),
		metadata = jsonb_set(metadata, '{output}', $2::jsonb) WHERE id = $1`, res.Job.ID, output)
	require.NoError(t, err)
	require.NoError(t, <-waited)
	close(shown)
	var rest []jobs.Progress
	for p := range shown {
		rest = append(rest, p)
	}
	require.Len(t, rest, 1, "the last count, once: %v", rest)
	require.Equal(t, 60, rest[0].Done)
	require.Equal(t, 60, rest[0].Total)
	require.Equal(t, 60, summary.Retired, "the outcome is the summary")
}
