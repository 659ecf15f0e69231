package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/catalog"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
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

// PriceStock is one price's stock keys and what the catalog says of it.
type PriceStock struct {
	postgres.StockLevels
	// Target is the catalog's stock: N; 0 when the price is not stocked.
	Target int
	// InCatalog says the catalog still lists the price.
	InCatalog bool
}

// Orphan says the price keeps unsold keys the catalog no longer stocks:
// `fulfiller stock delete` removes them.
func (p PriceStock) Orphan() bool {
	return p.Target == 0 && p.Ready+p.Pending+p.Retiring > 0
}

// Levels lists the stock of every price that has stock keys or is stocked
// by the catalog, by price ID.
func (a *StockAdmin) Levels(ctx context.Context) ([]PriceStock, error) {
	levels, err := postgres.AllStockLevels(ctx, a.Pool)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []PriceStock
	for _, l := range levels {
		p, ok := a.Catalog.Lookup(l.PriceID)
		out = append(out, PriceStock{StockLevels: l, Target: p.Stock, InCatalog: ok})
		seen[l.PriceID] = true
	}
	for _, id := range a.Catalog.Stocked() {
		if p, _ := a.Catalog.Lookup(id); !seen[id] {
			out = append(out, PriceStock{StockLevels: postgres.StockLevels{PriceID: id, ProjectID: p.ProjectID, KeyDays: p.KeyDays},
				Target: p.Stock, InCatalog: true})
		}
	}
	slices.SortStableFunc(out, func(x, y PriceStock) int { return strings.Compare(x.PriceID, y.PriceID) })
	return out, nil
}

// QueueReconcile queues an operator's stock reconciliation; asking while
// one waits or runs returns that one. The audit log keeps actor's reason
// ("" when none was given).
func (a *StockAdmin) QueueReconcile(ctx context.Context, actor, reason string) (int64, error) {
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	var res *rivertype.JobInsertResult
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) (err error) {
		if res, err = a.River.InsertTx(ctx, tx, ReconcileStockArgs{Actor: actor}, nil); err != nil {
			return fmt.Errorf("queueing the stock reconciliation: %w", err)
		}
		return auditOrder(ctx, tx, actor, "stock-reconcile", nil, "", reason, map[string]any{"job_id": res.Job.ID})
	})
	if err != nil {
		return 0, err
	}
	a.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", "stock-reconcile", "job_id", res.Job.ID)
	return res.Job.ID, nil
}

// maxPriceIDLength bounds a price ID given on the command line; Stripe's
// are about 30 characters.
const maxPriceIDLength = 255

// QueueDelete queues the deletion of a price's unsold stock keys. It
// refuses (ECONFLICT) a price this catalog still stocks, unless keys of it
// already out of sale (an earlier deletion cut off or refused, or keys the
// reconciliation found used or banned) wait for their deletion: the job
// deletes those only, checking the service's catalog again. The audit log
// keeps actor's reason.
func (a *StockAdmin) QueueDelete(ctx context.Context, actor, reason, priceID string) (int64, error) {
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	if priceID == "" || len(priceID) > maxPriceIDLength || strings.ContainsFunc(priceID, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return 0, order.Errorf(order.EINVALID, "a price ID is 1 to %d printable characters without spaces, as in the catalog", maxPriceIDLength)
	}
	if p, ok := a.Catalog.Lookup(priceID); ok && p.Stock > 0 {
		retiring, err := postgres.RetiringStockKeys(ctx, a.Pool, priceID)
		if err != nil {
			return 0, err
		}
		if len(retiring) == 0 {
			return 0, errPriceStocked(priceID, p.Stock)
		}
	}
	var res *rivertype.JobInsertResult
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) (err error) {
		if res, err = a.River.InsertTx(ctx, tx, DeleteStockArgs{PriceID: priceID, Actor: actor}, nil); err != nil {
			return fmt.Errorf("queueing the deletion of the stock of price %s: %w", priceID, err)
		}
		return auditOrder(ctx, tx, actor, "stock-delete", nil, "", reason, map[string]any{"job_id": res.Job.ID, "price_id": priceID})
	})
	if err != nil {
		return 0, err
	}
	a.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", "stock-delete", "price_id", priceID, "job_id", res.Job.ID)
	return res.Job.ID, nil
}

// Wait waits for job id to finish and decodes its recorded output into
// out. A job that did not complete returns an error with its last error.
func (a *StockAdmin) Wait(ctx context.Context, id int64, out any) error {
	return WaitJob(ctx, a.River, id, out, nil)
}

// QueueRefill queues a refill of a price the catalog stocks, or returns
// the one waiting or running: an operator follows its progress. The audit
// log keeps actor's request and reason.
func (a *StockAdmin) QueueRefill(ctx context.Context, actor, reason, priceID string) (int64, error) {
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	if p, ok := a.Catalog.Lookup(priceID); !ok || p.Stock == 0 {
		return 0, order.Errorf(order.EINVALID, "price %s is not stocked in the catalog (stock: N); `fulfiller stock list` shows the stocked prices", priceID)
	}
	var res *rivertype.JobInsertResult
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) (err error) {
		if res, err = a.River.InsertTx(ctx, tx, RefillStockArgs{PriceID: priceID}, nil); err != nil {
			return fmt.Errorf("queueing the refill of the stock of price %s: %w", priceID, err)
		}
		return auditOrder(ctx, tx, actor, "stock-refill", nil, "", reason,
			map[string]any{"job_id": res.Job.ID, "price_id": priceID, "already_queued": res.UniqueSkippedAsDuplicate})
	})
	if err != nil {
		return 0, err
	}
	a.Logger.InfoContext(ctx, "stock refill queued", "actor", actor, "price_id", priceID, "job_id", res.Job.ID, "already_queued", res.UniqueSkippedAsDuplicate)
	return res.Job.ID, nil
}

// WaitJob waits for job id to finish and decodes its recorded output into
// out, calling show (when not nil) with each progress the job records
// meanwhile. A job that did not complete returns an error with its last
// error.
func WaitJob(ctx context.Context, client *river.Client[pgx.Tx], id int64, out any, show func(Progress)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var shown time.Time
	showNewer := func(p *Progress) {
		if show != nil && p != nil && p.UpdatedAt.After(shown) {
			shown = p.UpdatedAt
			show(*p)
		}
	}
	for {
		job, err := client.JobGet(ctx, id)
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
			// The last count may have been recorded and replaced by the
			// summary between two reads: the summary carries it
			// (ProgressRecorder.WithLastCount), as a refill's output is
			// its count.
			showNewer(ProgressOf(job))
			return nil
		}
		showNewer(ProgressOf(job))
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %d is queued but not finished yet; is the service running? %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
