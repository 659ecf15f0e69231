package webhook

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/postgres"
)

// Batching: at most maxBatch events per transaction; under load a writer
// with fewer than lingerBelow events waits up to lingerFor for more.
const (
	maxBatch    = 128
	lingerBelow = 8
	lingerFor   = 300 * time.Microsecond
)

// intake records events with group commit: each writer takes every event
// waiting when it is free and records them in one transaction (one
// multi-row INSERT, one River insert). An event alone is written at once;
// under a burst, round trips are shared instead of repeated per event.
// Every request is still answered only after the commit that holds it.
type intake struct {
	pool  *pgxpool.Pool
	river *river.Client[pgx.Tx]
	queue chan *pending
	wg    sync.WaitGroup
	once  sync.Once
	busy  atomic.Int32 // writers committing now
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

func newIntake(pool *pgxpool.Pool, rc *river.Client[pgx.Tx], writers int) *intake {
	in := &intake{pool: pool, river: rc, queue: make(chan *pending, 4*maxBatch)}
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
		isNew, err := in.commit(batch)
		in.busy.Add(-1)
		for i, p := range batch {
			if err != nil {
				p.done <- result{err: err}
			} else {
				p.done <- result{isNew: isNew[i]}
			}
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

// commit records a batch and enqueues the job that acts on its new events.
func (in *intake) commit(batch []*pending) ([]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := make([]postgres.Event, len(batch))
	for i, p := range batch {
		events[i] = p.event
	}
	var isNew []bool
	err := pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = RecordTx(ctx, tx, in.river, events)
		return err
	})
	return isNew, err
}
