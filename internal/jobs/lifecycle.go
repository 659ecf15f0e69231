package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// complete commits fn's writes and the job's completion together.
func complete[T river.JobArgs](ctx context.Context, deps Deps, job *river.Job[T], fn func(tx pgx.Tx) error) error {
	tx, err := deps.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// errDeliveredMeanwhile: the unit was delivered while its job was deciding
// there was nothing to do yet.
var errDeliveredMeanwhile = errors.New("the key was delivered meanwhile")

// completeBeforeDelivery ends a job about a unit whose key is not made yet
// (a renewal, a subscription's new expiry): the delivery applies what the
// unit's row says and queues the job again. River drops that insert while
// this job is still running (the same arguments, in flight), so the work
// would be lost if the delivery committed between this job's read and its
// completion. Both take the order's lock: the job completes under it only
// while the unit is still undelivered, so the delivery, which waits for the
// lock, then sees the job completed and queues anew; a unit delivered
// meanwhile makes the job run again at once instead.
func completeBeforeDelivery[T river.JobArgs](ctx context.Context, deps Deps, job *river.Job[T], k *order.Key) error {
	err := complete(ctx, deps, job, func(tx pgx.Tx) error {
		if _, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID); err != nil {
			return err
		}
		current, err := postgres.GetKey(ctx, tx, k.ID)
		if err != nil {
			return err
		}
		if current.Delivered() {
			return errDeliveredMeanwhile
		}
		return nil
	})
	if errors.Is(err, errDeliveredMeanwhile) {
		return river.JobSnooze(time.Millisecond)
	}
	return err
}

// stripeFailure cancels a job whose Stripe object does not exist and
// retries the rest.
func stripeFailure(what string, err error) error {
	if stripeapi.IsNotFound(err) {
		return river.JobCancel(fmt.Errorf("%s does not exist in this Stripe account: %w", what, err))
	}
	return err
}
