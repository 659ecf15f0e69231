package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/postgres"
)

// WatchSubscriptionsArgs re-reads from Stripe the subscriptions whose keys
// are about to run out. A renewal paid by SEPA Direct Debit or ACH settles
// days after the period ends, and Stripe may send no event meanwhile; with
// PAST_DUE_ACTION=keep, sync_subscription extends such keys by the grace
// from now each time it runs, so running it before they lapse keeps a
// subscriber whose payment is still processing from losing access.
type WatchSubscriptionsArgs struct{}

func (WatchSubscriptionsArgs) Kind() string { return "watch_subscriptions" }

func (WatchSubscriptionsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// watchEvery is how often the watch runs; a key is re-checked once its
// expiry is within watchAhead, several runs before it lapses.
const (
	watchEvery = 15 * time.Minute
	watchAhead = 2 * time.Hour
	watchBatch = 200
)

// WatchSubscriptionsWorker works WatchSubscriptionsArgs.
type WatchSubscriptionsWorker struct {
	river.WorkerDefaults[WatchSubscriptionsArgs]
	Deps
}

func (w *WatchSubscriptionsWorker) Work(ctx context.Context, job *river.Job[WatchSubscriptionsArgs]) error {
	// Look ahead at least half the grace, so a short grace still gets a
	// run or two before the keys lapse.
	ahead := max(watchAhead, w.Policy.RenewalGrace/2)
	ids, err := postgres.SubscriptionsLapsingSoon(ctx, w.Pool, ahead, watchBatch)
	if err != nil || len(ids) == 0 {
		return err
	}
	err = pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		args := make([]river.JobArgs, len(ids))
		for i, id := range ids {
			args[i] = SyncSubscriptionArgs{SubscriptionID: id}
		}
		return insertMany(ctx, tx, args...)
	})
	if err != nil {
		return err
	}
	w.Logger.InfoContext(ctx, "subscriptions whose keys are about to lapse read again from Stripe", "subscriptions", len(ids))
	return nil
}
