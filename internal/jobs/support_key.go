package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// KeyAction is what support does to a key.
type KeyAction string

const (
	ActionBlacklistKey KeyAction = "blacklist"
	ActionUnbanKey     KeyAction = "unban"
	ActionResetHWID    KeyAction = "reset-hwid"
	ActionRevokeKey    KeyAction = "revoke"
	ActionReissueKey   KeyAction = "reissue"
	ActionSetDiscord   KeyAction = "set-discord"
)

// KeyActions lists every support action on a key.
var KeyActions = []KeyAction{ActionBlacklistKey, ActionUnbanKey, ActionResetHWID, ActionRevokeKey, ActionReissueKey, ActionSetDiscord}

// Default ban reasons of support actions without a reason.
const (
	DefaultSupportBanReason = "Blacklisted by support"
	DefaultRevokeReason     = "Revoked by support"
	DefaultReissueReason    = "Replaced by a new key"
)

// SupportKeyArgs carries one support action on one key: the outcome of a
// blacklist, unban or revocation (facts of the key's ledger, applied by
// its writer, sync_key), a set-discord, or the last step of a reissue
// (revoking the old key once its replacement is delivered). HWID resets go
// through reset_hwid and the new key of a reissue through create_key, like
// the buyer's.
type SupportKeyArgs struct {
	Action     KeyAction `json:"action"`
	OrderKeyID int64     `json:"order_key_id"`
	Reason     string    `json:"reason,omitempty"`
	DiscordID  string    `json:"discord_id,omitempty"`
	ReissueID  int64     `json:"reissue_id,omitempty"`
	// FromKeyID, with set-discord, is the key the link moves from (a
	// reissue's old key): its link is cleared first.
	FromKeyID int64 `json:"from_key_id,omitempty"`
	// Actor is who asked: "cli" or "admin-api", for the log.
	Actor string `json:"actor"`
	// FactRecorded, with blacklist, unban and revoke: the request recorded
	// support's ban (or its lifting) in the key's ledger, in the commit
	// that queued this job. A job queued before support's bans were facts
	// has it false and records the fact itself (recordQueuedBefore).
	FactRecorded bool `json:"fact_recorded,omitempty"`
}

func (SupportKeyArgs) Kind() string { return "support_key" }

