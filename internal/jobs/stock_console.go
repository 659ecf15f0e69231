package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// StockReconcileResult is how the last stock reconciliation ended, for the
// console's stock page.
type StockReconcileResult struct {
	JobID int64
	// Actor is the operator who asked; "" for a periodic run.
	Actor      string
	State      string
	FinishedAt time.Time
	// Summary is what a completed run found; nil when it did not complete.
	Summary *StockReconcileSummary
	// Error is the last attempt's error of a run that did not complete.
	Error string
}

// LastReconcile reads the stock reconciliation that finished last
// (completed, given up or cancelled); nil when none has finished.
func (a *StockAdmin) LastReconcile(ctx context.Context) (*StockReconcileResult, error) {
	res, err := a.River.JobList(ctx, river.NewJobListParams().Kinds(ReconcileStockArgs{}.Kind()).
		States(rivertype.JobStateCompleted, rivertype.JobStateDiscarded, rivertype.JobStateCancelled).
		OrderBy(river.JobListOrderByFinalizedAt, river.SortOrderDesc).First(1))
	if err != nil {
		return nil, fmt.Errorf("reading the last stock reconciliation: %w", err)
	}
	if len(res.Jobs) == 0 {
		return nil, nil
	}
	j := res.Jobs[0]
	var args ReconcileStockArgs
	_ = json.Unmarshal(j.EncodedArgs, &args)
	out := &StockReconcileResult{JobID: j.ID, Actor: args.Actor, State: string(j.State)}
	if j.FinalizedAt != nil {
		out.FinishedAt = j.FinalizedAt.UTC()
	}
	if j.State == rivertype.JobStateCompleted {
		var summary StockReconcileSummary
		if err := json.Unmarshal(j.Output(), &summary); err != nil {
			return nil, fmt.Errorf("reading the outcome of stock reconciliation job %d: %w", j.ID, err)
		}
		out.Summary = &summary
	} else if n := len(j.Errors); n > 0 {
		out.Error = j.Errors[n-1].Error
	}
	return out, nil
}
