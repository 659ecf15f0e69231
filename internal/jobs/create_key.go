package jobs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/budget"
	"fulfiller/internal/entitlement"
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

// Leases on a unit's create (see postgres.ClaimCreate for the invariant).
const (
	// createLease is renewed right before every request for the unit, so
	// it outlives the longest a request can take (the Luarmor client's
	// timeout) with a margin for clocks and a slow network.
	createLease = luarmor.DefaultTimeout + 10*time.Second
	// answeredLease replaces it after a create whose answer was an error
	// or a dropped connection: Luarmor is done with the request by then,
	// so the retry need only wait a moment, not the whole lease. A create
	// that timed out keeps its full lease: it may still be on its way.
	answeredLease = 2 * time.Second
)

// errUnitSettled stops a request for a unit that another runner delivered.
var errUnitSettled = errors.New("the unit was settled by another runner")

func (w *CreateKeyWorker) Work(ctx context.Context, job *river.Job[CreateKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassDeliver)
	if sold, err := w.sellFromStock(ctx, job); sold || err != nil {
		return err
	}
	owner := newLeaseOwner(job.JobRow)
	// The claim records this run's create attempt up front: a run that
	// dies after it, whether or not its create left, makes the next run
	// look the key up first. A run that sends no create takes it back.
	k, err := postgres.ClaimCreate(ctx, w.Pool, job.Args.OrderKeyID, owner, w.CreateLease, true)
	var held *postgres.LeaseHeldError
	switch {
	case errors.As(err, &held):
		// Another runner may have a create on its way (it was rescued
		// from a replica that stopped, or was cut off): wait its lease
		// out, then look the key up instead of creating a second one.
		return river.JobSnooze(max(time.Until(held.Until), 0) + 250*time.Millisecond)
	case order.ErrorCode(err) == order.ENOTFOUND:
		return river.JobCancel(err)
	case err != nil:
		return err
	}
	if k.Status != order.KeyPending {
		return nil // delivered, failed or revoked by an earlier run
	}
	unclaim := func() { _ = postgres.ReleaseCreate(context.WithoutCancel(ctx), w.Pool, k.ID, owner, true) }
	o, err := postgres.GetOrder(ctx, w.Pool, k.CheckoutSessionID)
	if err != nil {
		unclaim()
		return err
	}
	if o.Status == order.StatusRevoked && k.CreateAttempts <= 1 {
		unclaim()
		return nil // the payment was taken back: no key is made
	}
	log := w.Logger.With("order_key_id", k.ID, "reference", k.Reference)

	// Every request renews the lease just before it is sent, once its
	// budget slot is granted (however long the wait for it was).
	ctx = budget.WithBeforeSend(ctx, func(ctx context.Context) error {
		k, err := postgres.ClaimCreate(ctx, w.Pool, job.Args.OrderKeyID, owner, w.CreateLease, false)
		if err == nil && k.Status != order.KeyPending {
			err = errUnitSettled
		}
		return err
	})

	// An earlier attempt may have sent a create whose outcome was never
	// recorded: the key may exist. Find it by its reference instead of
	// minting a second one. The lease guarantees that attempt has ended.
	if k.CreateAttempts > 1 {
		user, err := w.findByReference(ctx, k)
		if err != nil {
			unclaim()
			return w.luarmorFailure(ctx, job, k, err, log)
		}
		if user != nil {
			// Recorded even when the payment was taken back meanwhile:
			// delivering queues its revocation in the same commit, so no
			// key is ever left usable and unrecorded in Luarmor.
			log.InfoContext(ctx, "found key created by an earlier attempt", "user_key", logging.MaskKey(user.UserKey))
			expiry, err := w.applyTarget(ctx, k, user.UserKey)
			if err != nil {
				return w.luarmorFailure(ctx, job, k, err, log)
			}
			linked := o.DiscordID != "" && user.DiscordID == o.DiscordID
			return w.deliver(ctx, job, k, delivery{UserKey: user.UserKey, AuthExpire: expiry, DiscordLinked: linked}, log)
		}
	}
	if o.Status == order.StatusRevoked {
		unclaim()
		return nil // no earlier attempt made a key, and none is made now
	}

	return w.create(ctx, job, o, k, owner, log)
}

