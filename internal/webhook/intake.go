package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// Batching: at most maxBatch events per transaction; under load a writer
// with fewer than lingerBelow events waits up to lingerFor for more.
const (
	maxBatch    = 128
	lingerBelow = 8
	lingerFor   = 300 * time.Microsecond
	// commitTimeout bounds a batch's transaction, and then the pass that
	// records its events one by one.
	commitTimeout = 10 * time.Second
)

// intake records events with group commit: each writer takes every event
// waiting when it is free and records them in one transaction (one
// multi-row INSERT, one River insert). An event alone is written at once;
// under a burst, round trips are shared instead of repeated per event.
// Every request is still answered only after the commit that holds it.
type intake struct {
	pool   *pgxpool.Pool
	river  *river.Client[pgx.Tx]
	logger *slog.Logger
	queue  chan *pending
	wg     sync.WaitGroup
	once   sync.Once
	busy   atomic.Int32 // writers committing now
}

type pending struct {
	ctx   context.Context
	event postgres.Event
	done  chan result // buffered
}

type result struct {
	isNew bool
	err   error
}

func newIntake(pool *pgxpool.Pool, rc *river.Client[pgx.Tx], logger *slog.Logger, writers int) *intake {
	in := &intake{pool: pool, river: rc, logger: logger, queue: make(chan *pending, 4*maxBatch)}
	for i := 0; i < writers; i++ {
		in.wg.Add(1)
		go in.write()
	}
	return in
}

func (in *intake) close() {
	in.once.Do(func() { close(in.queue) })
	in.wg.Wait()
}

// record queues an event and waits for the commit that holds it.
func (in *intake) record(ctx context.Context, e postgres.Event) (bool, error) {
	p := &pending{ctx: ctx, event: e, done: make(chan result, 1)}
	select {
	case in.queue <- p:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	// Once queued, wait for the outcome even if the client gave up: the
	// writer may be committing it.
	r := <-p.done
	return r.isNew, r.err
}

func (in *intake) write() {
	defer in.wg.Done()
	for first := range in.queue {
		batch := in.gather(first)
		// Requests whose client already left are still recorded: Stripe
		// may have timed out while the event was on its way to the disk.
		in.busy.Add(1)
		results := in.commit(batch)
		in.busy.Add(-1)
		for i, p := range batch {
			p.done <- results[i]
		}
	}
}

// gather takes every event waiting after first. When another writer is
// committing (the endpoint is under load) and few are waiting, it lingers
// up to lingerFor for more, so one commit serves many requests; an event
// arriving at an idle endpoint is written at once.
func (in *intake) gather(first *pending) []*pending {
	batch := []*pending{first}
	var linger <-chan time.Time
	for len(batch) < maxBatch {
		select {
		case p, ok := <-in.queue:
			if !ok {
				return batch
			}
			batch = append(batch, p)
			continue
		default:
		}
		if linger == nil && len(batch) < lingerBelow && in.busy.Load() > 0 {
			t := time.NewTimer(lingerFor)
			defer t.Stop()
			linger = t.C
		}
		if linger == nil {
			return batch
		}
		select {
		case p, ok := <-in.queue:
			if !ok {
				return batch
			}
			batch = append(batch, p)
		case <-linger:
			return batch
		}
	}
	return batch
}

// commit records a batch in one transaction. If that fails, each event is
// recorded again in a transaction of its own, so an event the database
// refuses fails alone and the others are answered 200; only an event whose
// own transaction fails gets an error.
func (in *intake) commit(batch []*pending) []result {
	events := make([]postgres.Event, len(batch))
	for i, p := range batch {
		events[i] = p.event
	}
	results := make([]result, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	isNew, err := in.recordTogether(ctx, events)
	cancel()
	switch {
	case err == nil:
		for i := range results {
			results[i] = result{isNew: isNew[i]}
		}
		return results
	case len(batch) == 1:
		results[0] = result{err: err}
		return results
	}
	in.logger.Warn("shared webhook transaction failed; recording its events one by one", "events", len(batch), "error", err)
	// A batch that failed to commit may have committed after all (the
	// answer to COMMIT was lost): its events then come back as duplicates,
	// and the job it enqueued acts on them. One deadline for them all: a
	// database that hangs must not hold the writer once per event.
	ctx, cancel = context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	for i := range events {
		isNew, err := in.recordTogether(ctx, events[i:i+1])
		if err != nil {
			results[i] = result{err: err}
		} else {
			results[i] = result{isNew: isNew[0]}
		}
	}
	return results
}

// recordTogether records events in one transaction of their own.
func (in *intake) recordTogether(ctx context.Context, events []postgres.Event) ([]bool, error) {
	var isNew []bool
	err := pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = RecordTx(ctx, tx, in.river, events)
		return err
	})
	return isNew, err
}

// RecordTx records verified events (see ParseEvent) in tx and enqueues, in
// the same transaction, the job that acts on the new ones of handled
// types. It returns, per event, whether it is new: an event ID recorded
// before, or earlier in events, is a repeat and enqueues nothing.
func RecordTx(ctx context.Context, tx pgx.Tx, rc *river.Client[pgx.Tx], events []postgres.Event) ([]bool, error) {
	isNew, err := postgres.RecordEvents(ctx, tx, events)
	if err != nil {
		return nil, err
	}
	// One job for the new events the service acts on, in the order of
	// their objects: two jobs that touch the same orders then lock them in
	// the same order and never deadlock. Events of one object keep their
	// order in events.
	var handled []postgres.Event
	for i, e := range events {
		if isNew[i] && e.Handled {
			handled = append(handled, e)
		}
	}
	if len(handled) == 0 {
		return isNew, nil
	}
	sort.SliceStable(handled, func(i, j int) bool { return handled[i].ObjectID < handled[j].ObjectID })
	ids := make([]string, len(handled))
	for i, e := range handled {
		ids[i] = e.ID
	}
	if _, err := rc.InsertTx(ctx, tx, jobs.HandleEventsArgs{EventIDs: ids}, nil); err != nil {
		return nil, fmt.Errorf("enqueueing handle_events for %d stripe events: %w", len(ids), err)
	}
	return isNew, nil
}
