package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

// RefreshKeysArgs learns the expiry of keys whose key_days timer had not
// started: Luarmor starts it when the buyer first runs the script, and the
// order API should then show when the key ends. It runs periodically, a
// few keys at a time, at maintenance priority so it only spends budget
// nothing more urgent wants.
type RefreshKeysArgs struct{}

func (RefreshKeysArgs) Kind() string { return "refresh_keys" }

func (RefreshKeysArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorMaintenance, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// Refresh pacing: at most refreshBatch look-ups every refreshEvery (2 of
// the default 60 a minute), each key no more often than every refreshAge.
const (
	refreshEvery = 5 * time.Minute
	refreshBatch = 10
	refreshAge   = time.Hour
)

// RefreshKeysWorker works RefreshKeysArgs.
type RefreshKeysWorker struct {
	river.WorkerDefaults[RefreshKeysArgs]
	Deps
}

func (w *RefreshKeysWorker) Timeout(*river.Job[RefreshKeysArgs]) time.Duration {
	return 10 * time.Minute
}

func (w *RefreshKeysWorker) Work(ctx context.Context, job *river.Job[RefreshKeysArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassMaintenance)
	keys, err := postgres.UnstartedKeys(ctx, w.Pool, refreshBatch, refreshAge)
	if err != nil {
		return err
	}
	// With what the batch leaves, keys last seen unbound: one bound since
	// offers its HWID reset on the order page.
	if len(keys) < refreshBatch {
		unbound, err := postgres.UnboundKeys(ctx, w.Pool, refreshBatch-len(keys), refreshAge)
		if err != nil {
			return err
		}
		keys = append(keys, unbound...)
	}
	for _, k := range keys {
		u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
		if errors.Is(err, luarmor.ErrNotFound) {
			if err := postgres.RecordKeyCheck(ctx, w.Pool, k.ID, nil); err != nil {
				return err
			}
			w.Logger.WarnContext(ctx, "delivered key no longer exists in Luarmor", "order_key_id", k.ID, "order_ref", logging.OrderRef(k.CheckoutSessionID))
			continue
		}
		if err != nil {
			// The next run picks up where this one stopped.
			jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
			var snooze *river.JobSnoozeError
			if errors.As(jobErr, &snooze) {
				return nil
			}
			return jobErr
		}
		if err := recordBinding(ctx, w.Pool, k.ProjectID, k.UserKey, u); err != nil {
			return err
		}
		var expire *int64
		if u.AuthExpire != luarmor.NeverExpires || u.KeyDays == 0 {
			expire = &u.AuthExpire // the timer started (or the key is lifetime)
		}
		if err := postgres.RecordKeyCheck(ctx, w.Pool, k.ID, expire); err != nil {
			return err
		}
		if expire != nil && *expire != luarmor.NeverExpires {
			// Claimed at last: an expiry Luarmor kept as key_days while
			// nobody had claimed the key is sent now.
			awaiting, err := postgres.AwaitingClaim(ctx, w.Pool, k.ID)
			if err != nil {
				return err
			}
			if awaiting {
				if err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error { return syncUnits(ctx, tx, k.ID) }); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// periodicJobs are the jobs River's leader enqueues on a schedule.
func periodicJobs() []*river.PeriodicJob {
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(refreshEvery),
			func() (river.JobArgs, *river.InsertOpts) { return RefreshKeysArgs{}, nil }, nil),
		river.NewPeriodicJob(river.PeriodicInterval(resumeEvery),
			func() (river.JobArgs, *river.InsertOpts) { return ResumeOrdersArgs{}, nil }, nil),
		river.NewPeriodicJob(river.PeriodicInterval(watchEvery),
			func() (river.JobArgs, *river.InsertOpts) { return WatchSubscriptionsArgs{}, nil }, nil),
		river.NewPeriodicJob(river.PeriodicInterval(expiryNoticeEvery),
			func() (river.JobArgs, *river.InsertOpts) { return QueueExpiryNoticesArgs{}, nil }, nil),
		river.NewPeriodicJob(river.PeriodicInterval(foldCountsEvery),
			func() (river.JobArgs, *river.InsertOpts) { return FoldOrderCountsArgs{}, nil }, nil),
		river.NewPeriodicJob(river.PeriodicInterval(pruneEvery),
			func() (river.JobArgs, *river.InsertOpts) { return PruneHistoryArgs{}, nil }, nil),
	}
}