// create sends the unit's create and records the key. A Discord ID Luarmor
// refuses (in use, invalid, or in words of no known class) never fails the
// paid order: discordRefused decides what the unit gets instead.
func (w *CreateKeyWorker) create(ctx context.Context, job *river.Job[CreateKeyArgs], o *order.Order, k *order.Key, owner string, log *slog.Logger) error {
	req := luarmor.CreateUserRequest{Note: Note(o, k), DiscordID: discordFor(o, k)}
	switch {
	case k.ExpireTarget != nil:
		// Bounded even before the absolute expiry is set below.
		req.KeyDays = daysUntil(*k.ExpireTarget, w.Now())
	case k.KeyDays > 0:
		req.KeyDays = k.KeyDays
	}
	userKey, err := w.Luarmor.CreateUser(ctx, k.ProjectID, req)
	if req.DiscordID != "" && isDiscordRefusal(err) {
		return w.discordRefused(ctx, job, o, k, owner, err, log)
	}
	if err != nil {
		w.settleLease(ctx, k, owner, err)
		return w.luarmorFailure(ctx, job, k, err, log)
	}
	log.InfoContext(ctx, "key created", "user_key", logging.MaskKey(userKey), "project_id", k.ProjectID, "key_days", k.KeyDays)
	if w.afterCreate != nil {
		err = w.afterCreate(ctx)
	}
	var expiry *int64
	if err == nil {
		if expiry, err = w.applyTarget(ctx, k, userKey); err != nil {
			_ = postgres.ShortenCreateLease(context.WithoutCancel(ctx), w.Pool, k.ID, owner, answeredLease)
			return w.luarmorFailure(ctx, job, k, err, log)
		}
		err = w.deliver(ctx, job, k, delivery{UserKey: userKey, AuthExpire: expiry, DiscordLinked: req.DiscordID != ""}, log)
	}
	if err != nil {
		// Luarmor answered; only recording the key failed. The retry
		// finds the key by its reference after a short wait.
		_ = postgres.ShortenCreateLease(context.WithoutCancel(ctx), w.Pool, k.ID, owner, answeredLease)
	}
	return err
}

// applyTarget gives a new key of a subscription its absolute expiry (the
// end of what was paid for plus the grace) and returns the expiry to
// record. Luarmor turns an auth_expire given at creation without a HWID or
// Discord ID into key_days, which start at first use and would outlast
// the paid period, so it is set by an update once the key exists; the
// value was committed before, so a repeat sends the same one.
func (w *CreateKeyWorker) applyTarget(ctx context.Context, k *order.Key, userKey string) (*int64, error) {
	if k.ExpireTarget == nil {
		return lifetimeExpiry(k), nil
	}
	target := *k.ExpireTarget
	if err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: userKey, AuthExpire: &target}); err != nil {
		return nil, err
	}
	return &target, nil
}

// daysUntil is the key_days that cover until target from now: at least one
// day, as key_days 0 would mean a lifetime key.
func daysUntil(target int64, now time.Time) int {
	left := target - now.Unix()
	return int(max(1, (left+86399)/86400))
}

// settleLease sets the lease after a create that failed, by what the
// failure says about the request: one abandoned by this side (a timeout, a
// shutdown) may still be on its way, so its full lease stands; one whose answer was lost or was a server
// error is over, so the retry waits only a moment; one Luarmor never
// applied (429, not sent, no budget slot) frees the unit and does not
// count as an attempt.
func (w *CreateKeyWorker) settleLease(ctx context.Context, k *order.Key, owner string, err error) {
	settleCreateLease(ctx, err,
		func(ctx context.Context) { _ = postgres.ShortenCreateLease(ctx, w.Pool, k.ID, owner, answeredLease) },
		func(ctx context.Context) { _ = postgres.ReleaseCreate(ctx, w.Pool, k.ID, owner, true) })
}

// settleCreateLease applies settleLease's rule to any create lease: shorten
// after an answered failure, release (taking the attempt back) after one
// never applied, and keep it whole while the request may be on its way.
func settleCreateLease(ctx context.Context, err error, shorten, release func(context.Context)) {
	abandoned := ctx.Err() != nil // the job was cancelled: a shutdown, its timeout
	ctx = context.WithoutCancel(ctx)
	var rl *luarmor.RateLimitError
	var wait *budget.WaitError
	var notSent *budget.NotSentError
	switch {
	case abandoned, mayBeInFlight(err):
	case errors.Is(err, luarmor.ErrOutcomeUnknown):
		shorten(ctx)
	case errors.As(err, &rl), errors.Is(err, luarmor.ErrNotSent), errors.As(err, &wait), errors.As(err, &notSent):
		release(ctx)
	}
}

