package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// ErrKeyNotInOrder answers a reset for an unknown order and for a key that is
// not the order's alike, so the endpoint tells nothing about other orders.
var ErrKeyNotInOrder = order.Errorf(order.ENOTFOUND, "no such key in this order")

// RequestHWIDReset accepts a buyer's request to reset the HWID of userKey,
// a delivered key of the order sessionID, opened with access: it reserves the key's cooldown
// and queues the reset_hwid job in one transaction, and returns the
// accepted reset (its NextResetAt is the end of the new cooldown).
// Refusals: ENOTFOUND for an unknown order, an access that does not grant
// it (a revoked session ID, a link of an earlier generation) or a key not of that order,
// ECONFLICT for a key that is not active (or an order failed or revoked),
// *order.CooldownError (ECOOLDOWN) within the key's cooldown.
func (s *Orders) RequestHWIDReset(ctx context.Context, access order.Access, sessionID, userKey string) (order.HWIDReset, error) {
	cooldown := s.HWIDResetCooldown
	if cooldown <= 0 {
		cooldown = order.DefaultHWIDResetCooldown
	}
	now := time.Now()
	var reset order.HWIDReset
	var keyID int64
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// The order's lock orders this request after a revocation
		// committing at the same moment, never before it.
		o, err := postgres.LockOrder(ctx, tx, sessionID)
		if order.ErrorCode(err) == order.ENOTFOUND {
			return ErrKeyNotInOrder
		}
		if err != nil {
			return err
		}
		// Checked under the lock: a request on a link that support's
		// rotation revoked a moment ago is refused, as for any other order.
		if !access.Grants(o) {
			return ErrKeyNotInOrder
		}
		k, err := postgres.KeyOfOrder(ctx, tx, sessionID, userKey)
		if order.ErrorCode(err) == order.ENOTFOUND {
			return ErrKeyNotInOrder
		}
		if err != nil {
			return err
		}
		if why := order.HWIDResetRefusal(o.Status, *k, now); why != "" {
			return order.Errorf(order.ECONFLICT, "%s", why)
		}
		if holder, held, err := postgres.LockKeyResets(ctx, tx, k, now); err != nil {
			return err
		} else if held {
			return &order.CooldownError{Reset: holder}
		}
		r, accepted, err := postgres.ReserveHWIDReset(ctx, tx, k.ID, now, cooldown)
		if err != nil {
			return err
		}
		if !accepted {
			return &order.CooldownError{Reset: r}
		}
		if _, err := s.River.InsertTx(ctx, tx, ResetHWIDArgs{OrderKeyID: k.ID, Request: r.Request}, nil); err != nil {
			return fmt.Errorf("queueing the HWID reset of order key %d: %w", k.ID, err)
		}
		reset, keyID = r, k.ID
		return nil
	})
	if err != nil {
		return order.HWIDReset{}, err
	}
	s.Logger.InfoContext(ctx, "HWID reset queued", "order_ref", logging.OrderRef(sessionID), "order_key_id", keyID,
		"user_key", logging.MaskKey(userKey), "request", reset.Request)
	return reset, nil
}

// ResetHWIDArgs clears the HWID of one key, for one accepted request.
type ResetHWIDArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
	// Request is the key's request number (hwid_resets.request): a newer
	// request replaces this one, and its own job does the reset.
	Request int `json:"request"`
	// Support marks a reset forced by support, which is done whether or
	// not the key was ever bound; a buyer's reset of a never-bound key is
	// refused without spending the cooldown.
	Support bool `json:"support,omitempty"`
}

func (ResetHWIDArgs) Kind() string { return "reset_hwid" }

// InsertOpts: a reset runs in the renewal class of the Luarmor budget
// (and its queue). A buyer is waiting for it, so it goes before
// maintenance (expiry look-ups, credential checks, note updates), which
// can wait minutes; but it must never delay a paid key's delivery nor a
// revocation, which rank above it. Renewals share the class: both are a
// customer's running access, and both are rare next to deliveries.
func (ResetHWIDArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRenew}
}

// ResetHWIDWorker works ResetHWIDArgs.
//
// It sends Luarmor's reset with force: the cooldown the shop promises is
// HWID_RESET_COOLDOWN, enforced by the service when the request is
// accepted, and a project cooldown set in the Luarmor dashboard would
// otherwise refuse what the service accepted, and refuse the retry of a
// reset whose answer was lost, turning a harmless repeat into a failure.
// force skips only the cooldown: a project with resets disabled, or a
// banned key, is still refused by Luarmor.
//
// A reset can run twice (a retry after a lost answer, a rescued job): a
// second reset of an HWID already cleared changes nothing, and the reset
// is recorded done, and counted, once, in the commit that completes the
// job. Refusals that will not change by themselves (resets disabled, the
// key banned or gone) mark the reset failed with the reason, give the
// cooldown back so the buyer can ask again once the cause is fixed, and
// cancel the job.
type ResetHWIDWorker struct {
	river.WorkerDefaults[ResetHWIDArgs]
	Deps
}

// Timeout covers the wait for a budget slot behind more urgent classes.
func (w *ResetHWIDWorker) Timeout(*river.Job[ResetHWIDArgs]) time.Duration { return 5 * time.Minute }

