package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/order"
)

// The entitlement ledger's SQL (migration 0022). Grants belong to units;
// a Luarmor key's ledger is the grants of every unit holding it. Triggers
// bump a key's version on every change to its grants or its units' facts,
// so its writer (jobs.SyncKeyWorker) knows when what it applied is stale.

// addLineGrants records the grant of each unit of a line just added: a
// one-time unit's days (or lifetime) from when it was paid, a recurring
// unit's paid period. source names the payment ("unit", or for a period
// the invoice that paid it). A repeated call adds nothing.
func addLineGrants(ctx context.Context, tx pgx.Tx, sessionID string, l order.Line, subscriptionID, source string) error {
	kind, days, from, to, line := entitlement.KindDays, l.KeyDays, l.PaidAt, int64(0), ""
	switch {
	case l.Recurring:
		kind, days, from, to, line = entitlement.KindPeriod, 0, l.Period.Start, l.Period.End, subscriptionID
	case l.KeyDays == 0:
		kind = entitlement.KindLifetime
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO key_grants (order_key_id, source, kind, days, valid_from, valid_to, line)
		SELECT id, $3, $4, $5, $6, $7, $8 FROM order_keys
		WHERE checkout_session_id = $1 AND line_item_id = $2
		ON CONFLICT (order_key_id, source) DO NOTHING`,
		sessionID, l.LineItemID, source, kind, days, from, to, line)
	if err != nil {
		return fmt.Errorf("recording what the units of order %s were paid for: %w", sessionID, err)
	}
	return nil
}

// periodSource names the payment of a subscription period.
func periodSource(invoiceID string) string {
	if invoiceID == "" {
		return "invoice:checkout"
	}
	return "invoice:" + invoiceID
}

// RecordRenewalLines stores the paid lines of a subscription invoice once.
func RecordRenewalLines(ctx context.Context, tx pgx.Tx, invoiceID string, lines []order.RenewalLine) error {
	for _, l := range lines {
		_, err := tx.Exec(ctx, `INSERT INTO renewal_lines (invoice_id, price_id, quantity, period_start, period_end)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (invoice_id, price_id) DO NOTHING`,
			invoiceID, l.PriceID, l.Quantity, l.Period.Start, l.Period.End)
		if err != nil {
			return fmt.Errorf("recording the lines of invoice %s: %w", invoiceID, err)
		}
	}
	return nil
}

var grantRenewalsSQL = lookup("GrantRenewals", `
		INSERT INTO key_grants (order_key_id, source, kind, valid_from, valid_to, line, state, reason, action, revocation_id)
		SELECT u.id, 'invoice:' || l.invoice_id, 'period', l.period_start, l.period_end, $1,
		       CASE WHEN v.id IS NULL THEN 'active'
		            WHEN v.inquiry THEN 'suspended'
		            WHEN v.source = 'refund' OR v.action = 'delete' THEN 'revoked'
		            ELSE 'banned' END,
		       COALESCE(v.reason, ''),
		       CASE WHEN v.id IS NOT NULL AND (v.source = 'refund' OR v.action = 'delete') AND NOT v.inquiry THEN v.action ELSE '' END,
		       v.id
		FROM renewal_lines l
		JOIN renewals r ON r.invoice_id = l.invoice_id AND r.subscription_id = $1
		LEFT JOIN LATERAL (
			SELECT id, source, action, reason, inquiry FROM revocations
			WHERE invoice_id = l.invoice_id AND status = 'active' AND action <> 'none'
			ORDER BY id LIMIT 1
		) v ON true
		CROSS JOIN LATERAL (
			SELECT k.id FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE o.subscription_id = $1 AND k.recurring AND k.price_id = l.price_id
			  AND (NOT k.ending OR EXISTS (SELECT 1 FROM key_grants g WHERE g.order_key_id = k.id AND g.source = 'invoice:' || l.invoice_id))
			ORDER BY k.id LIMIT l.quantity
		) u
		ON CONFLICT (order_key_id, source) DO NOTHING
		RETURNING order_key_id`)

// GrantRenewals gives the subscription's units the periods its invoices
// paid: each paid line's period to as many of the price's units as it
// paid seats, oldest first, among the units still part of the
// subscription. A unit that left it keeps what was paid before. Whatever
// order invoices and units arrive in, each unit ends with the same grants.
// It returns the units that got a new grant.
func GrantRenewals(ctx context.Context, tx pgx.Tx, subscriptionID string) ([]int64, error) {
	// A period whose payment was taken back before it was granted (the
	// refund or dispute arrived first) is granted as its revocation left
	// it, with the revocation's mark, so lifting it restores the grant.
	rows, err := tx.Query(ctx, grantRenewalsSQL, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("granting the paid periods of subscription %s: %w", subscriptionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// GrantCollecting records, or stretches, the access a subscription's
// current units keep while Stripe still collects a renewal
// (PAST_DUE_ACTION=keep): a period from the end of what was paid until
// until. It returns the units whose grant changed.
func GrantCollecting(ctx context.Context, tx pgx.Tx, subscriptionID string, paidEnd, until int64) ([]int64, error) {
	if until <= paidEnd {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO key_grants AS g (order_key_id, source, kind, valid_from, valid_to, line)
		SELECT k.id, 'collecting', 'period', $2, $3, $1
		FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE o.subscription_id = $1 AND k.recurring AND NOT k.ending AND k.status IN ('pending', 'active')
		ON CONFLICT (order_key_id, source) DO UPDATE SET
			valid_from = LEAST(g.valid_from, EXCLUDED.valid_from), valid_to = EXCLUDED.valid_to,
			state = 'active', updated_at = now()
		WHERE g.valid_to < EXCLUDED.valid_to OR g.state <> 'active'
		RETURNING g.order_key_id`, subscriptionID, paidEnd, until)
	if err != nil {
		return nil, fmt.Errorf("keeping subscription %s's keys while Stripe collects: %w", subscriptionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// EndCollecting ends the access kept while a renewal was collected: Stripe
// gave up, or the renewal was paid (its period then stands on its own).
func EndCollecting(ctx context.Context, tx pgx.Tx, subscriptionID string) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		UPDATE key_grants g SET state = 'ended', updated_at = now()
		FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE g.order_key_id = k.id AND o.subscription_id = $1 AND g.source = 'collecting' AND g.state = 'active'
		RETURNING g.order_key_id`, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("ending the access kept for subscription %s: %w", subscriptionID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// GrantSeat gives units added to a subscription, from p.Start, the time
// its units hold now: up to the latest end of the periods its payments
// still stand for (a refunded invoice's period, or the access kept while
// a renewal was collected, is not paid time). A seat is not given a
// period only because an invoice paid it: that invoice's lines grant it
// (GrantRenewals), and its refund takes it back whichever of the invoice
// and the change was handled first. p.End is the end when the
// subscription has no period recorded yet. Units that hold a grant
// already are left as they are.
func GrantSeat(ctx context.Context, tx pgx.Tx, sessionID, lineItemID string, p order.Period, subscriptionID string) error {
	_, err := tx.Exec(ctx, `
		WITH held AS (
			SELECT max(g.valid_to) FILTER (WHERE g.state IN ('active', 'suspended') AND g.source <> 'collecting') AS paid,
			       count(*) > 0 AS recorded
			FROM key_grants g
			JOIN order_keys k ON k.id = g.order_key_id
			JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE o.subscription_id = $5 AND g.kind = 'period' AND g.line = $5
		)
		INSERT INTO key_grants (order_key_id, source, kind, valid_from, valid_to, line, state)
		SELECT k.id, 'seat', 'period', $3,
		       -- Every period taken back: the seat was paid for by nothing.
		       CASE WHEN held.paid IS NOT NULL THEN held.paid WHEN held.recorded THEN $3 ELSE $4 END, $5,
		       CASE WHEN held.paid IS NULL AND held.recorded THEN 'ended' ELSE 'active' END
		FROM order_keys k, held
		WHERE k.checkout_session_id = $1 AND k.line_item_id = $2
		  AND NOT EXISTS (SELECT 1 FROM key_grants g WHERE g.order_key_id = k.id)
		ON CONFLICT (order_key_id, source) DO NOTHING`, sessionID, lineItemID, p.Start, p.End, subscriptionID)
	if err != nil {
		return fmt.Errorf("granting the added seats of order %s: %w", sessionID, err)
	}
	return nil
}

// RevokeGrants sets the grants a revocation takes (a refund: revoked, with
// its action; a chargeback or fraud warning: banned; an inquiry:
// suspended) on the given units: every grant of each unit, or with
// invoiceID only the period that invoice paid. Grants another revocation
// already holds are left to it. It returns the units whose grants changed.
func RevokeGrants(ctx context.Context, tx pgx.Tx, unitIDs []int64, r *order.Revocation, state entitlement.State, action entitlement.Action, invoiceID string) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		UPDATE key_grants SET state = $2, reason = $3, action = $4, revocation_id = $5, updated_at = now()
		WHERE order_key_id = ANY($1) AND state IN ('active', 'suspended')
		  AND ($6 = '' OR source = 'invoice:' || $6)
		  AND (state = 'active' OR $2 = 'banned' OR revocation_id = $5)
		RETURNING order_key_id`, unitIDs, state, r.Reason, action, r.ID, invoiceID)
	if err != nil {
		return nil, fmt.Errorf("taking back the grants of revocation %d: %w", r.ID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// RestoreGrants gives back what a lifted revocation took: its grants stand
// again, unless keep says a ban stays (DISPUTE_WON_ACTION=keep).
func RestoreGrants(ctx context.Context, tx pgx.Tx, revocationID int64, keepBans bool) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		UPDATE key_grants SET state = 'active', reason = '', action = '', revocation_id = NULL, updated_at = now()
		WHERE revocation_id = $1 AND NOT ($2 AND state = 'banned')
		RETURNING order_key_id`, revocationID, keepBans)
	if err != nil {
		return nil, fmt.Errorf("restoring the grants of revocation %d: %w", revocationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// LedgerKeysOfUnits lists the ledger keys the given units hold (delivered
// units only), without repeats.
func LedgerKeysOfUnits(ctx context.Context, db DB, unitIDs []int64) ([]int64, error) {
	if len(unitIDs) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT l.id FROM ledger_keys l
		JOIN order_keys k ON k.project_id = l.project_id AND k.user_key = l.user_key
		WHERE k.id = ANY($1) ORDER BY l.id`, unitIDs)
	if err != nil {
		return nil, fmt.Errorf("finding the keys of units: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// UnitLedgerApplied reports whether the writer of the key a unit holds has
// applied every change of its ledger (true for a unit that holds no key
// the ledger knows: nothing is left to apply).
func UnitLedgerApplied(ctx context.Context, db DB, unitID int64) (bool, error) {
	var applied bool
	err := db.QueryRow(ctx, `SELECT COALESCE(bool_and(l.applied_version = l.version), true) FROM ledger_keys l
		JOIN order_keys k ON k.project_id = l.project_id AND k.user_key = l.user_key
		WHERE k.id = $1`, unitID).Scan(&applied)
	if err != nil {
		return false, fmt.Errorf("reading whether the ledger of order key %d is applied: %w", unitID, err)
	}
	return applied, nil
}

// EnsureLedgerKey records a Luarmor key delivered to a unit, with what its
// create (or the sale from stock) left in Luarmor, and returns its ledger
// ID. A key already recorded (a purchase that extended it) keeps its row.
func EnsureLedgerKey(ctx context.Context, tx pgx.Tx, projectID, userKey string, startedAt *int64, applied entitlement.Applied) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `
		INSERT INTO ledger_keys (project_id, user_key, started_at, waiting_days, applied_version,
		                         applied_lifetime, applied_waiting_days, applied_expire)
		VALUES ($1, $2, $3, $4, 0, $5, $4, $6)
		ON CONFLICT (project_id, user_key) DO UPDATE SET updated_at = ledger_keys.updated_at
		RETURNING id`, projectID, userKey, startedAt, applied.WaitingDays, applied.Lifetime, applied.Expire).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("recording a delivered key's ledger: %w", err)
	}
	return id, nil
}

// ReissuedStart is when the clock of the key a reissued unit replaces
// started (nil when it had not, or the unit is no replacement, or the
// stock replaced a key used before its sale: its buyer gets a fresh one):
// the new key runs on from the same start.
func ReissuedStart(ctx context.Context, db DB, unitID int64) (*int64, error) {
	var started *int64
	err := db.QueryRow(ctx, `SELECT l.started_at FROM key_reissues r
		JOIN order_keys o ON o.id = r.old_key_id
		JOIN ledger_keys l ON l.project_id = o.project_id AND l.user_key = o.user_key
		WHERE r.new_key_id = $1 AND r.requested_by <> 'stock'`, unitID).Scan(&started)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the start of the key unit %d replaces: %w", unitID, err)
	}
	return started, nil
}

// Ledger is one Luarmor key's ledger as its writer reads it.
type Ledger struct {
	ID        int64
	ProjectID string
	UserKey   string
	Version   int64
	Grants    []entitlement.Grant
	Facts     entitlement.Facts
	Applied   entitlement.Applied
	// AppliedVersion is the version of the ledger last applied.
	AppliedVersion int64
	// Intent is what writers sent to the key and did not record (see
	// RecordIntent).
	Intent Intent
}

// Intent is what a key's writers sent, or were about to send, to Luarmor
// since what was applied was last recorded (migration 0065): what Luarmor
// may hold that the applied state does not know. Each writer adds to it
// before its first request; the record of what was applied clears it.
type Intent struct {
	// Expires are the expiries sent (-1: never expires).
	Expires []int64
	// Ban: a ban was sent.
	Ban bool
	// Unban: an unban was sent. Only Pending reads it: a ban back in the
	// ledger with the reason last recorded looks applied, and only
	// Luarmor can tell that the unban went through.
	Unban bool
}

// Pending reports whether a value may have been sent and not recorded:
// the key's writer must then read the key from Luarmor before it may
// decide there is nothing to do.
func (i Intent) Pending() bool { return len(i.Expires) > 0 || i.Ban || i.Unban }

// SentExpire reports whether expire is an expiry a writer sent.
func (i Intent) SentExpire(expire int64) bool { return slices.Contains(i.Expires, expire) }

// ReadLedger reads a key's grants, facts and applied state. suspension is
// the reason shown while a unit's subscription is suspended for an unpaid
// renewal; supportBan the reason shown while support's ban holds it when
// none was recorded with it.
func ReadLedger(ctx context.Context, db DB, id int64, suspension, supportBan string) (*Ledger, error) {
	l := Ledger{ID: id}
	var ban string
	err := db.QueryRow(ctx, `SELECT project_id, user_key, version, applied_version, started_at, waiting_days,
			applied_deleted, applied_lifetime, applied_waiting_days, applied_expire, applied_ban, applied_ban_reason,
			awaiting_claim, applied_discord_verification, COALESCE(intent_expires, '{}'), intent_ban, intent_unban
		FROM ledger_keys WHERE id = $1`, id).Scan(&l.ProjectID, &l.UserKey, &l.Version, &l.AppliedVersion,
		&l.Facts.StartedAt, &l.Facts.WaitingDays, &l.Applied.Deleted, &l.Applied.Lifetime, &l.Applied.WaitingDays,
		&l.Applied.Expire, &ban, &l.Applied.BanReason, &l.Applied.AwaitingClaim, &l.Applied.DiscordVerification,
		&l.Intent.Expires, &l.Intent.Ban, &l.Intent.Unban)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.Errorf(order.ENOTFOUND, "no ledger key %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading ledger key %d: %w", id, err)
	}
	l.Applied.Ban = entitlement.Ban(ban)
	// Support's ban of any unit holding the key bans it, with the reason
	// of the oldest such unit; any of them revoked under delete deletes it.
	var supportReason *string
	var suspended bool
	if err := db.QueryRow(ctx, `SELECT
			(SELECT k.support_ban_reason FROM order_keys k WHERE k.project_id = $1 AND k.user_key = $2 AND k.support_ban
			 ORDER BY k.id LIMIT 1),
			EXISTS (SELECT 1 FROM order_keys k WHERE k.project_id = $1 AND k.user_key = $2 AND k.support_ban AND k.support_delete),
			EXISTS (SELECT 1 FROM order_keys k WHERE k.project_id = $1 AND k.user_key = $2 AND k.suspended AND k.recurring
			        AND NOT k.ending)`, l.ProjectID, l.UserKey).Scan(&supportReason, &l.Facts.SupportDelete, &suspended); err != nil {
		return nil, fmt.Errorf("reading the facts of ledger key %d: %w", id, err)
	}
	if supportReason != nil {
		l.Facts.SupportBan = cmp.Or(*supportReason, supportBan)
	}
	if suspended {
		l.Facts.Suspension = suspension
	}
	if l.Facts.Discord, err = DesiredDiscord(ctx, db, l.ProjectID, l.UserKey); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT g.id, g.kind, g.days, g.valid_from, g.valid_to, g.line, g.state, g.reason, g.action
		FROM key_grants g JOIN order_keys k ON k.id = g.order_key_id
		WHERE k.project_id = $1 AND k.user_key = $2 ORDER BY g.id`, l.ProjectID, l.UserKey)
	if err != nil {
		return nil, fmt.Errorf("reading the grants of ledger key %d: %w", id, err)
	}
	l.Grants, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (entitlement.Grant, error) {
		var g entitlement.Grant
		err := row.Scan(&g.ID, &g.Kind, &g.Days, &g.From, &g.To, &g.Line, &g.State, &g.Reason, &g.Action)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the grants of ledger key %d: %w", id, err)
	}
	return &l, nil
}

// AwaitingClaim reports whether the key a unit holds waits to be claimed
// before the expiry Luarmor kept as key_days is sent again.
func AwaitingClaim(ctx context.Context, db DB, unitID int64) (bool, error) {
	var awaiting bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_keys l JOIN order_keys k
		ON k.project_id = l.project_id AND k.user_key = l.user_key WHERE k.id = $1 AND l.awaiting_claim)`, unitID).Scan(&awaiting)
	if err != nil {
		return false, fmt.Errorf("reading whether the key of unit %d awaits its claim: %w", unitID, err)
	}
	return awaiting, nil
}

