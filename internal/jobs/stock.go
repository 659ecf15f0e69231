package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

// QueueLuarmorStock holds the stock's refills: their requests wait for
// spare budget (budget.ClassStock), so they get a queue of their own and
// never hold a worker another class needs.
const QueueLuarmorStock = "luarmor_stock"

// refillEvery is how often each stocked price is checked; a sale also
// queues its price's refill at once.
const refillEvery = time.Minute

// RefillStockArgs makes keys for a price's stock until it holds the
// catalog's stock: N unsold keys.
type RefillStockArgs struct {
	PriceID string `json:"price_id"`
}

func (RefillStockArgs) Kind() string { return "refill_stock" }

func (RefillStockArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorStock, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// StockPeriodicJobs checks the stock of each price the catalog stocks at
// start-up, then every refillEvery; and, when any is stocked, compares
// Luarmor's stock keys with the database at start-up, then every
// reconcileStockEvery.
func StockPeriodicJobs(c *catalog.Catalog) []*river.PeriodicJob {
	var out []*river.PeriodicJob
	for _, id := range c.Stocked() {
		out = append(out, river.NewPeriodicJob(river.PeriodicInterval(refillEvery),
			func() (river.JobArgs, *river.InsertOpts) { return RefillStockArgs{PriceID: id}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}))
	}
	if len(out) > 0 {
		out = append(out, river.NewPeriodicJob(river.PeriodicInterval(reconcileStockEvery),
			func() (river.JobArgs, *river.InsertOpts) { return ReconcileStockArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}))
	}
	return out
}

// RefillStockWorker works RefillStockArgs. Keys are made one at a time, each
// planned with its reference (and counted toward N) in a commit before its
// create is sent, under the same create lease as a unit's key: a run cut off
// after Luarmor made the key is followed by a look-up by reference, never by
// a second create, so a crash never takes the stock past N.
type RefillStockWorker struct {
	river.WorkerDefaults[RefillStockArgs]
	Deps

	// afterCreate, when set by tests, runs between Luarmor's answer and the
	// commit that records the stock key.
	afterCreate func(ctx context.Context) error
}

// Timeout covers several keys, each waiting for spare budget.
func (w *RefillStockWorker) Timeout(*river.Job[RefillStockArgs]) time.Duration {
	return 10 * time.Minute
}

// StockNote is the Luarmor note of a stock key: it names the key as stock
// and carries its reference, by which a crashed refill finds it again. A
// sale rewrites it to the buyer's Note.
func StockNote(reference string) string { return "stock " + noteReferencePrefix + reference }

func (w *RefillStockWorker) Work(ctx context.Context, job *river.Job[RefillStockArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassStock)
	if w.Catalog == nil {
		return nil
	}
	// A price no longer stocked plans no new key (target 0), but a key an
	// earlier run was cut off making is still finished or found by its
	// reference: it may exist in Luarmor. The keys it has stay for sale.
	plan := postgres.StockPlan{PriceID: job.Args.PriceID}
	if product, ok := w.Catalog.Lookup(job.Args.PriceID); ok {
		plan.ProjectID, plan.KeyDays, plan.Target = product.ProjectID, product.KeyDays, product.Stock
	}
	owner := newLeaseOwner(job.JobRow)
	log := w.Logger.With("price_id", plan.PriceID)
	progress := w.progressRecorder(ctx, job.JobRow)
	for {
		full, err := w.makeOne(ctx, job, plan, owner, progress, log)
		if err != nil || full {
			return err
		}
	}
}

// refillPhase is a refill's one phase.
const refillPhase = "making keys"

// makeOne makes or finds the next stock key of plan; full says none was
// left to make. Its claim's commit records the refill's progress.
func (w *RefillStockWorker) makeOne(ctx context.Context, job *river.Job[RefillStockArgs], plan postgres.StockPlan, owner string,
	progress *ProgressRecorder, log *slog.Logger) (full bool, err error) {
	var s *postgres.StockKey
	err = pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		s, err = postgres.ClaimStockKey(ctx, tx, plan, owner, w.CreateLease)
		if err != nil {
			return err
		}
		made, total, err := postgres.RefillProgress(ctx, tx, plan, job.CreatedAt)
		if err != nil {
			return err
		}
		if err := progress.RecordTx(ctx, tx, Progress{Phase: refillPhase, Done: made, Total: total, Unit: "keys made"}); err != nil {
			return err
		}
		if s != nil {
			return nil
		}
		// Full: the job completes under the stock's lock, so a sale
		// committing next finds no refill in flight and queues one. Hence
		// in the claim's transaction, not complete(), and only when it
		// claimed nothing.
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	var held *postgres.LeaseHeldError
	switch {
	case errors.As(err, &held):
		// Another run may have a create on its way: it finishes the key,
		// or this job looks it up once the lease has run out.
		return false, river.JobSnooze(max(time.Until(held.Until), 0) + 250*time.Millisecond)
	case err != nil:
		return false, err
	case s == nil:
		return true, nil
	}
	unleased := ctx
	ctx = budget.WithBeforeSend(ctx, func(ctx context.Context) error {
		return postgres.RenewStockLease(ctx, w.Pool, s.ID, owner, w.CreateLease)
	})
	log = log.With("reference", s.Reference)
	if s.CreateAttempts > 1 {
		user, err := findByReference(ctx, w.Deps, s.ProjectID, s.Reference)
		if err != nil {
			return false, w.failure(ctx, s, owner, err, log)
		}
		if user != nil {
			log.InfoContext(ctx, "found stock key created by an earlier attempt", "user_key", logging.MaskKey(user.UserKey))
			if recorded, err := w.record(unleased, s, user.UserKey, log); err != nil || !recorded {
				return false, err
			}
			w.Metrics.StockRefilled(plan.PriceID)
			return false, nil
		}
	}
	userKey, err := w.Luarmor.CreateUser(ctx, s.ProjectID, luarmor.CreateUserRequest{Note: StockNote(s.Reference), KeyDays: s.KeyDays})
	if err != nil {
		settleCreateLease(ctx, err,
			func(ctx context.Context) { _ = postgres.ShortenStockLease(ctx, w.Pool, s.ID, owner, answeredLease) },
			func(ctx context.Context) { _ = postgres.ReleaseStockLease(ctx, w.Pool, s.ID, owner, true) })
		return false, w.failure(ctx, s, owner, err, log)
	}
	if w.afterCreate != nil {
		err = w.afterCreate(ctx)
	}
	recorded := false
	if err == nil {
		recorded, err = w.record(unleased, s, userKey, log)
	}
	if err != nil {
		// Luarmor made the key; only recording it failed. The retry finds
		// it by its reference after a short wait.
		_ = postgres.ShortenStockLease(context.WithoutCancel(ctx), w.Pool, s.ID, owner, answeredLease)
		return false, err
	}
	if !recorded {
		return false, nil
	}
	w.Metrics.StockRefilled(plan.PriceID)
	log.InfoContext(ctx, "stock key created", "user_key", logging.MaskKey(userKey), "project_id", s.ProjectID, "key_days", s.KeyDays)
	return false, nil
}

// record records userKey as stock key s. If another run took the lease
// over and recorded a key of its own (this run's create outlived the
// lease), userKey is a second key for one stock place: it is deleted, so
// Luarmor holds no key the database does not know. recorded says userKey
// is the stock key (counted by the caller as a refill).
func (w *RefillStockWorker) record(ctx context.Context, s *postgres.StockKey, userKey string, log *slog.Logger) (recorded bool, err error) {
	err = postgres.StockKeyMade(ctx, w.Pool, s.ID, userKey)
	if !errors.Is(err, postgres.ErrStockKeyRecordedElsewhere) {
		return err == nil, err
	}
	err = w.Luarmor.DeleteUser(budget.WithClass(ctx, budget.ClassMaintenance), s.ProjectID, userKey)
	if err != nil && !errors.Is(err, luarmor.ErrNotFound) {
		log.ErrorContext(ctx, "a second stock key was made for one stock place and could not be deleted; delete it in the Luarmor dashboard (search the reference, keep the key recorded in stock_keys)",
			"user_key", logging.MaskKey(userKey), "error", err)
		return false, nil
	}
	log.WarnContext(ctx, "a second stock key was made for one stock place; deleted it", "user_key", logging.MaskKey(userKey))
	return false, nil
}

// failure decides what a failed Luarmor call means for the refill: wait for
// the budget or retry with backoff; a refusal for good (an unknown project)
// drops the planned key, which no create made, and stops until the catalog
// is fixed.
func (w *RefillStockWorker) failure(ctx context.Context, s *postgres.StockKey, owner string, err error, log *slog.Logger) error {
	var notSent *budget.NotSentError
	if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry || errors.As(err, &notSent) {
		return jobErr
	}
	if err := postgres.DropStockKey(context.WithoutCancel(ctx), w.Pool, s.ID); err != nil {
		return err
	}
	log.ErrorContext(ctx, "luarmor refused a stock key; check the price's project_id in the catalog", "project_id", s.ProjectID, "error", err)
	return river.JobCancel(fmt.Errorf("luarmor refused a stock key of project %s: %w", s.ProjectID, err))
}
