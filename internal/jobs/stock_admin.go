package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/catalog"
)

// StockAdmin is the operator's side of the stock (`fulfiller stock`). Like
// Support, it calls no Luarmor itself: a reconciliation or a deletion is a
// job worked by the service's workers within the fleet's budget.
type StockAdmin struct {
	Pool    *pgxpool.Pool
	River   *river.Client[pgx.Tx]
	Catalog *catalog.Catalog
	Logger  *slog.Logger
}

// QueueReconcile queues an operator's stock reconciliation; asking while
// one waits or runs returns that one.
func (a *StockAdmin) QueueReconcile(ctx context.Context, actor string) (int64, error) {
	res, err := a.River.Insert(ctx, ReconcileStockArgs{Actor: actor}, nil)
	if err != nil {
		return 0, fmt.Errorf("queueing the stock reconciliation: %w", err)
	}
	a.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", "stock-reconcile", "job_id", res.Job.ID)
	return res.Job.ID, nil
}

// Wait waits for job id to finish and decodes its recorded output into
// out. A job that did not complete returns an error with its last error.
func (a *StockAdmin) Wait(ctx context.Context, id int64, out any) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		job, err := a.River.JobGet(ctx, id)
		if err != nil {
			return fmt.Errorf("reading job %d: %w", id, err)
		}
		if job.FinalizedAt != nil {
			if job.State != rivertype.JobStateCompleted {
				why := "no error recorded"
				if len(job.Errors) > 0 {
					why = job.Errors[len(job.Errors)-1].Error
				}
				return fmt.Errorf("job %d %s: %s", id, job.State, why)
			}
			if err := json.Unmarshal(job.Output(), out); err != nil {
				return fmt.Errorf("reading the outcome of job %d: %w", id, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %d is queued but not finished yet; is the service running? %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
