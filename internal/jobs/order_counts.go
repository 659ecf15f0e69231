package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"fulfiller/internal/postgres"
)

// FoldOrderCountsArgs folds the orders' status changes into their running
// counts (migration 0052), so the read behind fulfiller_orders{status}
// stays a few rows however many orders the shop has sold, and the change
// rows do not pile up on a shop whose metrics nobody scrapes.
type FoldOrderCountsArgs struct{}

func (FoldOrderCountsArgs) Kind() string { return "fold_order_counts" }

func (FoldOrderCountsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

const (
	foldCountsEvery = time.Minute
	// foldCountsBatch bounds one statement: a spike's minute of changes
	// folds in a few short statements rather than one long one.
	foldCountsBatch = 5000
)

// FoldOrderCountsWorker works FoldOrderCountsArgs.
type FoldOrderCountsWorker struct {
	river.WorkerDefaults[FoldOrderCountsArgs]
	Deps
}

func (w *FoldOrderCountsWorker) Work(ctx context.Context, _ *river.Job[FoldOrderCountsArgs]) error {
	for {
		moved, err := postgres.FoldOrderCounts(ctx, w.Pool, foldCountsBatch)
		if err != nil || moved < foldCountsBatch {
			return err
		}
	}
}