// InsertOpts: bans, unbans and revocations take the revocation class of
// the budget, as a dispute's do; linking a Discord ID is a customer's
// running access, like a renewal. A repeated request while the first is
// waiting or running is the same job.
func (a SupportKeyArgs) InsertOpts() river.InsertOpts {
	queue := QueueLuarmorRevoke
	if a.Action == ActionSetDiscord {
		queue = QueueLuarmorRenew
	}
	return river.InsertOpts{Queue: queue, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// SupportKeyWorker works SupportKeyArgs. A blacklist, unban or revocation
// sends nothing itself: the request recorded it as a fact of the key's
// ledger and queued the key's writer (sync_key), the one writer of the
// key's bans, which applies it with whatever payments call for; this job
// waits until the writer has applied the ledger, so its outcome (Support.
// Wait) shows the key as it then is. Crash table of those actions:
//
//	dies before the request's commit  nothing recorded, nothing queued: the request failed
//	dies after it                     the fact and the writer's job are committed: the writer
//	                                  applies it (see SyncKeyWorker's crash table), and this
//	                                  job's retry waits for it again; nothing is sent twice
//
// Set-discord and the reissue's revocation of the old key call Luarmor
// here: each reads the key's recorded state first and does nothing when it
// is already what the action asks for, so a repeat costs no Luarmor call;
// a run cut off after Luarmor applied it repeats a call that changes
// nothing (a second ban, the same Discord ID). The key's new state commits
// with the job's completion.
type SupportKeyWorker struct {
	river.WorkerDefaults[SupportKeyArgs]
	Deps
}

// supportWriterWait bounds how long a blacklist, unban or revocation waits
// for the key's writer: past it, the job gives up reporting (the ledger
// still holds the fact, and the writer keeps applying it).
const supportWriterWait = 5 * time.Minute

// Timeout covers the wait for a budget slot.
func (w *SupportKeyWorker) Timeout(*river.Job[SupportKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *SupportKeyWorker) Work(ctx context.Context, job *river.Job[SupportKeyArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRevoke)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if !k.Delivered() {
		return river.JobCancel(fmt.Errorf("order key %d has no key yet: nothing to %s", k.ID, job.Args.Action))
	}
	switch job.Args.Action {
	case ActionBlacklistKey, ActionRevokeKey, ActionUnbanKey:
		if !job.Args.FactRecorded {
			return w.recordQueuedBefore(ctx, job, k)
		}
		return w.awaitWriter(ctx, job, k)
	case ActionSetDiscord:
		return w.setDiscord(budget.WithClass(ctx, budget.ClassRenew), job, k)
	case ActionReissueKey:
		return w.finishReissue(ctx, job, k)
	}
	return river.JobCancel(fmt.Errorf("unknown support action %q", job.Args.Action))
}

func reasonOr(reason, fallback string) string {
	if reason == "" {
		return fallback
	}
	return reason
}

// supportBanOf is the fact a blacklist or revocation records: reason is
// the request's, or the action's default; a revocation does what a refund
// does (REFUND_ACTION: delete), and blacklists when refunds revoke nothing,
// since the operator asked for the key to stop working.
func supportBanOf(action KeyAction, reason string, p order.Policy) postgres.SupportBan {
	if action == ActionRevokeKey {
		return postgres.SupportBan{Held: true, Reason: reasonOr(reason, DefaultRevokeReason), Delete: p.RefundAction == order.ActionDelete}
	}
	return postgres.SupportBan{Held: true, Reason: reasonOr(reason, DefaultSupportBanReason)}
}

// recordSupportBan records support's ban, revocation or its lifting on the
// unit k as a fact of its key's ledger, and queues the key's writer
// urgently, through rc, when that changed the fact (a repeat changes
// nothing). tx holds the order's lock.
func recordSupportBan(ctx context.Context, tx pgx.Tx, rc *river.Client[pgx.Tx], k *order.Key, b postgres.SupportBan) error {
	changed, err := postgres.SetSupportBan(ctx, tx, k.ID, b)
	if err != nil || !changed {
		return err
	}
	keys, err := postgres.LedgerKeysOfUnits(ctx, tx, []int64{k.ID})
	if err != nil {
		return err
	}
	for _, id := range keys {
		if _, err := rc.InsertTx(ctx, tx, SyncKeyArgs{LedgerKeyID: id, Urgent: true}, nil); err != nil {
			return fmt.Errorf("queueing the writer of order key %d: %w", k.ID, err)
		}
	}
	return nil
}

// awaitWriter completes a blacklist, unban or revocation once the key's
// writer has applied its ledger (the request recorded the fact, so it is
// included), with the key's state as the writer recorded it.
func (w *SupportKeyWorker) awaitWriter(ctx context.Context, job *river.Job[SupportKeyArgs], k *order.Key) error {
	applied, err := postgres.UnitLedgerApplied(ctx, w.Pool, k.ID)
	if err != nil {
		return err
	}
	if !applied {
		if waited := w.Now().Sub(job.CreatedAt); waited > supportWriterWait {
			return river.JobCancel(fmt.Errorf("the key's writer (sync_key) has not applied the %s after %s; the ledger holds it "+
				"and the writer keeps trying: see the errors of its job for order key %d", job.Args.Action, waited.Round(time.Second), k.ID))
		}
		return river.JobSnooze(time.Second)
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		now, err := postgres.GetKey(ctx, tx, k.ID)
		if err != nil {
			return err
		}
		if job.Args.Action == ActionUnbanKey && now.Status == order.KeyBlacklisted {
			w.Logger.WarnContext(ctx, "support's ban is lifted, but the key stays banned: a payment's revocation holds it (lift that instead)",
				"order_ref", logging.OrderRef(k.CheckoutSessionID), "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
		}
		w.log(ctx, job, now, "status", now.Status)
		return nil
	})
}

// recordQueuedBefore carries out a blacklist, unban or revocation queued
// before support's bans were ledger facts: it records the fact the request
// would now record, with the same refusal, and completes in that commit,
// so a retry never records it again over a later request.
func (w *SupportKeyWorker) recordQueuedBefore(ctx context.Context, job *river.Job[SupportKeyArgs], k *order.Key) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID)
		if err != nil {
			return err
		}
		if k, err = postgres.GetKey(ctx, tx, k.ID); err != nil { // as of the lock
			return err
		}
		b := postgres.SupportBan{}
		if job.Args.Action == ActionUnbanKey {
			if o.Status == order.StatusRevoked {
				return river.JobCancel(errUnbanRevoked)
			}
		} else {
			b = supportBanOf(job.Args.Action, job.Args.Reason, w.Policy)
		}
		w.log(ctx, job, k, "recorded", "support ban fact")
		return recordSupportBan(ctx, tx, river.ClientFromContext[pgx.Tx](ctx), k, b)
	})
}

