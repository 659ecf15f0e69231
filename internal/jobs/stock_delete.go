package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// DeleteStockArgs deletes from Luarmor, and then from stock_keys, every
// unsold key of a price the catalog no longer stocks.
type DeleteStockArgs struct {
	PriceID string `json:"price_id"`
	Actor   string `json:"actor"`
}

func (DeleteStockArgs) Kind() string { return "delete_stock" }

// InsertOpts: an operator's clean-up, in the maintenance class like the
// support actions; asking again while it runs returns the same job.
func (DeleteStockArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorMaintenance, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// StockDeleteSummary is what a deletion did; the job records it as its
// output for `fulfiller stock delete`.
type StockDeleteSummary struct {
	// Retired counts the ready keys this run took out of sale.
	Retired int `json:"retired"`
	// Deleted counts the keys deleted in Luarmor and dropped; AlreadyGone
	// those Luarmor no longer had (an earlier run deleted them and was cut
	// off before dropping the row, or someone did in the dashboard).
	Deleted     int `json:"deleted"`
	AlreadyGone int `json:"already_gone"`
}

// errPriceStocked refuses to delete the stock of a price the catalog
// still stocks: its refill would make the keys again.
func errPriceStocked(priceID string, n int) error {
	return order.Errorf(order.ECONFLICT, "price %s is stocked in the catalog (stock: %d); lower its stock to 0 or remove the price from the catalog first, restart the service, then delete its stock", priceID, n)
}

// DeleteStockWorker works DeleteStockArgs. Each key leaves sale (ready ->
// retiring) in a commit before its Luarmor delete, so a concurrent sale,
// which takes only ready keys under a row lock, never gets a key being
// deleted; a run cut off after the delete leaves the row retiring and the
// next run finishes it (Luarmor's 404 counts as deleted).
type DeleteStockWorker struct {
	river.WorkerDefaults[DeleteStockArgs]
	Deps
}

// Timeout covers a price's whole stock, one maintenance slot per key.
func (w *DeleteStockWorker) Timeout(*river.Job[DeleteStockArgs]) time.Duration {
	return 30 * time.Minute
}

func (w *DeleteStockWorker) Work(ctx context.Context, job *river.Job[DeleteStockArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassMaintenance)
	priceID := job.Args.PriceID
	log := w.Logger.With("price_id", priceID, "actor", job.Args.Actor)
	var sum StockDeleteSummary
	// The service's own catalog decides: a refill of a stocked price would
	// make the keys again. Keys already retiring are deleted whatever it
	// says, since they are out of sale until then.
	if p, ok := w.Catalog.Lookup(priceID); ok && p.Stock > 0 {
		retiring, err := postgres.RetiringStockKeys(ctx, w.Pool, priceID)
		if err != nil {
			return err
		}
		if len(retiring) == 0 {
			return river.JobCancel(errPriceStocked(priceID, p.Stock))
		}
	} else {
		n, err := postgres.RetireStock(ctx, w.Pool, priceID)
		if err != nil {
			return err
		}
		sum.Retired = n
	}
	keys, err := postgres.RetiringStockKeys(ctx, w.Pool, priceID)
	if err != nil {
		return err
	}
	progress := w.progressRecorder(ctx, job.JobRow)
	report := func() error {
		deleted, total, err := postgres.DeleteProgress(ctx, w.Pool, priceID, job.CreatedAt)
		if err != nil {
			return err
		}
		progress.Record(ctx, Progress{Phase: "deleting keys in Luarmor", Done: deleted, Total: total, Unit: "keys deleted"})
		return nil
	}
	if err := report(); err != nil {
		return err
	}
	for _, k := range keys {
		err := w.Luarmor.DeleteUser(ctx, k.ProjectID, k.UserKey)
		gone := errors.Is(err, luarmor.ErrNotFound)
		if err != nil && !gone {
			if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
				return jobErr
			}
			return river.JobCancel(fmt.Errorf("luarmor refused to delete stock key %d of price %s: %w", k.ID, priceID, err))
		}
		if err := postgres.DropRetiredStockKey(ctx, w.Pool, k); err != nil {
			return err
		}
		if err := report(); err != nil {
			return err
		}
		if gone {
			sum.AlreadyGone++
		} else {
			sum.Deleted++
		}
		log.InfoContext(ctx, "stock key deleted", "user_key", logging.MaskKey(k.UserKey), "project_id", k.ProjectID,
			"reference", k.Reference, "already_gone", gone)
	}
	log.InfoContext(ctx, "stock of price deleted", "retired", sum.Retired, "deleted", sum.Deleted, "already_gone", sum.AlreadyGone)
	out, err := progress.WithLastCount(sum)
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, out)
}