// mayBeInFlight reports whether a request was abandoned by this side (a
// timeout, or a shutdown cancelling the job) rather than answered or cut
// by the other: it may still be on its way to Luarmor.
func mayBeInFlight(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &ne) && ne.Timeout())
}

// newLeaseOwner names one run of a job: a rescued or retried run is another
// owner, and must wait out the lease of the run before it.
func newLeaseOwner(job *rivertype.JobRow) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return fmt.Sprintf("job%d-%d-%x", job.ID, job.Attempt, b)
}

// discordFor returns the Discord ID to link to a unit's key. Luarmor links
// a Discord ID to one key per project, so in an order of several units it
// goes to the order's first key in each project; the other units get keys
// of their own, one per unit as paid for. A unit whose Discord ID Luarmor
// already refused (in use, invalid) is created without it. Once the buyer
// verified a Discord account for the order, the typed ID is never sent:
// the key is made without one and its writer links the verified account
// (order.VerifiedDiscord).
func discordFor(o *order.Order, k *order.Key) string {
	if o.DiscordID == "" || o.Discord != nil || k.DiscordLink == order.DiscordInUse || k.DiscordLink == order.DiscordInvalid {
		return ""
	}
	for _, other := range o.Keys {
		if other.ProjectID == k.ProjectID {
			if other.ID == k.ID {
				return o.DiscordID
			}
			return ""
		}
	}
	return ""
}

// lifetimeExpiry is the expiry recorded for a new key: never for a lifetime
// key, unknown (nil) while a key_days timer waits for first use.
func lifetimeExpiry(k *order.Key) *int64 {
	if k.KeyDays == 0 {
		never := luarmor.NeverExpires
		return &never
	}
	return nil
}

// delivery is the key a unit is delivered with.
type delivery struct {
	UserKey string
	// AuthExpire is the key's expiry to record; nil while it is unknown
	// (key_days waiting for the key's first use).
	AuthExpire *int64
	// Extended says the key is one the buyer already had, which the
	// purchase extends, rather than a key made for the unit.
	Extended bool
	// DiscordLinked says the key holds the order's Discord ID.
	DiscordLinked bool
}

// deliver records the key and completes the job in one transaction, so a
// finished job never calls Luarmor again. Follow-up work the key's order
// already calls for is queued in the same commit: a revocation that came
// first, a renewal paid before the key existed, and the order's next unit.
func (w *CreateKeyWorker) deliver(ctx context.Context, job *river.Job[CreateKeyArgs], k *order.Key, d delivery, log *slog.Logger) error {
	tx, err := beginJobTx(ctx, w.Pool)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	err = postgres.DeliverKey(ctx, tx, k.ID, d.UserKey, d.AuthExpire, d.Extended)
	if errors.Is(err, postgres.ErrDeliveredElsewhere) && !d.Extended {
		// A runner that was cut off from the database created a key the
		// lease could not stop (its request outlived every timeout).
		// The unit keeps the key it was delivered with; this one goes.
		_ = tx.Rollback(ctx)
		return w.removeStrayKey(ctx, job, k, d.UserKey, log)
	}
	if err != nil {
		return err
	}
	return w.finishDelivery(ctx, tx, job, k, d, "")
}