var errUnbanRevoked = order.Errorf(order.ECONFLICT, "the order is revoked by a dispute or refund; its keys stay banned while it holds")

// revokeReplaced revokes the old key of a finished reissue (blacklists it
// for good, or deletes it under REFUND_ACTION=delete) and records, with the
// job's completion and whatever also writes, its status and support's
// revocation as a fact of its ledger, so its writer keeps it revoked and
// the writer is queued to record what Luarmor then has. The request is
// sent here, not by the writer, because the reissue's end (the new key
// emailed, the reissue done) commits with it, once the old key no longer
// works; a repeat finds the key revoked and sends nothing.
func (w *SupportKeyWorker) revokeReplaced(ctx context.Context, job *river.Job[SupportKeyArgs], k *order.Key, reason string, also func(pgx.Tx) error) error {
	b := supportBanOf(ActionRevokeKey, reason, w.Policy)
	action := order.ActionBlacklist
	if b.Delete {
		action = order.ActionDelete
	}
	status := k.Status // already done: no call
	if k.Status != order.KeyDeleted && (action != order.ActionBlacklist || k.Status != order.KeyBlacklisted) {
		var err error
		if status, err = banKey(ctx, w.Luarmor, k, action, reason); err != nil {
			return w.refused(job, k, err)
		}
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if _, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID); err != nil {
			return err
		}
		if err := postgres.SetKeyStatus(ctx, tx, k.ID, status); err != nil {
			return err
		}
		// Support's decision: no automatic unban undoes it.
		if _, err := postgres.SetSupportBan(ctx, tx, k.ID, b); err != nil {
			return err
		}
		if err := syncUnits(ctx, tx, k.ID); err != nil {
			return err
		}
		if err := also(tx); err != nil {
			return err
		}
		w.log(ctx, job, k, "status", status, "reason", reason)
		return nil
	})
}

// setDiscord links a Discord ID to the key. Luarmor links an ID to one key
// per project: an ID that holds another key is refused, never moved.
func (w *SupportKeyWorker) setDiscord(ctx context.Context, job *river.Job[SupportKeyArgs], k *order.Key) error {
	id := job.Args.DiscordID
	if job.Args.FromKeyID != 0 {
		if err := w.unlinkDiscord(ctx, job, job.Args.FromKeyID); err != nil {
			return err
		}
	}
	err := w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, DiscordID: &id})
	switch {
	case errors.Is(err, luarmor.ErrDiscordInUse):
		return river.JobCancel(fmt.Errorf("the Discord ID %s is linked to another key of project %s; unlink it there first", id, k.ProjectID))
	case errors.Is(err, luarmor.ErrInvalidDiscordID):
		return river.JobCancel(fmt.Errorf("Luarmor refused Discord ID %s as invalid", id))
	case errors.Is(err, luarmor.ErrDiscordUnrecognised):
		w.Logger.WarnContext(ctx, "luarmor refused a Discord ID with a message of no known class",
			"order_key_id", k.ID, "luarmor_message", luarmorMessage(err))
		return river.JobCancel(fmt.Errorf("Luarmor refused Discord ID %s: %q (a refusal this service does not recognise)", id, luarmorMessage(err)))
	case err != nil:
		return w.refused(job, k, err)
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		w.log(ctx, job, k, "discord_id", id)
		if err := postgres.LinkDiscord(ctx, tx, k.ID); err != nil {
			return err
		}
		// The key's writer records whether this is the account its
		// buyer verified (a reissue moves that one too).
		return syncUnits(ctx, tx, k.ID)
	})
}

