package jobs

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// jobTx is a job's own transaction (complete's) whose follow-up jobs are
// inserted together just before it commits: one River insert, and one
// notification, for everything a step queues (a sale queues its key's
// check, its key's writer and the price's refill), where each insertMany
// call would otherwise cost its own. The jobs commit with the step that
// queued them, exactly as when inserted at the call.
//
// A savepoint (Begin) queues into a jobTx of its own: its jobs join the
// transaction's when it is released and are dropped when it is rolled
// back, with the writes they followed. Nothing in a step reads back the
// jobs it queued; a job of a unique kind queued twice is inserted in two
// statements (insertQueued), as River refuses one statement that meets
// the same unique key twice.
type jobTx struct {
	pgx.Tx
	parent *jobTx // the transaction a savepoint's jobs join; nil for the transaction
	queued []river.InsertManyParams
}

// beginJobTx begins a job's own transaction.
func beginJobTx(ctx context.Context, pool *pgxpool.Pool) (*jobTx, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &jobTx{Tx: tx}, nil
}

func (t *jobTx) queue(args ...river.JobArgs) {
	for _, a := range args {
		t.queued = append(t.queued, river.InsertManyParams{Args: a})
	}
}

// Begin starts a savepoint whose jobs are its own until it is released.
func (t *jobTx) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &jobTx{Tx: sp, parent: t}, nil
}

// Commit releases a savepoint, its jobs joining its transaction's, or
// inserts the transaction's jobs and commits it.
func (t *jobTx) Commit(ctx context.Context) error {
	if t.parent == nil {
		if err := t.insertQueued(ctx); err != nil {
			return err
		}
		return t.Tx.Commit(ctx)
	}
	if err := t.Tx.Commit(ctx); err != nil {
		return err
	}
	t.parent.queued = append(t.parent.queued, t.queued...)
	t.queued = nil
	return nil
}

// Rollback drops the jobs with the writes they followed.
func (t *jobTx) Rollback(ctx context.Context) error {
	t.queued = nil
	return t.Tx.Rollback(ctx)
}

// insertQueued inserts the queued jobs in as few statements as River
// allows: each takes at most one job of a kind, so no statement meets one
// unique key twice (River's unique keys name the kind).
func (t *jobTx) insertQueued(ctx context.Context) error {
	for len(t.queued) > 0 {
		var now, later []river.InsertManyParams
		kinds := make(map[string]bool, len(t.queued))
		for _, p := range t.queued {
			if kinds[p.Args.Kind()] {
				later = append(later, p)
				continue
			}
			kinds[p.Args.Kind()] = true
			now = append(now, p)
		}
		if err := insertNow(ctx, t.Tx, now); err != nil {
			return err
		}
		t.queued = later
	}
	return nil
}

// insertNow inserts jobs inside tx with the River client of the running job.
func insertNow(ctx context.Context, tx pgx.Tx, params []river.InsertManyParams) error {
	client, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	if _, err := client.InsertManyTx(ctx, tx, params); err != nil {
		return fmt.Errorf("queueing %d jobs (%s first): %w", len(params), params[0].Args.Kind(), err)
	}
	return nil
}
