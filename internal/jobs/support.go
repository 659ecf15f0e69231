package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Actors of support operations, named in their logs and the audit log.
// The admin API names its own ("admin-token", "admin:<user>").
const (
	ActorCLI = "cli"
	// ActorStock replaces a key sold from stock that Luarmor no longer
	// had, or that was used or banned before its sale (StockKeyCheckArgs).
	ActorStock = "stock"
)

// Bounds of support input.
const (
	MaxSupportReasonLength = 200
	MaxUserKeyLength       = 128
	// MaxFoundOrders is how many orders (the newest) a search answers.
	MaxFoundOrders = 100
)

var (
	orderRefPattern  = regexp.MustCompile(`^ord_[0-9a-f]{12}$`)
	sessionIDPattern = regexp.MustCompile(`^cs_(test|live)_[A-Za-z0-9]{8,250}$`)
	// DiscordIDPattern accepts Discord snowflakes: 17 to 20 digits.
	DiscordIDPattern = regexp.MustCompile(`^[1-9][0-9]{16,19}$`)
)

// Support is the one home of support operations: `fulfiller orders` and
// `fulfiller keys` and the /v1/admin endpoints call it, so each operation
// has one implementation. Nothing here calls Luarmor: every change is a
// job inserted in the transaction that checks and records it, worked by
// the service's workers within the fleet's Luarmor budget. A blacklist,
// unban or revocation is a fact of the key's ledger recorded in that
// transaction (order_keys.support_ban and its reason): the key's writer
// (sync_key) applies it with what payments call for, so a later renewal
// or sync keeps support's ban, and support's unban lifts support's ban
// only, never a ban a payment's revocation holds.
type Support struct {
	Pool   *pgxpool.Pool
	River  *river.Client[pgx.Tx]
	Orders *Orders
	Logger *slog.Logger
	// HWIDResetCooldown restarts with a forced reset, as with a buyer's
	// (HWID_RESET_COOLDOWN); 0 means order.DefaultHWIDResetCooldown.
	HWIDResetCooldown time.Duration
	// Mail queues the keys email that brings a buyer the fresh link after
	// a rotation; nil means mail is off, and none is sent.
	Mail *mail.Sender
	// Policy is the shop's key lifecycle policy: a revocation deletes the
	// key when REFUND_ACTION is delete. Zero means the default.
	Policy order.Policy
}

// OrderDetails is everything support needs about one order.
type OrderDetails struct {
	Order       *order.Order
	Ref         string
	Events      []postgres.EventSummary
	Emails      []postgres.EmailSummary
	Revocations []order.Revocation
	Reissues    []postgres.Reissue
}

// SessionOf resolves a Checkout Session ID or an order reference (ord_...,
// as logs name orders) to the Checkout Session ID.
func (s *Support) SessionOf(ctx context.Context, idOrRef string) (string, error) {
	switch {
	case orderRefPattern.MatchString(idOrRef):
		return postgres.SessionOfRef(ctx, s.Pool, idOrRef)
	case sessionIDPattern.MatchString(idOrRef):
		return idOrRef, nil
	}
	return "", order.Errorf(order.EINVALID, "give a Checkout Session ID (cs_test_... or cs_live_...) or an order reference (ord_ and 12 hex digits)")
}

// Order returns an order with its keys, events, emails, revocations and
// reissues.
func (s *Support) Order(ctx context.Context, idOrRef string) (*OrderDetails, error) {
	id, err := s.SessionOf(ctx, idOrRef)
	if err != nil {
		return nil, err
	}
	o, err := postgres.GetOrder(ctx, s.Pool, id)
	if err != nil {
		return nil, err
	}
	d := &OrderDetails{Order: o, Ref: logging.OrderRef(id)}
	if d.Events, err = postgres.EventsOfOrder(ctx, s.Pool, o); err != nil {
		return nil, err
	}
	if d.Emails, err = postgres.EmailsOfOrder(ctx, s.Pool, id); err != nil {
		return nil, err
	}
	if d.Revocations, err = postgres.RevocationsOfOrder(ctx, s.Pool, o); err != nil {
		return nil, err
	}
	if d.Reissues, err = postgres.ReissuesOfOrder(ctx, s.Pool, id); err != nil {
		return nil, err
	}
	return d, nil
}