// finishDelivery completes, in tx, the delivery d that DeliverKey recorded:
// the key's state, its Discord link, the follow-up work, the job; then
// commits. soldFrom is the price whose stock the key was sold from ("" for
// a key made to order): that stock's refill is queued last, under its lock.
func (w *CreateKeyWorker) finishDelivery(ctx context.Context, tx pgx.Tx, job *river.Job[CreateKeyArgs], k *order.Key, d delivery, soldFrom string) error {
	if err := recordDelivered(ctx, tx, k, d); err != nil {
		return err
	}
	o, err := postgres.GetOrderRow(ctx, tx, k.CheckoutSessionID)
	if err != nil {
		return err
	}
	if err := queueUnits(ctx, tx, o); err != nil {
		return err
	}
	if err := orderDelivered(ctx, tx, w.Deps, k.CheckoutSessionID); err != nil {
		return err
	}
	counted, err := w.countDelivered(ctx, tx, k, soldFrom != "")
	if err != nil {
		return err
	}
	// Not complete(): tx was opened by the caller, which recorded the
	// delivery (and, from stock, took the key) in it; the refill's lock is
	// taken after the completion, and the metrics wait for the commit.
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	if soldFrom != "" {
		if err := stockSold(ctx, tx, w.Deps, soldFrom); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	counted()
	return nil
}

// recordDelivered records in tx what follows the delivery d of unit k that
// DeliverKey recorded: the key's state and ledger, its Discord link, and
// its writer, which applies what the ledger holds beyond the create (a
// revocation that came first, a renewal paid before the key existed).
func recordDelivered(ctx context.Context, tx pgx.Tx, k *order.Key, d delivery) error {
	if err := postgres.RecordKeyState(ctx, tx, k.ID, appliedTarget(k, d.AuthExpire), false); err != nil {
		return err
	}
	if err := recordLedgerKey(ctx, tx, k); err != nil {
		return err
	}
	if d.DiscordLinked {
		if err := postgres.LinkDiscord(ctx, tx, k.ID); err != nil {
			return err
		}
	}
	return syncUnits(ctx, tx, k.ID)
}

// orderDelivered queues what an order's deliveries call for once it is
// fulfilled, in tx: its keys email and its order.fulfilled event, each once.
func orderDelivered(ctx context.Context, tx pgx.Tx, deps Deps, sessionID string) error {
	if err := queueFirstOrderEmail(ctx, tx, deps, sessionID); err != nil {
		return err
	}
	return eventOrderFulfilled(ctx, tx, deps, sessionID)
}

// countDelivered returns what counts unit k's delivery in the metrics once
// tx commits, if tx is the transaction that delivered it.
func (d Deps) countDelivered(ctx context.Context, tx pgx.Tx, k *order.Key, fromStock bool) (func(), error) {
	delivered, sinceOrder, err := deliveredHere(ctx, tx, k.ID)
	if err != nil || !delivered {
		return func() {}, err
	}
	return func() {
		d.Metrics.KeyDelivered(sinceOrder.Seconds())
		d.countStockSale(k, fromStock)
	}, nil
}

// deliveredHere reports whether tx is the transaction that delivered unit
// id, and how long after its order was recorded. DeliverKey stamps
// delivered_at with the transaction's now(); a unit an earlier run
// delivered has an earlier stamp, so a second runner counts nothing.
func deliveredHere(ctx context.Context, tx pgx.Tx, id int64) (bool, time.Duration, error) {
	var here bool
	var sinceOrder time.Duration
	// From the first webhook about the session received, or the order's
	// record when the success page confirmed it before any webhook came.
	err := tx.QueryRow(ctx, `
		SELECT k.delivered_at = now(), now() - LEAST(o.created_at,
			(SELECT min(e.received_at) FROM stripe_events e WHERE e.object_id = o.checkout_session_id))
		FROM order_keys k JOIN orders o USING (checkout_session_id) WHERE k.id = $1`, id).Scan(&here, &sinceOrder)
	if err != nil {
		return false, 0, fmt.Errorf("reading delivery time of order key %d: %w", id, err)
	}
	return here, sinceOrder, nil
}

// removeStrayKey deletes a second key made for a unit that already has one.
func (w *CreateKeyWorker) removeStrayKey(ctx context.Context, job *river.Job[CreateKeyArgs], k *order.Key, userKey string, log *slog.Logger) error {
	err := w.Luarmor.DeleteUser(budget.WithClass(ctx, budget.ClassRevoke), k.ProjectID, userKey)
	if err != nil && !errors.Is(err, luarmor.ErrNotFound) {
		if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
			return jobErr
		}
		log.ErrorContext(ctx, "a second key was made for a delivered unit and could not be deleted; delete it in the Luarmor dashboard (search the reference)",
			"user_key", logging.MaskKey(userKey), "error", err)
		return river.JobCancel(err)
	}
	log.WarnContext(ctx, "a second key was made for a delivered unit; deleted it", "user_key", logging.MaskKey(userKey))
	return nil
}

