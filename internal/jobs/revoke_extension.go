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

// takeBackDays revokes a unit whose key other payments still hold: a unit
// that only added days to the customer's earlier key (extended_existing),
// or the unit that made a key later purchases extended. The key is not
// banned or deleted; the days this payment bought are taken back. It
// reports kept = false, having done nothing, when no other unit holding
// the key stands any more (every other one revoked or reverted): the
// caller then bans or deletes the key as the revocation says. A revocation
// lifted before the decision is stored does nothing (kept = true).
//
// A lifetime or subscription unit that made the key is never taken back
// this way (kept = false): its days are not a number that can come off.
//
// The decision is taken under the order's lock and stored with the expiry
// to set, computed once, before Luarmor is told: a retry sends the same
// absolute value and never takes the days back twice. Two units of one key
// revoked at once cannot both keep it: each is checked after its own order
// was revoked, so the later check sees the earlier unit's order revoked.
func (w *RevokeKeyWorker) takeBackDays(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key) (kept bool, err error) {
	if k.RevertTarget != nil {
		return true, w.sendRevert(ctx, job, k, *k.RevertTarget)
	}
	if !k.ExtendedExisting && (k.KeyDays == 0 || k.Recurring) {
		return false, nil
	}
	if held, err := postgres.KeyHeldByOthers(ctx, w.Pool, k.ProjectID, k.UserKey, k.ID); err != nil || !held {
		return false, err
	}
	u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
	if errors.Is(err, luarmor.ErrNotFound) {
		return true, w.recordDeleted(ctx, job, k)
	}
	if err != nil {
		jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
		return true, jobErr
	}
	renewed, err := postgres.RenewedExpiry(ctx, w.Pool, k.ProjectID, k.UserKey, k.ID)
	if err != nil {
		return true, err
	}
	target := revertedExpiry(*u, *k, renewed, w.Now().Unix())
	lifted := false
	err = pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID)
		if err != nil {
			return err
		}
		if o.Status != order.StatusRevoked {
			// Lifted since the job began: the lift already dropped any
			// target, and none is stored for it now.
			lifted = true
			return nil
		}
		if kept, err = postgres.KeyHeldByOthers(ctx, tx, k.ProjectID, k.UserKey, k.ID); err != nil || !kept {
			return err
		}
		target, err = postgres.SetRevertTarget(ctx, tx, k.ID, target)
		return err
	})
	if lifted {
		return true, nil
	}
	if err != nil || !kept {
		return kept, err
	}
	if target == u.AuthExpire {
		return true, w.recordRevert(ctx, job, k, target)
	}
	return true, w.sendRevert(ctx, job, k, target)
}

// sendRevert sets the stored expiry on the key and records the unit
// reverted.
func (w *RevokeKeyWorker) sendRevert(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key, target int64) error {
	err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, AuthExpire: &target})
	if errors.Is(err, luarmor.ErrNotFound) {
		return w.recordDeleted(ctx, job, k)
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

// recordDeleted records a unit whose key Luarmor no longer has: nothing is
// left to take back.
func (w *RevokeKeyWorker) recordDeleted(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return postgres.SetKeyStatus(ctx, tx, k.ID, order.KeyDeleted)
	})
}

func (w *RevokeKeyWorker) recordRevert(ctx context.Context, job *river.Job[RevokeKeyArgs], k *order.Key, target int64) error {
	w.Logger.InfoContext(ctx, "took back a revoked payment's days; the key stays usable for the payments that still hold it",
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
// taken back from it, given the key as Luarmor has it now (current). The
// unit that made the key has no extend_from: its floor is now.
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