// OrderQuery names orders by one of their buyer's address, Discord ID or a
// key.
type OrderQuery struct {
	Email, DiscordID, UserKey string
}

// FindOrders returns the newest orders (at most MaxFoundOrders) matching
// exactly one criterion of q.
func (s *Support) FindOrders(ctx context.Context, q OrderQuery) ([]*order.Order, error) {
	given := 0
	for _, v := range []string{q.Email, q.DiscordID, q.UserKey} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return nil, order.Errorf(order.EINVALID, "give exactly one of an email address, a Discord ID or a key")
	}
	switch {
	case q.Email != "":
		email, err := NormalizeEmail(q.Email)
		if err != nil {
			return nil, err
		}
		return postgres.OrdersOfEmail(ctx, s.Pool, email, MaxFoundOrders)
	case q.DiscordID != "":
		if !DiscordIDPattern.MatchString(q.DiscordID) {
			return nil, errDiscordID
		}
		return postgres.OrdersOfDiscordID(ctx, s.Pool, q.DiscordID, MaxFoundOrders)
	}
	if err := checkUserKey(q.UserKey); err != nil {
		return nil, err
	}
	return postgres.OrdersOfKey(ctx, s.Pool, q.UserKey, MaxFoundOrders)
}

var errDiscordID = order.Errorf(order.EINVALID, "a Discord ID is a snowflake: 17 to 20 digits")

func checkUserKey(k string) error {
	if k == "" || len(k) > MaxUserKeyLength || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return order.Errorf(order.EINVALID, "a key is 1 to %d printable characters without spaces", MaxUserKeyLength)
	}
	return nil
}

// Retry fulfils a failed order again (Orders.Retry), named by ID or
// reference; reason, if given, goes to the audit log.
func (s *Support) Retry(ctx context.Context, actor, idOrRef, reason string) (*order.Order, error) {
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	id, err := s.SessionOf(ctx, idOrRef)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := s.Orders.retryTx(ctx, tx, id); err != nil {
			return err
		}
		return auditOrder(ctx, tx, actor, "retry", o, "", reason, nil)
	})
	if err != nil {
		return nil, err
	}
	s.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", "retry", "order_ref", logging.OrderRef(id))
	return postgres.GetOrder(ctx, s.Pool, id)
}

// KeyRequest is one support action on a key.
type KeyRequest struct {
	Action    KeyAction
	UserKey   string
	Reason    string // blacklist, revoke, reissue: the ban reason shown to the user
	DiscordID string // set-discord
	// RotateLink, with reissue: rotate the order's access in the same
	// transaction (RotateOrderAccess), and email the buyer the fresh link,
	// with the new key, once the reissue is finished.
	RotateLink bool
}

// Queued is an accepted support action: the job that carries it out.
type Queued struct {
	Action            KeyAction
	JobID             int64
	OrderKeyID        int64
	CheckoutSessionID string
	OrderRef          string
	ReissueID         int64 // reissue only
	// Rotation is the rotation of the order's access asked with a reissue.
	Rotation *RotatedAccess
}

func (r KeyRequest) check() error {
	known := false
	for _, a := range KeyActions {
		known = known || a == r.Action
	}
	if !known {
		return order.Errorf(order.EINVALID, "unknown key action %q", r.Action)
	}
	if err := checkUserKey(r.UserKey); err != nil {
		return err
	}
	if err := checkReason(r.Reason); err != nil {
		return err
	}
	if r.RotateLink && r.Action != ActionReissueKey {
		return order.Errorf(order.EINVALID, "rotating the order's link goes with reissue only; rotate it alone with rotate-link")
	}
	if (r.Action == ActionSetDiscord) != (r.DiscordID != "") {
		return order.Errorf(order.EINVALID, "a Discord ID goes with set-discord, and only with it")
	}
	if r.Action == ActionSetDiscord && !DiscordIDPattern.MatchString(r.DiscordID) {
		return errDiscordID
	}
	return nil
}