// KeysBeingWritten reports whether a key an order's units hold has ledger
// changes its writer has not applied yet.
func KeysBeingWritten(ctx context.Context, db DB, sessionID string) (bool, error) {
	var writing bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_keys l JOIN order_keys k
		ON k.project_id = l.project_id AND k.user_key = l.user_key
		WHERE k.checkout_session_id = $1 AND l.version <> l.applied_version)`, sessionID).Scan(&writing)
	if err != nil {
		return false, fmt.Errorf("checking the keys of order %s: %w", sessionID, err)
	}
	return writing, nil
}

// RecordKeyStart records when a key's clock started, once.
func RecordKeyStart(ctx context.Context, db DB, id, at int64) error {
	_, err := db.Exec(ctx, `UPDATE ledger_keys SET started_at = COALESCE(started_at, $2), updated_at = now() WHERE id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("recording the start of ledger key %d: %w", id, err)
	}
	return nil
}

// LedgerLeaseHeldError: another writer of the key may have a request on its
// way until Until.
type LedgerLeaseHeldError struct{ Until time.Time }

func (e *LedgerLeaseHeldError) Error() string {
	return "another writer of the key holds its lease until " + e.Until.Format(time.RFC3339)
}

// TakeLedgerLease gives owner the key's lease for d, unless another owner
// holds it: then *LedgerLeaseHeldError. Taken again before every request.
func TakeLedgerLease(ctx context.Context, db DB, id int64, owner string, d time.Duration) error {
	var holder string
	var until time.Time
	err := db.QueryRow(ctx, `
		UPDATE ledger_keys SET lease_owner = $2, lease_until = now() + $3::interval
		WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
		RETURNING lease_owner, lease_until`, id, owner, d).Scan(&holder, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := db.QueryRow(ctx, `SELECT lease_until FROM ledger_keys WHERE id = $1`, id).Scan(&until); err != nil {
			return fmt.Errorf("reading the lease of ledger key %d: %w", id, err)
		}
		return &LedgerLeaseHeldError{Until: until}
	}
	if err != nil {
		return fmt.Errorf("taking the lease of ledger key %d: %w", id, err)
	}
	return nil
}

