package jobs

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// revokeExtension revokes a unit that only added days to a key the
// customer already had (extended_existing): the key was paid for by an
// earlier payment, so it is not banned or deleted; the days this payment
// added are taken back. The expiry to set is computed once and stored
// before Luarmor is told, so a retry sends the same absolute value and
// never takes the days back twice.
func (w *RevokeKeyWorker) revokeExtension(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key) error {
	var target int64
	if k.RevertTarget != nil {
		target = *k.RevertTarget
	} else {
		u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
		if errors.Is(err, luarmor.ErrNotFound) {
			return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
				return postgres.SetKeyStatus(ctx, tx, k.ID, order.KeyDeleted)
			})
		}
		if err != nil {
			jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
			return jobErr
		}
		renewed, err := postgres.RenewedExpiry(ctx, w.Pool, k.ProjectID, k.UserKey, k.ID)
		if err != nil {
			return err
		}
		target = revertedExpiry(*u, *k, renewed, w.Now().Unix())
		if target, err = postgres.SetRevertTarget(ctx, w.Pool, k.ID, target); err != nil {
			return err
		}
		if target == u.AuthExpire {
			return w.recordRevert(ctx, job, k, target)
		}
	}
	err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, AuthExpire: &target})
	if errors.Is(err, luarmor.ErrNotFound) {
		return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
			return postgres.SetKeyStatus(ctx, tx, k.ID, order.KeyDeleted)
		})
	}
	if err != nil {
		jobErr, retry := luarmorRetry(err, w.RateLimitWindow)
		if !retry {
			w.Logger.ErrorContext(ctx, "luarmor refused to take back the days a revoked payment added; set the key's expiry in the dashboard",
				"order_key_id", k.ID, "auth_expire", target, "error", err)
		}
		return jobErr
	}
	return w.recordRevert(ctx, job, k, target)
}

func (w *RevokeKeyWorker) recordRevert(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key, target int64) error {
	w.Logger.InfoContext(ctx, "took back the days a revoked payment added to an earlier key; the key stays usable",
		"order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey), "auth_expire", target)
	err := complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if _, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID); err != nil {
			return err
		}
		return postgres.RevertExtension(ctx, tx, k.ID, target)
	})
	if err == nil {
		// Counted once: the job completed in that commit.
		w.Metrics.KeyRevoked(metrics.RevokedExtension)
	}
	return err
}

// revertedExpiry is the expiry of a key once a revoked purchase's days are
// taken back from it, given the key as Luarmor has it now (current):
//
//   - the purchase's days come off the current expiry, so days added since
//     (another purchase, a renewal) stay;
//   - a lifetime purchase that made the key lifetime sets it back to its
//     expiry without the purchase;
//   - never below the key's own paid time: its expiry without the purchase
//     (extend_from; a key that had lapsed goes back to the moment it was
//     extended, so it is lapsed again, not given time nobody paid for) and
//     what renewals of other payments set (renewed). A unit extended before
//     extend_from was recorded is taken back to now at the lowest;
//   - never longer than it is: a key since shortened, made lifetime by
//     something else, or waiting for first use is left as it is.
func revertedExpiry(current luarmor.User, k order.Key, renewed, now int64) int64 {
	lifetime := current.AuthExpire == luarmor.NeverExpires && current.KeyDays == 0
	if k.KeyDays == 0 {
		if !lifetime || k.ExtendFrom == nil || *k.ExtendFrom == luarmor.NeverExpires {
			return current.AuthExpire // changed since, or unknown, or lifetime before the purchase
		}
		return max(*k.ExtendFrom, renewed)
	}
	if current.AuthExpire == luarmor.NeverExpires {
		return current.AuthExpire
	}
	floor := now
	if k.ExtendFrom != nil {
		floor = *k.ExtendFrom
	}
	floor = max(floor, renewed)
	return min(max(current.AuthExpire-int64(k.KeyDays)*86400, floor), current.AuthExpire)
}