// KeyAction checks a support action against the key's recorded state and
// queues the job that carries it out, in one transaction holding the
// order's lock. ENOTFOUND: no order holds the key; ECONFLICT: the key's
// state refuses the action (the message says why). Asking again while the
// job waits or runs returns the same job; asking after it finished queues
// one that finds nothing left to do, except a reset-hwid, which resets
// again.
func (s *Support) KeyAction(ctx context.Context, actor string, r KeyRequest) (*Queued, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var q *Queued
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		k, err := postgres.OwnKeyOf(ctx, tx, r.UserKey)
		if err != nil {
			return err
		}
		o, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID)
		if err != nil {
			return err
		}
		if k, err = postgres.GetKey(ctx, tx, k.ID); err != nil { // as of the lock
			return err
		}
		q = &Queued{Action: r.Action, OrderKeyID: k.ID, CheckoutSessionID: o.CheckoutSessionID, OrderRef: logging.OrderRef(o.CheckoutSessionID)}
		args := SupportKeyArgs{Action: r.Action, OrderKeyID: k.ID, Reason: r.Reason, DiscordID: r.DiscordID, Actor: actor}
		var insert river.JobArgs = args
		switch r.Action {
		case ActionUnbanKey:
			if o.Status == order.StatusRevoked {
				return errUnbanRevoked
			}
			if k.Status == order.KeyDeleted {
				// It keeps the record of the revocation that deleted
				// it: nothing is left to unban.
				args.FactRecorded = true
				insert = args
				break
			}
			insert, err = s.recordSupportBan(ctx, tx, k, args, postgres.SupportBan{})
		case ActionBlacklistKey, ActionSetDiscord:
			if k.Status == order.KeyDeleted {
				return order.Errorf(order.ECONFLICT, "the key is deleted")
			}
			if r.Action == ActionBlacklistKey {
				insert, err = s.recordSupportBan(ctx, tx, k, args, supportBanOf(r.Action, r.Reason, s.Policy))
			}
		case ActionRevokeKey:
			insert, err = s.recordSupportBan(ctx, tx, k, args, supportBanOf(r.Action, r.Reason, s.Policy))
		case ActionResetHWID:
			insert, err = s.forceHWIDReset(ctx, tx, o, k)
		case ActionReissueKey:
			args.ReissueID, err = s.reissue(ctx, tx, actor, o, k, r.Reason)
			insert, q.ReissueID = args, args.ReissueID
			if err == nil && r.RotateLink {
				q.Rotation, err = s.rotateWithReissue(ctx, tx, o, args.ReissueID)
			}
		}
		if err != nil {
			return err
		}
		res, err := s.River.InsertTx(ctx, tx, insert, nil)
		if err != nil {
			return fmt.Errorf("queueing the %s of order key %d: %w", r.Action, k.ID, err)
		}
		q.JobID = res.Job.ID
		detail := map[string]any{"job_id": q.JobID, "order_key_id": k.ID}
		if r.DiscordID != "" {
			detail["discord_id"] = r.DiscordID
		}
		if q.ReissueID != 0 {
			detail["reissue_id"] = q.ReissueID
		}
		if r.RotateLink {
			detail["rotate_link"] = true
		}
		return auditOrder(ctx, tx, actor, string(r.Action), o, r.UserKey, r.Reason, detail)
	})
	if err != nil {
		return nil, err
	}
	attrs := []any{"actor", actor, "action", r.Action, "order_ref", q.OrderRef, "order_key_id", q.OrderKeyID,
		"user_key", logging.MaskKey(r.UserKey), "job_id", q.JobID}
	if r.Reason != "" {
		attrs = append(attrs, "reason", r.Reason)
	}
	if r.DiscordID != "" {
		attrs = append(attrs, "discord_id", r.DiscordID)
	}
	s.Logger.InfoContext(ctx, "support action queued", attrs...)
	if q.Rotation != nil {
		s.logRotation(ctx, actor, r.Reason, q.Rotation)
	}
	return q, nil
}

// checkReason bounds a support reason: it is logged and shown to users.
func checkReason(reason string) error {
	if len(reason) > MaxSupportReasonLength || strings.ContainsFunc(reason, func(c rune) bool { return c < ' ' }) {
		return order.Errorf(order.EINVALID, "a reason is at most %d characters on one line", MaxSupportReasonLength)
	}
	return nil
}

// recordSupportBan records a blacklist, unban or revocation of the unit k
// as a fact of its key's ledger, queueing the key's writer (the one writer
// of its bans), and returns the support_key job that reports the outcome
// once the writer has applied it. A key not delivered yet has nothing to
// ban: its job says so, as before.
func (s *Support) recordSupportBan(ctx context.Context, tx pgx.Tx, k *order.Key, args SupportKeyArgs, b postgres.SupportBan) (river.JobArgs, error) {
	if !k.Delivered() {
		return args, nil
	}
	args.FactRecorded = true
	return args, recordSupportBan(ctx, tx, s.River, k, b)
}

