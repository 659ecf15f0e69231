package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"fulfiller/internal/retention"
)

// PruneHistoryArgs drops what the retention policy says is past its age
// (internal/retention), a batch at a time, on the leader every pruneEvery.
type PruneHistoryArgs struct{}

func (PruneHistoryArgs) Kind() string { return "prune_history" }

func (PruneHistoryArgs) InsertOpts() river.InsertOpts {
	// The next run does the same work: one waits or runs at a time, and a
	// failing one need not retry for long.
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// Pacing of pruning: a run every pruneEvery, stopping after pruneFor; a
// backlog (the first run on a years-old database) is worked through over
// several runs rather than in one long one.
const (
	pruneEvery = time.Hour
	pruneFor   = 5 * time.Minute
)

// PruneHistoryWorker works PruneHistoryArgs.
type PruneHistoryWorker struct {
	river.WorkerDefaults[PruneHistoryArgs]
	Deps
}

func (w *PruneHistoryWorker) Timeout(*river.Job[PruneHistoryArgs]) time.Duration {
	return pruneFor + time.Minute
}

func (w *PruneHistoryWorker) Work(ctx context.Context, job *river.Job[PruneHistoryArgs]) error {
	p := &retention.Pruner{Pool: w.Pool, Settings: w.Retention, Now: w.Now, OnBatch: w.Metrics.PrunedRows}
	sum, err := p.Run(ctx, time.Now().Add(pruneFor))
	if err != nil {
		w.Logger.ErrorContext(ctx, "pruning history failed; the next run goes on where it stopped", "pruned", sum.Pruned, "error", err)
		return err
	}
	w.Logger.InfoContext(ctx, "history pruned", "pruned", sum.Pruned, "complete", sum.Complete)
	return river.RecordOutput(ctx, sum)
}