// unlinkDiscord clears the Discord link of the key a link moves from (a
// reissue's old key, revoked by then). Clearing is absolute, so a repeat
// changes nothing; a key Luarmor no longer has holds no link.
func (w *SupportKeyWorker) unlinkDiscord(ctx context.Context, job *river.Job[SupportKeyArgs], fromKeyID int64) error {
	from, err := postgres.GetKey(ctx, w.Pool, fromKeyID)
	if err != nil {
		return err
	}
	if from.UserKey == "" {
		return nil
	}
	none := ""
	err = w.Luarmor.UpdateUser(ctx, from.ProjectID, luarmor.UpdateUserRequest{UserKey: from.UserKey, DiscordID: &none})
	if err != nil && !errors.Is(err, luarmor.ErrNotFound) {
		return w.refused(job, from, err)
	}
	return nil
}

// finishReissue revokes the old key of a reissue once its replacement is
// delivered, and records the reissue done in the same commit. While the
// new key is being made it waits; if the new key cannot be made, the old
// one is left working and the reissue is recorded failed.
func (w *SupportKeyWorker) finishReissue(ctx context.Context, job *river.Job[SupportKeyArgs], old *order.Key) error {
	r, err := postgres.GetReissue(ctx, w.Pool, job.Args.ReissueID)
	if err != nil {
		return err
	}
	if r.Status != "queued" {
		return nil
	}
	nk, err := postgres.GetKey(ctx, w.Pool, r.NewKeyID)
	if err != nil {
		return err
	}
	if queued, err := postgres.UnitQueued(ctx, w.Pool, nk.ID); err != nil || !queued {
		if err != nil {
			return err
		}
		return w.planReissue(ctx, job, r, old, nk)
	}
	if !nk.Delivered() {
		o, err := postgres.GetOrder(ctx, w.Pool, nk.CheckoutSessionID)
		if err != nil {
			return err
		}
		why := ""
		switch {
		case nk.Status == order.KeyFailed:
			why = "the new key could not be created: " + nk.LastError
		case o.Status == order.StatusRevoked:
			why = "the order was revoked by a dispute or refund before the new key was made"
		}
		if why == "" {
			return river.JobSnooze(time.Second) // create_key is making it
		}
		return w.failReissue(ctx, r, why)
	}
	discordID, err := w.reissueDiscord(ctx, job, r, old)
	if err != nil {
		return err
	}
	return w.revokeReplaced(ctx, job, old, reasonOr(job.Args.Reason, DefaultReissueReason), func(tx pgx.Tx) error {
		w.log(ctx, job, nk, "reissue_id", r.ID, "replaces", logging.MaskKey(old.UserKey))
		if err := postgres.FinishReissue(ctx, tx, r.ID, "done", ""); err != nil {
			return err
		}
		if err := emailOwedLink(ctx, tx, w.Deps, r, old.CheckoutSessionID); err != nil {
			return err
		}
		if err := queueReissuedEmail(ctx, tx, w.Deps, r, nk); err != nil {
			return err
		}
		if err := eventKeyReissued(ctx, tx, w.Deps, r, old, nk); err != nil {
			return err
		}
		if discordID == "" {
			return nil
		}
		// The old key gives its Discord link up to the new one.
		return insertMany(ctx, tx, SupportKeyArgs{Action: ActionSetDiscord, OrderKeyID: nk.ID, DiscordID: discordID,
			FromKeyID: old.ID, Actor: job.Args.Actor})
	})
}

// reissueDiscord returns the Discord ID a reissue moves from the old key
// to the new one ("" for none): what Luarmor says the old key holds, read
// once, before the old key is revoked, and recorded. A stock key found
// missing never got its buyer's link: the new key takes it instead. So
// does one the stock check replaced (ActorStock): it was never labelled,
// and a link it has was made before the sale, not by its buyer.
func (w *SupportKeyWorker) reissueDiscord(ctx context.Context, job *river.Job[SupportKeyArgs], r *postgres.Reissue, old *order.Key) (string, error) {
	if r.DiscordID != nil {
		return *r.DiscordID, nil
	}
	discordID := ""
	buyers := r.RequestedBy == ActorStock
	if !buyers {
		u, err := w.Luarmor.GetUser(ctx, old.ProjectID, old.UserKey)
		switch {
		case errors.Is(err, luarmor.ErrNotFound):
			buyers = true
		case err != nil:
			return "", w.refused(job, old, err)
		default:
			discordID = u.DiscordID
		}
	}
	if buyers {
		o, err := postgres.GetOrder(ctx, w.Pool, old.CheckoutSessionID)
		if err != nil {
			return "", err
		}
		discordID = discordFor(o, old)
	}
	return postgres.RecordReissueDiscord(ctx, w.Pool, r.ID, discordID)
}

