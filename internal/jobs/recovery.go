package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/logging"
	"fulfiller/internal/postgres"
)

// Crash recovery. Work in flight on a replica that dies (SIGKILL, out of
// memory, a lost node) is running again elsewhere within about
// ReplicaStaleAfter + RescueEvery, and a unit's create waits out the dead
// runner's lease (at most createLease after its last request was sent)
// before it looks the key up: well inside a minute, and never a second key.
const (
	HeartbeatEvery    = 2 * time.Second
	ReplicaStaleAfter = 10 * time.Second
	RescueEvery       = 3 * time.Second
)

// Replica keeps this process's heartbeat and hands back the jobs of
// replicas that stopped beating. Every replica runs one; the rescue is a
// single UPDATE, so two replicas rescuing at once do no harm.
type Replica struct {
	Pool   *pgxpool.Pool
	Name   string // the River client ID
	Logger *slog.Logger
}

// Join records the first heartbeat; call it before the River client starts.
func (r *Replica) Join(ctx context.Context) error {
	return postgres.Heartbeat(ctx, r.Pool, r.Name)
}

// Run beats and rescues until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	beat := time.NewTicker(HeartbeatEvery)
	defer beat.Stop()
	rescue := time.NewTicker(RescueEvery)
	defer rescue.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			err := postgres.Heartbeat(ctx, r.Pool, r.Name)
			if err != nil && !failing && ctx.Err() == nil {
				r.Logger.WarnContext(ctx, "heartbeat failed; if it keeps failing other replicas take over this one's jobs", "error", err)
			}
			failing = err != nil
		case <-rescue.C:
			rescued, err := postgres.RescueOrphanedJobs(ctx, r.Pool, ReplicaStaleAfter)
			if err != nil {
				if ctx.Err() == nil && !failing {
					r.Logger.WarnContext(ctx, "rescuing jobs of stopped replicas failed; will try again", "error", err)
				}
				continue
			}
			for _, j := range rescued {
				r.Logger.WarnContext(ctx, "job of a stopped replica handed back to the queue", "job_id", j.ID, "kind", j.Kind, "replica", j.Replica)
			}
		}
	}
}

// Leave removes the replica's heartbeat after a clean stop.
func (r *Replica) Leave(ctx context.Context) error {
	return postgres.Leave(ctx, r.Pool, r.Name)
}

// ResumeOrdersArgs queues again the orders whose chain of jobs broke: paid
// orders with units to create and no create_key job, and paid orders never
// expanded with no fulfil_order job. Nothing should break the chain (each
// finished unit queues the next in its own commit); this sweep makes sure
// a discarded job or an operator's mistake never strands a paid order.
type ResumeOrdersArgs struct{}

func (ResumeOrdersArgs) Kind() string { return "resume_orders" }

func (ResumeOrdersArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

const (
	resumeEvery = time.Minute
	// resumeAfter leaves alone orders that changed recently: their jobs
	// may be committing right now.
	resumeAfter = time.Minute
	resumeBatch = 100
)

// ResumeOrdersWorker works ResumeOrdersArgs.
type ResumeOrdersWorker struct {
	river.WorkerDefaults[ResumeOrdersArgs]
	Deps
}

func (w *ResumeOrdersWorker) Work(ctx context.Context, job *river.Job[ResumeOrdersArgs]) error {
	units, notLoaded, err := postgres.StalledOrders(ctx, w.Pool, CreateKeyArgs{}.Kind(), FulfilOrderArgs{}.Kind(), resumeAfter, resumeBatch)
	if err != nil {
		return err
	}
	for _, id := range units {
		err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
			o, err := postgres.LockOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			return queueUnits(ctx, tx, o)
		})
		if err != nil {
			return err
		}
		w.Logger.WarnContext(ctx, "order had units to create and no job; queued them again", "order_ref", logging.OrderRef(id))
	}
	for _, id := range notLoaded {
		err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
			o, err := postgres.LockOrder(ctx, tx, id)
			if err != nil {
				return err
			}
			return insertMany(ctx, tx, fulfilOrder(o))
		})
		if err != nil {
			return err
		}
		w.Logger.WarnContext(ctx, "paid order was never expanded and had no job; queued its fulfilment again", "order_ref", logging.OrderRef(id))
	}
	return w.resumeKeyWrites(ctx)
}

// retryGivenUpWritesAfter: a key whose writer gave up (Luarmor refused it
// every attempt) is tried again this long after, not every sweep, so a key
// Luarmor will never accept does not spend the budget each minute.
const retryGivenUpWritesAfter = time.Hour

// resumeKeyWrites queues the writer of each key whose ledger changed and
// was never applied, with no writer queued: urgently, since what it owes
// may be a revocation and is late already.
func (w *ResumeOrdersWorker) resumeKeyWrites(ctx context.Context) error {
	ids, err := postgres.StalledLedgerKeys(ctx, w.Pool, SyncKeyArgs{}.Kind(), resumeAfter, retryGivenUpWritesAfter, resumeBatch)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	client, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := client.Insert(ctx, SyncKeyArgs{LedgerKeyID: id, Urgent: true}, nil); err != nil {
			return fmt.Errorf("queueing the writer of ledger key %d again: %w", id, err)
		}
		w.Logger.WarnContext(ctx, "key had ledger changes never applied and no writer queued; queued it again", "ledger_key_id", id)
	}
	return nil
}