// ErrLedgerLeaseLost: a writer's lease of a key ran out while it waited,
// and another writer took the key since. What it was about to send was
// decided before that writer's change: it sends nothing more and runs
// again.
var ErrLedgerLeaseLost = errors.New("the key's lease ran out while its writer waited, and another writer took the key since")

// RenewLedgerLease extends owner's lease for d, right before a request,
// only while owner still holds it: run out or not, so long as no other
// writer took it since (then ErrLedgerLeaseLost). TakeLedgerLease would
// take back a lease another writer took and let go meanwhile.
func RenewLedgerLease(ctx context.Context, db DB, id int64, owner string, d time.Duration) error {
	tag, err := db.Exec(ctx, `UPDATE ledger_keys SET lease_until = now() + $3::interval
		WHERE id = $1 AND lease_owner = $2`, id, owner, d)
	if err != nil {
		return fmt.Errorf("renewing the lease of ledger key %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLedgerLeaseLost
	}
	return nil
}

// RecordIntent records, before owner's first request to the key, what it
// is about to send: expire (nil when it sends none), whether a ban and
// whether an unban. It
// adds to what earlier writers recorded and did not clear (Intent), and
// is written only while owner holds the lease, run out or not, so long as
// no other writer took it since (else ErrLedgerLeaseLost): a writer that
// lost the key sends nothing. One short UPDATE, and only for a run that
// sends a value.
func RecordIntent(ctx context.Context, db DB, id int64, owner string, expire *int64, ban, unban bool) error {
	tag, err := db.Exec(ctx, `UPDATE ledger_keys SET
			intent_expires = CASE WHEN $3::bigint IS NULL OR $3 = ANY(COALESCE(intent_expires, '{}')) THEN intent_expires
			                      ELSE array_append(intent_expires, $3) END,
			intent_ban = intent_ban OR $4,
			intent_unban = intent_unban OR $5
		WHERE id = $1 AND lease_owner = $2`, id, owner, expire, ban, unban)
	if err != nil {
		return fmt.Errorf("recording what is about to be sent to ledger key %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLedgerLeaseLost
	}
	return nil
}

// ReleaseLedgerLease ends owner's lease, or shortens it to d when a
// request may still be settling.
func ReleaseLedgerLease(ctx context.Context, db DB, id int64, owner string, d time.Duration) error {
	_, err := db.Exec(ctx, `UPDATE ledger_keys SET
			lease_owner = CASE WHEN $3::interval = '0'::interval THEN NULL ELSE lease_owner END,
			lease_until = CASE WHEN $3::interval = '0'::interval THEN NULL ELSE LEAST(lease_until, now() + $3::interval) END
		WHERE id = $1 AND lease_owner = $2`, id, owner, d)
	if err != nil {
		return fmt.Errorf("releasing the lease of ledger key %d: %w", id, err)
	}
	return nil
}

// AppliedRecord is what a key's writer records with its completion.
type AppliedRecord struct {
	// Version is the ledger's version the writer derived from.
	Version int64
	// Applied is what the key now is in Luarmor.
	Applied entitlement.Applied
	// SuspendedOnly: the key's only ban is a suspension for non-payment
	// that no grant holds.
	SuspendedOnly bool
	// Read is the applied state the writer read with the ledger, set when
	// Applied is that state (the writer sent no access), nil when Applied
	// was read from Luarmor under the writer's lease.
	Read *entitlement.Applied
	// Owner is the writer's lease, "" when it holds none.
	Owner string
	// KeepLease keeps Owner's lease as it is: a request of the writer's
	// other than the access recorded (a Discord link) may still be on its
	// way.
	KeepLease bool
}

// RecordApplied records, in the writer's completing transaction, what was
// applied to the key for version, and what it means for every unit
// holding it: the key's expiry as the order API shows it (the same on
// every order), and each unit's status (deleted; blacklisted while the
// key is banned for a payment or by support; reverted when the unit's own
// grants were all taken back but others hold the key; active). It
// reports whether the ledger changed since version was read (the caller
// then runs the writer again) and how many units were newly reverted, and
// locks the key's row until commit.
//
// A writer that sent no access records the applied state it read with the
// ledger (rec.Read), not one it read from Luarmor under its lease. That
// state may be stale by now: another writer may have sent a ban since and
// recorded it. Recording the stale state over it would leave Luarmor's ban
// unrecorded, and no later run would lift it. So such a record is written
// only while the key's applied state is still what was read and no other
// writer holds the lease (one may be sending right now): otherwise nothing
// is written, the writer's own lease is let go, and the record is stale,
// so the writer runs again from what is recorded then; while another
// writer holds the lease, *LedgerLeaseHeldError. A value sent and not
// recorded (a pending Intent) makes it stale likewise: the state read
// does not say what Luarmor holds.
//
// A writer that read the key from Luarmor under its lease (rec.Read nil)
// records only while it still holds that lease: one whose lease another
// writer took gets ErrLedgerLeaseLost and writes nothing.
//
// Every record written clears the key's Intent: what was sent is recorded.
func RecordApplied(ctx context.Context, tx pgx.Tx, id int64, rec AppliedRecord) (stale bool, reverted int, err error) {
	version, a, suspendedOnly := rec.Version, rec.Applied, rec.SuspendedOnly
	var current int64
	var projectID, userKey string
	if err := tx.QueryRow(ctx, `SELECT project_id, user_key FROM ledger_keys WHERE id = $1`, id).
		Scan(&projectID, &userKey); err != nil {
		return false, 0, fmt.Errorf("reading ledger key %d: %w", id, err)
	}
	// Units first, then the key: the order in which a delivery or a grant's
	// change (through the triggers of migration 0022) takes them, so the
	// two never wait for each other.
	if _, err := tx.Exec(ctx, `SELECT id FROM order_keys WHERE project_id = $1 AND user_key = $2 ORDER BY id FOR UPDATE`,
		projectID, userKey); err != nil {
		return false, 0, fmt.Errorf("locking the units of ledger key %d: %w", id, err)
	}
	var now entitlement.Applied
	var ban string
	var leasedByOther, ownLease, intended bool
	var leaseUntil *time.Time
	if err := tx.QueryRow(ctx, `SELECT version, applied_deleted, applied_lifetime, applied_waiting_days, applied_expire,
			applied_ban, applied_ban_reason, awaiting_claim, applied_discord_verification,
			lease_owner IS NOT NULL AND lease_until > now() AND lease_owner <> $2, lease_until,
			lease_owner IS NOT DISTINCT FROM $2, intent_expires IS NOT NULL OR intent_ban OR intent_unban
		FROM ledger_keys WHERE id = $1 FOR UPDATE`, id, rec.Owner).Scan(&current, &now.Deleted, &now.Lifetime, &now.WaitingDays,
		&now.Expire, &ban, &now.BanReason, &now.AwaitingClaim, &now.DiscordVerification, &leasedByOther, &leaseUntil,
		&ownLease, &intended); err != nil {
		return false, 0, fmt.Errorf("locking ledger key %d: %w", id, err)
	}
	now.Ban = entitlement.Ban(ban)
	if rec.Read == nil && rec.Owner != "" && !ownLease {
		// The writer's lease ran out and another writer took the key
		// since: that one read Luarmor after this one's requests had
		// ended, and records what it finds (clearing the Intent that
		// covers them). Written now, this record could be older than that
		// one's, and would end its lease while it sends.
		return false, 0, ErrLedgerLeaseLost
	}
	if rec.Read != nil {
		if leasedByOther {
			return false, 0, &LedgerLeaseHeldError{Until: *leaseUntil}
		}
		// A deleted key is final: nothing sent to it is left to check.
		if now != *rec.Read || (intended && !now.Deleted) {
			if rec.Owner != "" {
				if _, err := tx.Exec(ctx, `UPDATE ledger_keys SET lease_owner = NULL, lease_until = NULL
					WHERE id = $1 AND lease_owner = $2`, id, rec.Owner); err != nil {
					return false, 0, fmt.Errorf("ending the lease of ledger key %d: %w", id, err)
				}
			}
			return true, 0, nil
		}
	}
	_, err = tx.Exec(ctx, `UPDATE ledger_keys SET applied_version = $2, applied_deleted = $3, applied_lifetime = $4,
			applied_waiting_days = $5, applied_expire = $6, applied_ban = $7, applied_ban_reason = $8, awaiting_claim = $9,
			intent_expires = NULL, intent_ban = false, intent_unban = false,
			lease_owner = CASE WHEN $10 THEN lease_owner END, lease_until = CASE WHEN $10 THEN lease_until END,
			updated_at = now()
		WHERE id = $1`, id, version, a.Deleted, a.Lifetime, a.WaitingDays, a.Expire, a.Ban, a.BanReason, a.AwaitingClaim,
		rec.KeepLease)
	if err != nil {
		return false, 0, fmt.Errorf("recording what was applied to ledger key %d: %w", id, err)
	}
	if current != version {
		// The ledger changed while this was applied: the run that
		// follows sets the units' state from the ledger as it is now,
		// rather than this one's from what it read.
		return true, 0, nil
	}
	var expire *int64
	switch {
	case a.Lifetime:
		never := int64(-1)
		expire = &never
	case a.WaitingDays > 0:
	default:
		expire = &a.Expire
	}
	banned := a.Ban != entitlement.NotBanned && !suspendedOnly
	err = tx.QueryRow(ctx, `
		WITH before AS (
			SELECT id, status FROM order_keys WHERE project_id = $1 AND user_key = $2
		), after AS (
		UPDATE order_keys k SET auth_expire = $3, suspended_applied = ($6 AND k.suspended), updated_at = now(),
			status = CASE
				WHEN k.status NOT IN ('active', 'blacklisted', 'reverted', 'deleted') THEN k.status
				-- Support's ban or revocation stands until support lifts it:
				-- the unit shows what the writer applied for it.
				WHEN k.support_ban THEN CASE WHEN $4 THEN 'deleted' WHEN $5 THEN 'blacklisted' ELSE k.status END
				WHEN $4 THEN 'deleted'
				-- A unit whose payment was taken back before the last one
				-- holding the key shows its days taken back; the last one's
				-- revocation, the ban.
				WHEN $5 AND NOT EXISTS (SELECT 1 FROM key_grants g WHERE g.order_key_id = k.id AND g.state IN ('active', 'suspended', 'banned'))
				     AND (SELECT max(g.updated_at) FROM key_grants g WHERE g.order_key_id = k.id) <
				         (SELECT max(g.updated_at) FROM key_grants g JOIN order_keys o ON o.id = g.order_key_id
				          WHERE o.project_id = $1 AND o.user_key = $2)
				  THEN 'reverted'
				WHEN $5 THEN 'blacklisted'
				WHEN NOT EXISTS (SELECT 1 FROM key_grants g WHERE g.order_key_id = k.id AND g.state IN ('active', 'suspended'))
				     AND EXISTS (SELECT 1 FROM key_grants g WHERE g.order_key_id = k.id AND g.state IN ('revoked', 'banned'))
				  THEN 'reverted'
				ELSE 'active' END
		FROM before WHERE k.id = before.id
		RETURNING before.status AS was, k.status AS now
		)
		SELECT count(*) FILTER (WHERE was <> 'reverted' AND now = 'reverted') FROM after`,
		projectID, userKey, expire, a.Deleted, banned, a.Ban == entitlement.BanSuspended).Scan(&reverted)
	if err != nil {
		return false, 0, fmt.Errorf("recording the state of the units of ledger key %d: %w", id, err)
	}
	return false, reverted, nil
}

// The keys with a writer job live or given up lately are read once per
// run (MATERIALIZED, a few rows) and each unapplied key is looked up in
// them (a hashed NOT IN, so the set holds no NULL): checked per key, those
// jobs were read again for every key.
var stalledLedgerKeysSQL = lookup("StalledLedgerKeys", `
		WITH busy AS MATERIALIZED (
			SELECT DISTINCT (j.args->>'ledger_key_id')::bigint AS id FROM river_job j
			WHERE j.kind = $1 AND (j.state IN `+liveJobStates+`
			                       OR (j.state = 'discarded' AND j.finalized_at > now() - $3::interval))
			  AND j.args->>'ledger_key_id' IS NOT NULL
		)
		SELECT l.id FROM ledger_keys l
		WHERE l.version <> l.applied_version AND l.updated_at < now() - $2::interval
		  AND l.id NOT IN (SELECT id FROM busy)
		ORDER BY l.id LIMIT $4`)

// StalledLedgerKeys returns up to limit keys whose ledger changed more than
// quietFor ago and whose writer never applied it, with no writer job
// (syncKind) waiting or running, and none that gave up (discarded) within
// retryAfter. The writer never cancels itself, so a cancelled writer job
// was cancelled by hand (the River UI): that, or a job lost another way,
// must not leave the key as it was, or a refunded buyer's key would keep
// working.
func StalledLedgerKeys(ctx context.Context, db DB, syncKind string, quietFor, retryAfter time.Duration, limit int) ([]int64, error) {
	rows, err := db.Query(ctx, stalledLedgerKeysSQL, syncKind, quietFor, retryAfter, limit)
	if err != nil {
		return nil, fmt.Errorf("finding keys whose ledger was never applied: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("finding keys whose ledger was never applied: %w", err)
	}
	return ids, nil
}