// planReissue decides the expiry of a reissue's new key and queues its
// create_key job, in one commit that marks the unit queued, so a repeat
// plans nothing twice. The new key keeps what the old one was sold with:
// its price, project and key_days; a subscription key its recorded
// absolute expiry; a key whose key_days timer started the expiry it
// reached in Luarmor (read now, so a reissue never adds days); a lifetime
// key stays lifetime, and a key not used yet gets its full key_days, as it
// would have. So does a key sold from stock that the stock check replaced
// (ActorStock), found gone or used before the sale right after it: a
// timer it shows was started by someone else, not its buyer.
func (w *SupportKeyWorker) planReissue(ctx context.Context, job *river.Job[SupportKeyArgs], r *postgres.Reissue, old, nk *order.Key) error {
	var target *int64
	if !old.Recurring && old.KeyDays > 0 && r.RequestedBy != ActorStock {
		u, err := w.Luarmor.GetUser(ctx, old.ProjectID, old.UserKey)
		switch {
		case errors.Is(err, luarmor.ErrNotFound):
			return w.failReissue(ctx, r, "the old key no longer exists in Luarmor")
		case err != nil:
			return w.refused(job, old, err)
		}
		if u.AuthExpire > 0 {
			if u.AuthExpire <= w.Now().Unix() {
				return w.failReissue(ctx, r, "the old key has expired; a reissue would not restore its days")
			}
			target = &u.AuthExpire
			// The new key runs on from the old one's start.
			if err := postgres.LearnStart(ctx, w.Pool, old.ProjectID, old.UserKey, u.AuthExpire); err != nil {
				return err
			}
		}
	}
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	if _, err := postgres.LockOrder(ctx, tx, nk.CheckoutSessionID); err != nil {
		return err
	}
	planned, err := postgres.PlanReissuedUnit(ctx, tx, nk.ID, target)
	if err != nil {
		return err
	}
	if planned {
		if err := insertMany(ctx, tx, CreateKeyArgs{OrderKeyID: nk.ID}); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return river.JobSnooze(time.Second) // create_key makes the new key
}

// failReissue records a reissue failed, leaving the old key as it is. The
// fresh link a rotation with it owes is emailed all the same: the buyer's
// old link no longer works.
func (w *SupportKeyWorker) failReissue(ctx context.Context, r *postgres.Reissue, why string) error {
	err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		old, err := postgres.GetKey(ctx, tx, r.OldKeyID)
		if err != nil {
			return err
		}
		if _, err := postgres.LockOrder(ctx, tx, old.CheckoutSessionID); err != nil {
			return err
		}
		if err := postgres.FinishReissue(ctx, tx, r.ID, "failed", why); err != nil {
			return err
		}
		return emailOwedLink(ctx, tx, w.Deps, r, old.CheckoutSessionID)
	})
	if err != nil {
		return err
	}
	return river.JobCancel(fmt.Errorf("reissue %d failed, the old key was left as it is: %s", r.ID, why))
}

// refused turns a failed Luarmor call into the job's outcome: waits and
// transient failures are retried, a refusal cancels the job with Luarmor's
// reason (the operator sees it).
func (w *SupportKeyWorker) refused(job *river.Job[SupportKeyArgs], k *order.Key, err error) error {
	if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
		return jobErr
	}
	return river.JobCancel(fmt.Errorf("luarmor refused to %s the key in project %s: %w", job.Args.Action, k.ProjectID, err))
}

func (w *SupportKeyWorker) log(ctx context.Context, job *river.Job[SupportKeyArgs], k *order.Key, attrs ...any) {
	w.Logger.InfoContext(ctx, "support action applied", append([]any{"actor", job.Args.Actor, "action", job.Args.Action,
		"order_ref", logging.OrderRef(k.CheckoutSessionID), "order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey)}, attrs...)...)
}