// recordLedgerKey records the key a unit was just delivered with in the
// ledger, with what the create left in Luarmor: key_days waiting for first
// use, never expiring, or a subscription's absolute expiry. A key the unit
// extended is already there and keeps its row.
func recordLedgerKey(ctx context.Context, tx pgx.Tx, k *order.Key) error {
	current, err := postgres.GetKey(ctx, tx, k.ID)
	if err != nil {
		return err
	}
	var applied entitlement.Applied
	switch {
	case current.ExtendedExisting:
	case current.ExpireTarget != nil:
		// The create set an absolute expiry on a key nobody has claimed:
		// whether Luarmor kept it as such or as key_days, its writer reads
		// back (left unknown here, so the writer runs).
	case current.KeyDays == 0:
		applied.Lifetime = true
	default:
		applied.WaitingDays = current.KeyDays
	}
	started, err := postgres.ReissuedStart(ctx, tx, current.ID)
	if err != nil {
		return err
	}
	_, err = postgres.EnsureLedgerKey(ctx, tx, current.ProjectID, current.UserKey, started, applied)
	return err
}

// findByReference looks the unit's reference up in Luarmor's notes.
func (w *CreateKeyWorker) findByReference(ctx context.Context, k *order.Key) (*luarmor.User, error) {
	return findByReference(ctx, w.Deps, k.ProjectID, k.Reference)
}

// lookupTries bounds the quick repeats of a failed look-up by reference
// within one run of a job. A read is safe to repeat, and after a create
// whose outcome is unknown the look-up is what stands between the buyer and
// the key: a server error or a dropped answer on it should cost a moment,
// not a step of the job's backoff. Each try takes its own budget slot; a
// 429 is left to the job's snooze.
const lookupTries = 3

// findByReference looks a reference up in the notes of a project's keys.
func findByReference(ctx context.Context, d Deps, projectID, reference string) (*luarmor.User, error) {
	var users []luarmor.User
	var err error
	for try := 1; try <= lookupTries; try++ {
		users, err = d.Luarmor.ListUsers(ctx, projectID, luarmor.ListUsersOptions{Search: reference})
		var rl *luarmor.RateLimitError
		if err == nil || !luarmor.IsRetryable(err) || errors.As(err, &rl) || try == lookupTries {
			break
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(try) * 250 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	var found []luarmor.User
	for _, u := range users {
		if strings.Contains(u.Note, reference) {
			found = append(found, u)
		}
	}
	if len(found) > 1 {
		d.Logger.ErrorContext(ctx, "several Luarmor keys carry one reference; keeping the first, delete the others in the dashboard",
			"reference", reference, "count", len(found))
	}
	if len(found) == 0 {
		return nil, nil
	}
	return &found[0], nil
}

// luarmorFailure decides what a failed Luarmor call means for the job.
func (w *CreateKeyWorker) luarmorFailure(ctx context.Context, job *river.Job[CreateKeyArgs], k *order.Key, err error, log *slog.Logger) error {
	var wait *budget.WaitError
	var notSent *budget.NotSentError
	var held *postgres.LeaseHeldError
	switch {
	case errors.Is(err, errUnitSettled):
		return nil
	case errors.As(err, &held):
		return river.JobSnooze(max(time.Until(held.Until), 0) + 250*time.Millisecond)
	case errors.As(err, &wait), errors.As(err, &notSent):
	default:
		_ = postgres.NoteKeyError(ctx, w.Pool, k.ID, err.Error())
	}
	if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
		if errors.Is(err, luarmor.ErrUnauthorized) {
			// A configuration problem, not the order's: retried with
			// backoff so the order is delivered once it is fixed.
			log.ErrorContext(ctx, "luarmor refused the API key; keys wait until it is fixed", "error", err)
		}
		return jobErr
	}
	if notSent != nil {
		return err // the database failed before the request: retry
	}
	reason := fmt.Sprintf("luarmor refused the key of project %s: %v", k.ProjectID, err)
	// The refusal is recorded on the order and the job completes in the
	// same commit: an operator's retry never races a job that is still
	// marked running.
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		// A unit refused for its project is planned again from the catalog by
		// the operator's retry, once the project is fixed; any other keeps the
		// terms it was sold with.
		if txErr := postgres.FailKey(ctx, tx, k.ID, reason, errors.Is(err, luarmor.ErrProjectRefused)); txErr != nil {
			return txErr
		}
		if txErr := eventOrderFailed(ctx, tx, w.Deps, k.CheckoutSessionID); txErr != nil {
			return txErr
		}
		log.ErrorContext(ctx, "key cannot be created", "project_id", k.ProjectID, "error", err)
		return nil
	})
}
