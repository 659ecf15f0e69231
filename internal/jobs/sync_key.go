package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/budget"
	"fulfiller/internal/entitlement"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/metrics"
	"fulfiller/internal/postgres"
)

// SyncKeyArgs brings one Luarmor key in step with its entitlement ledger.
// It is the one writer of a key's expiry and of the bans payments and
// support call for: renewals, subscription changes, revocations and their
// lifting, support's blacklist, unban and revoke, purchases extending a
// key, all change the ledger and queue this job.
type SyncKeyArgs struct {
	LedgerKeyID int64 `json:"ledger_key_id"`
	// Urgent: the change takes access away (a revocation, a ban) or gives
	// back access taken (its lifting); it runs in the revocation queue,
	// ahead of any backlog of renewals. Both kinds of run derive the whole
	// state; the key's lease keeps them one at a time.
	Urgent bool `json:"urgent,omitempty"`
}

func (SyncKeyArgs) Kind() string { return "sync_key" }

// InsertOpts: one waiting or running copy per key. A change recorded
// while it runs is caught by its completion (see Work), which queues it
// again.
func (a SyncKeyArgs) InsertOpts() river.InsertOpts {
	queue := QueueLuarmorRenew
	if a.Urgent {
		queue = QueueLuarmorRevoke
	}
	return river.InsertOpts{Queue: queue, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// SyncKeyWorker works SyncKeyArgs. One run:
//
//  1. reads the key's ledger and derives its desired state
//     (entitlement.Derive); nothing to do when it is what was applied;
//  2. takes the key's lease (one writer at a time, also across a rescue:
//     a writer whose request may still be on its way holds it), then
//     reads the ledger and derives again: what another writer recorded
//     before the lease decides what this one sends;
//  3. reads the key from Luarmor: its first use, if any, is recorded as
//     the key's start, and nothing is sent that it already has;
//  4. records what it is about to send, the expiry and whether a ban or
//     an unban (postgres.RecordIntent: one short write, only for a run
//     that sends a value; an unban too, since a ban back in the ledger
//     with the reason last recorded would otherwise look applied), then sends the absolute result (expiry, ban or unban,
//     delete), then links the Discord account the key's buyer verified,
//     if it has not acted on that verification yet (linkDiscord);
//  5. records what it applied for the version it read, with the job's
//     completion, and queues itself again if the ledger changed meanwhile.
//     The record clears the intents. A run that sent no access (step 1's
//     nothing to do, or a link only) records the applied state it read in
//     step 1, and only while it is still the recorded one, no intent is
//     pending and no other writer holds the lease (postgres.RecordApplied):
//     two runs of one key (its urgent and its plain copy) never record a
//     state read before the other's ban. A run whose link fails after it
//     sent access records that access all the same, without completing,
//     and retries the link.
//
// A retry derives again from the ledger as it is then: nothing resends a
// value computed earlier. Two of its decisions depend on who put a value
// in Luarmor: time beyond the ledger's is cut only if the service gave
// it (the seller's own edit stays), a ban is lifted only if the service
// made it (the seller's stays). A value is the service's when the applied
// state records it, or when a pending intent names it: so a value sent
// and never recorded is still the service's to take back, however the
// ledger changed before the retry.
//
// Crash table:
//
//	dies before 4          nothing sent; the retry (or the rescue, after the lease) starts over
//	dies after the intent, nothing sent, or part of what the intent names; the retry reads
//	before all was sent    Luarmor and sends only what is still missing. Until a record clears
//	                       it, a value equal to one the intent names counts as the service's
//	                       even if it was never sent (a seller's ban set in that window is lifted)
//	dies during 4          the lease keeps a rescued run off until the request has ended; it then
//	                       reads Luarmor and sends only what is still missing
//	dies after 4, before   Luarmor holds values the applied state does not know, and the ledger
//	the commit of 5        may have changed since (a ban lifted, a renewal refunded): the pending
//	                       intent makes the retry read Luarmor (never "nothing to do"), count the
//	                       values it names as the service's, and send what the ledger says now
//	lease runs out before  another writer took the key and read Luarmor after this run's requests
//	the commit of 5        ended: this run records nothing (ErrLedgerLeaseLost) and derives again
type SyncKeyWorker struct {
	river.WorkerDefaults[SyncKeyArgs]
	Deps
}

func (w *SyncKeyWorker) Timeout(*river.Job[SyncKeyArgs]) time.Duration { return 5 * time.Minute }

func (w *SyncKeyWorker) Work(ctx context.Context, job *river.Job[SyncKeyArgs]) error {
	id := job.Args.LedgerKeyID
	l, d, err := w.derive(ctx, id)
	if err != nil {
		return err
	}
	now := w.Now().Unix()
	if upToDate(l, d, now) {
		return w.record(ctx, job, l, d, recorded{applied: l.Applied})
	}
	owner := newLeaseOwner(job.JobRow)
	lease := w.CreateLease
	var held *postgres.LedgerLeaseHeldError
	if err := postgres.TakeLedgerLease(ctx, w.Pool, id, owner, lease); errors.As(err, &held) {
		// Another writer holds the key: a live one ends its lease when it
		// records (often within a second), a dead one's runs out. Look
		// again soon rather than after the whole lease.
		return river.JobSnooze(min(max(time.Until(held.Until), 0), time.Second) + 250*time.Millisecond)
	} else if err != nil {
		return err
	}
	release := func(d time.Duration) {
		_ = postgres.ReleaseLedgerLease(context.WithoutCancel(ctx), w.Pool, id, owner, d)
	}
	// finish records what the key now is; the record also ends the lease.
	// Should it fail (a lost connection), Luarmor has answered every
	// request, so the retry need not wait the lease out. seen: a is what
	// Luarmor answered or was sent, not the state read with the ledger.
	finish := func(a entitlement.Applied, link *discordOutcome, seen bool) error {
		err := w.record(ctx, job, l, d, recorded{applied: a, link: link, owner: owner, seen: seen})
		if err != nil {
			release(0)
		}
		return err
	}
	// Another writer of the key may have sent and recorded between the
	// read above and the lease. What this run decides from the applied
	// state (whether a change takes time back, whether a ban is the
	// service's to lift) is read again now that no other writer records
	// while it holds the lease.
	if l, d, err = w.derive(ctx, id); err != nil {
		release(0)
		return err
	}
	if upToDate(l, d, now) {
		return finish(l.Applied, nil, false)
	}
	ctx = budget.WithClass(ctx, budget.ClassRenew)
	if d.Ban != entitlement.NotBanned || d.Delete {
		ctx = budget.WithClass(ctx, budget.ClassRevoke)
	}
	ctx = budget.WithBeforeSend(ctx, func(ctx context.Context) error {
		return postgres.RenewLedgerLease(ctx, w.Pool, id, owner, lease)
	})
	// What the key's access lacks is sent first, then a verified Discord
	// account still to be linked (rule 9): a link never holds up a ban.
	// A value sent and never recorded (Intent) is checked against Luarmor.
	accessDue := d.Start || l.Intent.Pending() || !entitlement.SameAccess(l.Applied, d, now)

	u, err := w.Luarmor.GetUser(ctx, l.ProjectID, l.UserKey)
	if errors.Is(err, luarmor.ErrNotFound) {
		w.Logger.WarnContext(ctx, "a key with paid time no longer exists in Luarmor; recorded as deleted",
			"ledger_key_id", id, "user_key", logging.MaskKey(l.UserKey))
		return finish(entitlement.Applied{Deleted: true}, nil, true)
	}
	if err != nil {
		release(0)
		jobErr, _ := luarmorRetry(err, w.RateLimitWindow)
		return jobErr
	}
	if err := recordBinding(ctx, w.Pool, l.ProjectID, l.UserKey, u); err != nil {
		release(0)
		return err
	}
	firstUse := l.Facts.WaitingDays > 0 && started(u)
	if l.Facts.StartedAt == nil && (firstUse || d.Start) {
		// The key's clock started: at its first use (Luarmor ran the
		// key_days it waited with from then), or now, because the time
		// it is owed can only be set as an absolute expiry.
		at := now
		if firstUse {
			at = u.AuthExpire - int64(l.Facts.WaitingDays)*86400
		}
		if err := postgres.RecordKeyStart(ctx, w.Pool, id, at); err != nil {
			release(0)
			return err
		}
		l.Facts.StartedAt = &at
		d = entitlement.Derive(l.Grants, l.Facts, w.entitlementPolicy())
	}
	applied := l.Applied
	if accessDue {
		applied, err = w.apply(ctx, l, d, u, now, owner)
	}
	var link *discordOutcome
	linking := err == nil && entitlement.DiscordDue(l.Applied, d)
	if linking {
		link, err = w.linkDiscord(ctx, l, d.Discord, u, owner, lease)
	}
	if errors.Is(err, luarmor.ErrNotFound) {
		return finish(entitlement.Applied{Deleted: true}, nil, true)
	}
	if errors.Is(err, postgres.ErrLedgerLeaseLost) {
		// The wait for a Luarmor slot outlasted the lease and another
		// writer took the key: this run derives again from what that one
		// recorded.
		release(0)
		return river.JobSnooze(time.Second)
	}
	// A link that failed after the key's access was sent: what was sent
	// is recorded all the same, so the key shows it and the retry has
	// only the link left to do.
	sentThenLinkFailed := err != nil && linking && accessDue
	var snooze *river.JobSnoozeError
	if errors.As(err, &snooze) {
		// Another key's writer holds what the link waits for: nothing
		// was sent for this key since, so its lease goes at once.
		if sentThenLinkFailed {
			w.recordSent(ctx, l, d, applied, owner, false)
		}
		release(0)
		return err
	}
	if err != nil {
		if sentThenLinkFailed {
			// The link's request may still be on its way: the lease is
			// kept, and settled below as for any failed request.
			w.recordSent(ctx, l, d, applied, owner, true)
		}
		settleCreateLease(ctx, err, func(context.Context) { release(answeredLease) }, func(context.Context) { release(0) })
		jobErr, retry := luarmorRetry(err, w.RateLimitWindow)
		switch {
		case retry:
		case linking:
			w.Logger.ErrorContext(ctx, "luarmor refused to link the Discord account the key's buyer verified; retrying, or link it in the dashboard",
				"ledger_key_id", id, "user_key", logging.MaskKey(l.UserKey), "discord_id", d.Discord.ID, "error", err)
		default:
			w.Logger.ErrorContext(ctx, "luarmor refused to set a key to what was paid for; set it in the dashboard",
				"ledger_key_id", id, "user_key", logging.MaskKey(l.UserKey), "error", err)
		}
		return jobErr
	}
	if accessDue {
		w.Logger.InfoContext(ctx, "key set to what was paid for", "ledger_key_id", id, "user_key", logging.MaskKey(l.UserKey),
			"lifetime", applied.Lifetime, "key_days", applied.WaitingDays, "auth_expire", applied.Expire,
			"ban", applied.Ban, "deleted", applied.Deleted)
	}
	return finish(applied, link, accessDue)
}

// upToDate reports whether the key needs no request: deleted, or what was
// applied already is what the ledger derives at now, and no value sent to
// it is left unrecorded (a pending Intent: Luarmor may hold it).
func upToDate(l *postgres.Ledger, d entitlement.Desired, now int64) bool {
	return l.Applied.Deleted || (!d.Start && !l.Intent.Pending() && entitlement.Same(l.Applied, d, now))
}

// started reports whether Luarmor started the key's clock: a key waiting
// for first use has auth_expire -1 and key_days.
func started(u *luarmor.User) bool { return u.AuthExpire != luarmor.NeverExpires }

// derive reads the key's ledger and derives its desired state, recording
// the key's start when its time became absolute.
func (w *SyncKeyWorker) derive(ctx context.Context, id int64) (*postgres.Ledger, entitlement.Desired, error) {
	l, err := w.readLedger(ctx, id)
	if err != nil {
		return nil, entitlement.Desired{}, err
	}
	d := entitlement.Derive(l.Grants, l.Facts, w.entitlementPolicy())
	if l.Facts.StartedAt == nil && d.Began != 0 {
		// The key's time is absolute from its first period on: recorded,
		// so it stays the key's start whatever grants come and go.
		if err := postgres.RecordKeyStart(ctx, w.Pool, id, d.Began); err != nil {
			return nil, entitlement.Desired{}, err
		}
		l.Facts.StartedAt = &d.Began
	}
	return l, d, nil
}

func (w *SyncKeyWorker) readLedger(ctx context.Context, id int64) (*postgres.Ledger, error) {
	return postgres.ReadLedger(ctx, w.Pool, id, SuspendBanReason, DefaultSupportBanReason)
}

func (w *SyncKeyWorker) entitlementPolicy() entitlement.Policy {
	return entitlement.Policy{GraceSeconds: w.graceSeconds()}
}

// apply sends what the key lacks of d, given the key as Luarmor has it
// (u), and returns what the key then is. Before its first request it
// records what it is about to send (postgres.RecordIntent), under owner's
// lease: a value Luarmor holds that a recorded intent names is the
// service's own, whether or not its record was ever committed.
func (w *SyncKeyWorker) apply(ctx context.Context, l *postgres.Ledger, d entitlement.Desired, u *luarmor.User, now int64, owner string) (entitlement.Applied, error) {
	if d.Delete {
		if err := w.Luarmor.DeleteUser(ctx, l.ProjectID, l.UserKey); err != nil && !errors.Is(err, luarmor.ErrNotFound) {
			return entitlement.Applied{}, err
		}
		w.Metrics.KeyRevoked("delete")
		return entitlement.Applied{Deleted: true}, nil
	}
	a := entitlement.Applied{Ban: d.Ban, BanReason: d.BanReason}
	var expire *int64 // the expiry to send, nil when none
	unclaimed := u.Identifier == "" && u.DiscordID == ""
	switch {
	case d.Ban == entitlement.BanPermanent:
		// Banned for good: its time is moot and left as it is (one call,
		// the ban); a lifted ban sets it then.
		a.Lifetime = u.AuthExpire == luarmor.NeverExpires && u.KeyDays == 0
		a.WaitingDays = u.KeyDays
		if u.AuthExpire != luarmor.NeverExpires {
			a.Expire = u.AuthExpire
		}
	case d.Lifetime:
		a.Lifetime = true
		if u.AuthExpire != luarmor.NeverExpires || u.KeyDays != 0 {
			never := luarmor.NeverExpires
			expire = &never
		}
	case d.WaitingDays > 0:
		// Luarmor holds key_days for first use; they cannot be changed
		// without starting the clock, which Derive asks for when needed.
		a.WaitingDays = u.KeyDays
	default:
		target := entitlement.ExpireToSend(d, now)
		a.Expire = target
		lapsed := u.AuthExpire != luarmor.NeverExpires && u.AuthExpire <= now && d.Expire <= now
		// Time given outside the ledger (the seller's own edit in the
		// dashboard) is never cut by a change that takes nothing back:
		// only a revocation or an ending shortens a key. An expiry a
		// writer sent is the service's own, recorded or not.
		givenOutside := u.AuthExpire > target && !takesBack(l.Applied, d) && !l.Intent.SentExpire(u.AuthExpire)
		waiting := u.AuthExpire == luarmor.NeverExpires && u.KeyDays > 0
		switch {
		case lapsed:
			a.Expire = u.AuthExpire
		case givenOutside:
		case l.Applied.AwaitingClaim && unclaimed && waiting && l.Applied.Expire == target:
			// Luarmor keeps this unclaimed key's expiry as key_days: sent
			// again once a first use has claimed it, or once the expiry
			// it stands for moves (a refund, a renewal, a purchase), so
			// its key_days hold what is paid for. Once its paid time has
			// run out the target is now (ExpireToSend), never the one
			// recorded: the passed expiry is sent, and Luarmor ends the
			// key rather than keep days nobody paid for a first use to
			// start; the key is then lapsed, and sent nothing again.
			a.Expire, a.WaitingDays, a.AwaitingClaim = target, u.KeyDays, true
		case u.AuthExpire != target || u.KeyDays != 0:
			expire = &target
		}
	}
	ban := d.Ban != entitlement.NotBanned && !u.IsBanned()
	// Only a ban the service made (recorded, or sent and never recorded)
	// is lifted: one the seller set in the dashboard stays.
	unban := d.Ban == entitlement.NotBanned && u.IsBanned() && (l.Applied.Ban != entitlement.NotBanned || l.Intent.Ban)
	if expire != nil || ban || unban {
		if err := postgres.RecordIntent(ctx, w.Pool, l.ID, owner, expire, ban, unban); err != nil {
			return a, err
		}
	}
	if expire != nil {
		if err := w.setExpiry(ctx, l, *expire); err != nil {
			return a, err
		}
		if unclaimed && *expire != luarmor.NeverExpires {
			// Luarmor's documentation does not say what a PATCH of
			// auth_expire does to a key nobody claimed (its create turns
			// one into key_days): read it back.
			back, err := w.Luarmor.GetUser(ctx, l.ProjectID, l.UserKey)
			if err != nil {
				return a, err
			}
			if back.AuthExpire == luarmor.NeverExpires && back.KeyDays > 0 {
				w.Logger.WarnContext(ctx, "luarmor kept an unclaimed key's expiry as key_days; it is set again once the key is first used",
					"ledger_key_id", l.ID, "user_key", logging.MaskKey(l.UserKey), "key_days", back.KeyDays, "auth_expire", *expire)
				a.WaitingDays, a.AwaitingClaim = back.KeyDays, true
			}
		}
	}
	switch {
	case ban:
		never := luarmor.NeverExpires
		if err := w.Luarmor.Blacklist(ctx, l.ProjectID, luarmor.BlacklistRequest{UserKey: l.UserKey, BanReason: d.BanReason, BanExpire: &never}); err != nil {
			return a, err
		}
		if d.Ban == entitlement.BanPermanent {
			w.Metrics.KeyRevoked("blacklist")
		}
	case unban:
		// Luarmor issues a new unban token on every blacklist; u was read
		// just now. The request names only the token: the call log is
		// told the key.
		if err := w.Luarmor.Unban(budget.WithCallerKey(ctx, l.UserKey), l.ProjectID, u.UnbanToken); err != nil {
			return a, err
		}
	}
	return a, nil
}

func (w *SyncKeyWorker) setExpiry(ctx context.Context, l *postgres.Ledger, expire int64) error {
	return w.Luarmor.UpdateUser(ctx, l.ProjectID, luarmor.UpdateUserRequest{UserKey: l.UserKey, AuthExpire: &expire})
}

// recorded is what one run of the writer records.
type recorded struct {
	// applied is what the key now is.
	applied entitlement.Applied
	// link is what the run did with a verified Discord account, nil when
	// it did nothing.
	link *discordOutcome
	// owner is the run's lease, "" when it took none.
	owner string
	// seen: applied is what Luarmor answered or was sent under the lease,
	// not the state read with the ledger (postgres.AppliedRecord.Read).
	seen bool
	// keepLease: the run's lease stays (postgres.AppliedRecord.KeepLease).
	keepLease bool
}

// record commits what was applied for the ledger's version with the job's
// completion, and queues the writer again when the ledger changed since
// it was read: River refuses a second copy while this one runs, so a
// change recorded meanwhile would otherwise wait for the next.
//
// The Discord link is recorded with the rest. A key that waits to be
// claimed before Luarmor keeps its expiry (AwaitingClaim) is claimed by
// the link, so its writer runs again to send that expiry.
func (w *SyncKeyWorker) record(ctx context.Context, job *river.Job[SyncKeyArgs], l *postgres.Ledger, d entitlement.Desired, r recorded) error {
	a, link := r.applied, r.link
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	stale, reverted, err := w.recordApplied(ctx, tx, l, d, r)
	var held *postgres.LedgerLeaseHeldError
	if errors.As(err, &held) {
		// Another writer is sending to the key: what it sends is recorded
		// by it, and this run derives again once it is done.
		return river.JobSnooze(min(max(time.Until(held.Until), 0), time.Second) + 250*time.Millisecond)
	}
	if errors.Is(err, postgres.ErrLedgerLeaseLost) {
		// This run's lease ran out and another writer took the key: that
		// one records what Luarmor holds; this one derives again after.
		return river.JobSnooze(time.Second)
	}
	if err != nil {
		return err
	}
	if link != nil {
		if err := postgres.RecordDiscordApplied(ctx, tx, l.ID, link.Verification, link.Linked, link.Refused); err != nil {
			return err
		}
		stale = stale || (link.Linked != "" && a.AwaitingClaim)
	}
	// Not complete(): the copy below is inserted after the completion, in
	// the same transaction, or River's uniqueness would still see this job
	// running and refuse it.
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	if stale {
		if err := insertMany(ctx, tx, SyncKeyArgs{LedgerKeyID: l.ID, Urgent: job.Args.Urgent}); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.countReverted(reverted)
	return nil
}

// recordSent records the access a run sent (applied) when the run fails
// after it, without completing the job: its retry has only the rest left
// to do. keepLease keeps the run's lease for a request still settling.
// Should the record fail, the Intent still covers what was sent, so the
// retry finds it in Luarmor: the failure is logged, not returned, so that
// the run's own error decides its retry.
func (w *SyncKeyWorker) recordSent(ctx context.Context, l *postgres.Ledger, d entitlement.Desired, applied entitlement.Applied, owner string, keepLease bool) {
	ctx = context.WithoutCancel(ctx)
	var reverted int
	err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		var err error
		_, reverted, err = w.recordApplied(ctx, tx, l, d, recorded{applied: applied, owner: owner, seen: true, keepLease: keepLease})
		return err
	})
	if err != nil {
		w.Logger.WarnContext(ctx, "could not record what was sent to a key before its run failed; its retry reads the key again",
			"ledger_key_id", l.ID, "user_key", logging.MaskKey(l.UserKey), "error", err)
		return
	}
	w.countReverted(reverted)
}

// recordApplied records r for the ledger's version read (l), in tx.
func (w *SyncKeyWorker) recordApplied(ctx context.Context, tx pgx.Tx, l *postgres.Ledger, d entitlement.Desired, r recorded) (stale bool, reverted int, err error) {
	rec := postgres.AppliedRecord{Version: l.Version, Applied: r.applied, Owner: r.owner, KeepLease: r.keepLease,
		SuspendedOnly: d.Ban == entitlement.BanSuspended && !suspendedByGrant(l.Grants)}
	if !r.seen {
		rec.Read = &l.Applied
	}
	return postgres.RecordApplied(ctx, tx, l.ID, rec)
}

// countReverted counts units newly reverted, once their status committed.
func (w *SyncKeyWorker) countReverted(reverted int) {
	for range reverted {
		w.Metrics.KeyRevoked(metrics.RevokedExtension)
	}
}

func suspendedByGrant(gs []entitlement.Grant) bool {
	for _, g := range gs {
		if g.State == entitlement.Suspended {
			return true
		}
	}
	return false
}

// syncUnits queues the writer of every key the given units hold, in tx:
// call it after changing their grants or facts.
func syncUnits(ctx context.Context, tx pgx.Tx, unitIDs ...int64) error {
	return queueSync(ctx, tx, false, unitIDs)
}

// syncUnitsUrgently is syncUnits for a change that takes access away or
// gives it back (see SyncKeyArgs.Urgent).
func syncUnitsUrgently(ctx context.Context, tx pgx.Tx, unitIDs ...int64) error {
	return queueSync(ctx, tx, true, unitIDs)
}

func queueSync(ctx context.Context, tx pgx.Tx, urgent bool, unitIDs []int64) error {
	keys, err := postgres.LedgerKeysOfUnits(ctx, tx, unitIDs)
	if err != nil {
		return err
	}
	args := make([]river.JobArgs, len(keys))
	for i, id := range keys {
		args[i] = SyncKeyArgs{LedgerKeyID: id, Urgent: urgent}
	}
	return insertMany(ctx, tx, args...)
}

// takesBack reports whether d gives the key less time than was last
// applied: a revocation, a period that ended. An applied state that was
// not an absolute expiry (waiting for first use, never expiring) is taken
// as the ledger's own, so the key follows the ledger; an unknown one (a
// key just made, not read back yet) takes nothing back: time Luarmor
// holds beyond the ledger's was given outside it.
func takesBack(a entitlement.Applied, d entitlement.Desired) bool {
	return a.Lifetime || a.WaitingDays > 0 || (a.Expire != 0 && a.Expire > d.Expire)
}
