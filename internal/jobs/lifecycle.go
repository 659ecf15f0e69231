package jobs

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/stripeapi"
)

// complete commits fn's writes, the jobs they queued (jobTx: inserted
// together at the commit) and the job's completion together.
func complete[T river.JobArgs](ctx context.Context, deps Deps, job *river.Job[T], fn func(tx pgx.Tx) error) error {
	tx, err := beginJobTx(ctx, deps.Pool)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx.Tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// stripeFailure cancels a job whose Stripe object does not exist and
// retries the rest.
func stripeFailure(what string, err error) error {
	if stripeapi.IsNotFound(err) {
		return river.JobCancel(fmt.Errorf("%s does not exist in this Stripe account: %w", what, err))
	}
	return err
}