func (w *ResetHWIDWorker) Work(ctx context.Context, job *river.Job[ResetHWIDArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRenew)
	r, err := postgres.HWIDResetOf(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	if r.Request != job.Args.Request || r.Status != order.HWIDResetQueued {
		return nil // recorded already, or replaced by a newer request whose job does it
	}
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return err
	}
	o, err := postgres.GetOrder(ctx, w.Pool, k.CheckoutSessionID)
	if err != nil {
		return err
	}
	// The key may have been revoked or suspended since the request.
	if why := order.HWIDResetRefusal(o.Status, *k, w.Now()); why != "" {
		return w.fail(ctx, job, why, errors.New(why))
	}
	// A key never run on a machine (no HWID, and none reset before, so
	// not one this job cleared in a run whose answer was lost) has nothing
	// to clear: the buyer's reset is refused and the buyer keeps the
	// cooldown for when the key is bound.
	if !job.Args.Support {
		if refused, err := w.refuseNeverBound(ctx, job, k); refused || err != nil {
			return err
		}
	}
	err = w.Luarmor.ResetHWID(ctx, k.ProjectID, luarmor.ResetHWIDRequest{UserKey: k.UserKey, Force: true})
	if err != nil {
		jobErr, retry := luarmorRetry(err, w.RateLimitWindow)
		if retry {
			return jobErr
		}
		return w.fail(ctx, job, refusalForBuyer(err), err)
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		// Unbound now, and bound unseen by the next computer that runs
		// the script: unknown until the key is read again.
		if err := postgres.ForgetHWIDBinding(ctx, tx, k.ProjectID, k.UserKey); err != nil {
			return err
		}
		recorded, err := postgres.FinishHWIDReset(ctx, tx, k.ID, job.Args.Request, w.Now())
		if recorded {
			w.Logger.InfoContext(ctx, "HWID reset", "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey),
				"request", job.Args.Request)
		}
		return err
	})
}

// refuseNeverBound reads the key in Luarmor and, when it was never bound
// to a machine, records the reset refused with its whole cooldown given
// back and cancels the job. refused is whether it did; err is the job's
// answer then, or a failure to read the key.
func (w *ResetHWIDWorker) refuseNeverBound(ctx context.Context, job *river.Job[ResetHWIDArgs], k *order.Key) (refused bool, err error) {
	u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
	if err != nil {
		jobErr, retry := luarmorRetry(err, w.RateLimitWindow)
		if retry {
			return true, jobErr
		}
		return true, w.fail(ctx, job, refusalForBuyer(err), err)
	}
	if err := recordBinding(ctx, w.Pool, k.ProjectID, k.UserKey, u); err != nil {
		return true, err
	}
	if u.Identifier != "" || u.TotalResets > 0 {
		return false, nil
	}
	if err := postgres.RefuseHWIDReset(ctx, w.Pool, k.ID, job.Args.Request, HWIDNotSetMessage, w.Now()); err != nil {
		return true, err
	}
	return true, river.JobCancel(fmt.Errorf("HWID reset of order key %d refused: the key was never bound to a machine in Luarmor", k.ID))
}

// fail records the reset failed with the buyer's message, giving most of
// its cooldown back, and cancels the job. A run cut off between the two finds
// the reset failed and ends.
func (w *ResetHWIDWorker) fail(ctx context.Context, job *river.Job[ResetHWIDArgs], message string, cause error) error {
	if err := postgres.FailHWIDReset(ctx, w.Pool, job.Args.OrderKeyID, job.Args.Request, message, w.Now()); err != nil {
		return err
	}
	return river.JobCancel(fmt.Errorf("HWID reset of order key %d refused for good, recorded failed: %w", job.Args.OrderKeyID, cause))
}

// HWIDNotSetMessage is the buyer's reason for a reset refused because the
// key was never bound to a machine.
const HWIDNotSetMessage = "this key is not bound to a computer yet, so there was nothing to reset (your cooldown was not used); it binds to the first computer that runs the script"

// refusalForBuyer words a Luarmor refusal of a reset for the buyer.
func refusalForBuyer(err error) string {
	var le *luarmor.Error
	switch {
	case errors.Is(err, luarmor.ErrResetDisabled):
		return "HWID resets are disabled for this product; contact the seller"
	case errors.Is(err, luarmor.ErrCooldown):
		return "Luarmor refused the reset: this key's HWID was reset too recently there; try again later"
	case errors.Is(err, luarmor.ErrNotFound):
		return "this key no longer exists in Luarmor; contact the seller"
	case errors.As(err, &le) && strings.Contains(strings.ToLower(le.Message), "banned"):
		return "this key is banned and cannot be reset"
	}
	return "Luarmor refused the reset; contact the seller"
}

// recordBinding records whether the key u was bound to a machine (its
// identifier, the HWID, set) as Luarmor just answered it: read for the
// service's own work, never for a page view.
func recordBinding(ctx context.Context, db postgres.DB, projectID, userKey string, u *luarmor.User) error {
	return postgres.RecordHWIDBinding(ctx, db, projectID, userKey, u.Identifier != "")
}
