package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// CreateKeyArgs creates the Luarmor key of one purchased unit.
type CreateKeyArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
}

func (CreateKeyArgs) Kind() string { return "create_key" }

func (CreateKeyArgs) InsertOpts() river.InsertOpts {
	// One waiting or running job per unit. A finished unit may be queued
	// again (an operator's retry); the worker then finds it settled.
	return river.InsertOpts{Queue: QueueLuarmorDeliver, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// CreateKeyWorker works CreateKeyArgs.
type CreateKeyWorker struct {
	river.WorkerDefaults[CreateKeyArgs]
	Deps

	// afterCreate, when set by tests, runs between Luarmor's answer and the
	// commit that records it: the place where a crash would lose the key.
	afterCreate func(ctx context.Context) error
}

// Timeout covers the wait for a budget slot (bounded by the budget's
// MaxWait) and the Luarmor calls.
func (w *CreateKeyWorker) Timeout(*river.Job[CreateKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *CreateKeyWorker) Work(ctx context.Context, job *river.Job[CreateKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassDeliver)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		if order.ErrorCode(err) == order.ENOTFOUND {
			return river.JobCancel(err)
		}
		return err
	}
	if k.Status != order.KeyPending {
		return nil // delivered, failed or revoked by an earlier run
	}
	o, err := postgres.GetOrder(ctx, w.Pool, k.CheckoutSessionID)
	if err != nil {
		return err
	}
	if o.Status == order.StatusRevoked {
		return nil
	}
	log := w.Logger.With("checkout_session_id", k.CheckoutSessionID, "order_key_id", k.ID, "reference", k.Reference)

	// An earlier attempt sent a create whose outcome was never recorded:
	// the key may exist. Find it by its reference instead of minting a
	// second one.
	if k.CreateAttempts > 0 {
		user, err := w.findByReference(ctx, k)
		if err != nil {
			return w.luarmorFailure(ctx, job, k, err, log)
		}
		if user != nil {
			log.InfoContext(ctx, "found key created by an earlier attempt", "user_key", logging.Redact(user.UserKey))
			return w.deliver(ctx, job, k, user.UserKey)
		}
	}

	if k, err = postgres.BeginCreate(ctx, w.Pool, k.ID); err != nil {
		return err
	}
	req := luarmor.CreateUserRequest{Note: Note(o, k), DiscordID: o.DiscordID}
	if k.KeyDays > 0 {
		req.KeyDays = k.KeyDays
	}
	userKey, err := w.Luarmor.CreateUser(ctx, k.ProjectID, req)
	if err != nil {
		return w.luarmorFailure(ctx, job, k, err, log)
	}
	if w.afterCreate != nil {
		if err := w.afterCreate(ctx); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, "key created", "user_key", logging.Redact(userKey), "project_id", k.ProjectID, "key_days", k.KeyDays)
	return w.deliver(ctx, job, k, userKey)
}

// deliver records the key and completes the job in one transaction, so a
// finished job never calls Luarmor again.
func (w *CreateKeyWorker) deliver(ctx context.Context, job *river.Job[CreateKeyArgs], k *order.Key, userKey string) error {
	var authExpire *int64
	if k.KeyDays == 0 {
		never := luarmor.NeverExpires
		authExpire = &never
	}
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if err := postgres.DeliverKey(ctx, tx, k.ID, userKey, authExpire); err != nil {
		return err
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// findByReference looks the unit's reference up in Luarmor's notes.
func (w *CreateKeyWorker) findByReference(ctx context.Context, k *order.Key) (*luarmor.User, error) {
	users, err := w.Luarmor.ListUsers(ctx, k.ProjectID, luarmor.ListUsersOptions{Search: k.Reference})
	if err != nil {
		return nil, err
	}
	var found []luarmor.User
	for _, u := range users {
		if strings.Contains(u.Note, k.Reference) {
			found = append(found, u)
		}
	}
	if len(found) > 1 {
		w.Logger.ErrorContext(ctx, "several Luarmor keys carry one reference; delivering the first, delete the others in the dashboard",
			"reference", k.Reference, "count", len(found))
	}
	if len(found) == 0 {
		return nil, nil
	}
	return &found[0], nil
}

// luarmorFailure decides what a failed Luarmor call means for the job.
func (w *CreateKeyWorker) luarmorFailure(ctx context.Context, job *river.Job[CreateKeyArgs], k *order.Key, err error, log interface {
	WarnContext(context.Context, string, ...any)
	ErrorContext(context.Context, string, ...any)
}) error {
	var wait *budget.WaitError
	if errors.As(err, &wait) {
		// No budget slot yet: wait without using an attempt.
		return river.JobSnooze(wait.RetryAfter)
	}
	_ = postgres.NoteKeyError(ctx, w.Pool, k.ID, err.Error())
	var rl *luarmor.RateLimitError
	switch {
	case errors.As(err, &rl):
		// The budget is spent: wait a window without using an attempt.
		log.WarnContext(ctx, "luarmor rate limited; waiting a window", "wait", w.RateLimitWindow)
		return river.JobSnooze(w.RateLimitWindow)
	case luarmor.IsRetryable(err):
		log.WarnContext(ctx, "luarmor call failed; will retry", "error", err)
		return err
	case errors.Is(err, luarmor.ErrUnauthorized):
		// A configuration problem, not the order's: keep retrying with
		// backoff so the order is delivered once the operator fixes it.
		log.ErrorContext(ctx, "luarmor refused the API key", "error", err)
		return err
	default:
		reason := fmt.Sprintf("luarmor refused the key: %v", err)
		tx, txErr := w.Pool.Begin(ctx)
		if txErr != nil {
			return txErr
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if txErr := postgres.FailKey(ctx, tx, k.ID, reason); txErr != nil {
			return txErr
		}
		// The refusal is recorded on the order and the job completes in
		// the same commit: an operator's retry never races a job that
		// is still marked running.
		if _, txErr := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); txErr != nil {
			return txErr
		}
		log.ErrorContext(ctx, "key cannot be created", "error", err)
		return tx.Commit(ctx)
	}
}

// Note is the Luarmor note of a unit's key: the order an operator searches
// for in the dashboard, the buyer, and the unique reference.
func Note(o *order.Order, k *order.Key) string {
	parts := []string{o.CheckoutSessionID}
	if o.CustomerEmail != "" {
		parts = append(parts, o.CustomerEmail)
	}
	parts = append(parts, "ref:"+k.Reference)
	return strings.Join(parts, " ")
}