// forceHWIDReset records an HWID reset whatever the buyer's cooldown (the
// cooldown restarts from it) and returns the reset_hwid job to queue.
func (s *Support) forceHWIDReset(ctx context.Context, tx pgx.Tx, o *order.Order, k *order.Key) (river.JobArgs, error) {
	if why := order.HWIDResetRefusal(o.Status, *k, time.Now()); why != "" {
		return nil, order.Errorf(order.ECONFLICT, "%s", why)
	}
	cooldown := s.HWIDResetCooldown
	if cooldown <= 0 {
		cooldown = order.DefaultHWIDResetCooldown
	}
	reset, err := postgres.ForceHWIDReset(ctx, tx, k.ID, time.Now(), cooldown)
	if err != nil {
		return nil, err
	}
	return ResetHWIDArgs{OrderKeyID: k.ID, Request: reset.Request, Support: true}, nil
}

// reissue records, once per key, a new unit that replaces k; the returned
// reissue's support_key job plans and queues its creation, then revokes k
// once the new key is delivered. A key reissued before returns its
// reissue.
func (s *Support) reissue(ctx context.Context, tx pgx.Tx, actor string, o *order.Order, k *order.Key, reason string) (int64, error) {
	return recordReissue(ctx, tx, actor, o, k, reason)
}

// recordReissue records, once per key, the reissue of k (see
// Support.reissue); tx holds the order's lock.
func recordReissue(ctx context.Context, tx pgx.Tx, actor string, o *order.Order, k *order.Key, reason string) (int64, error) {
	existing, err := postgres.ReissueOf(ctx, tx, k.ID)
	if err != nil || existing != nil {
		if existing != nil {
			return existing.ID, nil
		}
		return 0, err
	}
	switch {
	case o.Status == order.StatusRevoked || o.Status == order.StatusFailed:
		return 0, order.Errorf(order.ECONFLICT, "the order is %s; a reissue needs a paid order in good standing", o.Status)
	case k.Status != order.KeyActive:
		return 0, order.Errorf(order.ECONFLICT, "the key is %s; only an active key is reissued", k.Status)
	}
	// A subscription key's expiry is recorded; a key_days key's is read
	// from Luarmor by the reissue job, before the new key is created.
	target := k.ExpireTarget
	if !k.Recurring {
		target = nil
	}
	r, err := postgres.RecordReissue(ctx, tx, k, target, actor, reasonOr(reason, DefaultReissueReason))
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// Outcome is how a support action ended.
type Outcome struct {
	// State is the job's final state: completed, cancelled or discarded.
	State rivertype.JobState
	// Error is why it did not complete (Luarmor's refusal, the key's state).
	Error string
	// Key is the key's recorded state afterwards; NewKey the replacement
	// of a reissue.
	Key    *order.Key
	NewKey *order.Key
}

// Wait waits for the job of q to finish (worked by the service's workers)
// and returns its outcome. ctx bounds the wait.
func (s *Support) Wait(ctx context.Context, q *Queued) (*Outcome, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		job, err := s.River.JobGet(ctx, q.JobID)
		if err != nil {
			return nil, fmt.Errorf("reading job %d of the %s: %w", q.JobID, q.Action, err)
		}
		if job.FinalizedAt != nil {
			out := &Outcome{State: job.State}
			if job.State != rivertype.JobStateCompleted && len(job.Errors) > 0 {
				out.Error = job.Errors[len(job.Errors)-1].Error
			}
			if out.Key, err = postgres.GetKey(ctx, s.Pool, q.OrderKeyID); err != nil {
				return nil, err
			}
			if q.ReissueID != 0 {
				r, err := postgres.GetReissue(ctx, s.Pool, q.ReissueID)
				if err != nil {
					return nil, err
				}
				if out.NewKey, err = postgres.GetKey(ctx, s.Pool, r.NewKeyID); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the %s is queued (job %d) but not finished yet; is the service running? %w", q.Action, q.JobID, ctx.Err())
		case <-tick.C:
		}
	}
}
