package jobs

import (
	"context"
	"fmt"
	"slices"

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
// jobs it queued. River refuses one statement that meets the same unique
// key twice, so the jobs of one insertMany call stay in one statement (as
// they were always inserted together) and calls share a statement only
// when no kind is in two of them (insertQueued).
type jobTx struct {
	pgx.Tx
	parent *jobTx                     // the transaction a savepoint's jobs join; nil for the transaction
	queued [][]river.InsertManyParams // by insertMany call
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
	call := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		call[i] = river.InsertManyParams{Args: a}
	}
	t.queued = append(t.queued, call)
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
// allows: a statement takes whole calls and no kind from two calls, so no
// statement meets one unique key twice (River's unique keys name the
// kind, and one call's jobs were always inserted together).
func (t *jobTx) insertQueued(ctx context.Context) error {
	for len(t.queued) > 0 {
		var now []river.InsertManyParams
		var later [][]river.InsertManyParams
		kinds := make(map[string]bool)
		for _, call := range t.queued {
			if slices.ContainsFunc(call, func(p river.InsertManyParams) bool { return kinds[p.Args.Kind()] }) {
				later = append(later, call)
				continue
			}
			for _, p := range call {
				kinds[p.Args.Kind()] = true
			}
			now = append(now, call...)
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
