// Package entitlement is the ledger of paid time behind every Luarmor key
// the service manages: rows of grants, each what one payment (a one-time
// unit's key_days, a lifetime unit, a subscription period paid by an
// invoice or a trial, a support grant) entitles, and each grant's state.
// A key's desired state in Luarmor (waiting for first use with key_days,
// an absolute expiry, or never expiring; banned or not, and why) is a pure
// function of its grants and a few facts about the key: Derive. No I/O
// happens here; internal/keysync applies what Derive says, one writer per
// key.
//
// The rules, each with its case in TestDerive:
//
//  1. Days paid by different payments add up, whatever order they arrive
//     in and whatever billing model they come from. Each counted grant is
//     a credit of time available from a moment (a one-time unit: when it
//     was paid, or the key's first use if later; a subscription period: its
//     start). From the key's start the credits are laid end to end in the
//     order of those moments; a credit available only after the key had
//     run out starts then (the lapse is not back-filled).
//  2. Periods of one subscription are one timeline: Stripe's periods of one
//     subscription already account for proration, so overlapping periods
//     of the same subscription merge instead of adding up (monthly moved to
//     yearly mid-period pays the year less the unused month).
//  3. A subscription period covers what was paid for plus the grace
//     (RENEWAL_GRACE), added once at the end.
//  4. A lifetime grant makes the key never expire while it counts.
//  5. Revoking one payment's grant takes back exactly what it granted:
//     Derive without it. Never another payment's days. A key whose derived
//     expiry has passed is expired: an expiry in the past is never set below
//     the moment it is applied (Same treats every past expiry alike).
//  6. A ban is the policy's answer to fraud: a banned grant (a chargeback,
//     an early fraud warning acted on) bans the key for good; a support ban
//     or revocation likewise, whatever the grants, until support lifts it;
//     a support revocation under REFUND_ACTION=delete deletes the key. A suspended grant (a dispute inquiry, a renewal past due
//     under PAST_DUE_ACTION=suspend) blacklists the key until it is lifted,
//     and keeps counting its time.
//  7. A key left with no counted grant, and at least one revoked, gets the
//     revocation's action (REFUND_ACTION): blacklisted or deleted. A key
//     other payments still hold only loses the revoked days.
//  8. A key whose timer has not started keeps waiting with key_days as long
//     as the days it is owed equal the key_days it holds; otherwise (days
//     added or taken back, a period granted) its clock must start: Derive
//     asks for activation and the writer records the moment before acting.
//  9. A key carries the Discord account its buyer verified (Discord's
//     OAuth2, never a Discord ID typed at checkout): each verification is
//     applied once, so a link changed since (by support, in the dashboard,
//     through Luarmor's bot) stands until the buyer verifies again. A key
//     to be deleted carries none; a banned one keeps it (a link gives no
//     access). Which key of an order carries it, and which order holds an
//     account verified on several, the ledger's reader decides (Facts).
package entitlement

import (
	"cmp"
	"slices"
)

// Kind is what a grant entitles.
type Kind string

const (
	// KindDays: a number of days of use, from when they were paid or from
	// the key's first use, whichever is later.
	KindDays Kind = "days"
	// KindLifetime: the key never expires.
	KindLifetime Kind = "lifetime"
	// KindPeriod: a subscription period paid for (or a trial), from From
	// to To, on the timeline of its subscription (Line).
	KindPeriod Kind = "period"
)

// State is a grant's standing.
type State string

const (
	// Active: paid and standing.
	Active State = "active"
	// Revoked: the payment was taken back (a refund): its time is gone.
	Revoked State = "revoked"
	// Banned: fraud (a chargeback, an early fraud warning acted on): the
	// key is banned for good.
	Banned State = "banned"
	// Suspended: under review (a dispute inquiry): the key is blacklisted
	// until the grant is active again; its time still counts.
	Suspended State = "suspended"
	// Ended: time that was never paid for and is no longer given (the
	// access kept while a renewal was being collected, once Stripe gave
	// up). It counts for nothing and, unlike a revocation, bans nothing.
	Ended State = "ended"
)

// Action is what a revocation does to a key left with nothing.
type Action string

const (
	ActionBlacklist Action = "blacklist"
	ActionDelete    Action = "delete"
)

const day = 86400

// Grant is one row of a key's ledger.
type Grant struct {
	ID   int64
	Kind Kind
	// Days is the length of a KindDays grant.
	Days int
	// From is, for KindDays, when it was paid (unix seconds); for
	// KindPeriod, the period's start.
	From int64
	// To is the end of a KindPeriod grant (unix seconds), without grace.
	To int64
	// Line is the timeline a period belongs to: its subscription's ID.
	Line  string
	State State
	// Reason is shown to the key's user while the grant bans or suspends
	// the key, or when its revocation blacklists it.
	Reason string
	// Action is what a Revoked grant does to a key it leaves with nothing.
	Action Action
}

// counts reports whether the grant's time counts towards the key's expiry.
func (g Grant) counts() bool { return g.State == Active || g.State == Suspended }

// Facts are what the ledger knows about the key itself.
type Facts struct {
	// StartedAt is when the key's clock started (its first use, or the
	// moment the writer made it absolute), unix seconds; nil while its
	// key_days timer waits for first use.
	StartedAt *int64
	// WaitingDays is the key_days the key holds while it waits for first
	// use (what it was created with).
	WaitingDays int
	// SupportBan is the reason support banned or revoked the key; empty
	// when not.
	SupportBan string
	// SupportDelete: support revoked the key under REFUND_ACTION=delete;
	// it holds with SupportBan.
	SupportDelete bool
	// Suspension is the reason the key is suspended while its
	// subscription's renewal is unpaid (PAST_DUE_ACTION=suspend); empty
	// when not.
	Suspension string
	// Discord is the verified Discord account the key is to carry; the
	// zero value when none is.
	Discord Discord
}

// Discord is a Discord account a buyer verified for a key.
type Discord struct {
	// ID is the account's snowflake.
	ID string
	// Verification numbers the verification, so that each is applied
	// once: a later one of the same account is another.
	Verification int64
}

// Policy is what the shop decided that the derivation depends on.
type Policy struct {
	// GraceSeconds is added once to the end of subscription time
	// (RENEWAL_GRACE).
	GraceSeconds int64
}

// Ban says whether a key must be blacklisted.
type Ban string

const (
	NotBanned Ban = ""
	// BanSuspended: blacklisted until the grant that suspends it stands again.
	BanSuspended Ban = "suspended"
	// BanPermanent: blacklisted for good (fraud, support, a refund's action).
	BanPermanent Ban = "banned"
)

// Desired is a key's state as its ledger says it must be.
type Desired struct {
	// Unknown: the ledger holds no grant for the key; nothing to apply.
	Unknown bool
	// Delete: the key must be deleted (REFUND_ACTION=delete on the last
	// payment holding it, or on support's revocation).
	Delete bool
	// Lifetime: never expires.
	Lifetime bool
	// WaitingDays > 0: the key waits for first use with that many days.
	WaitingDays int
	// Expire is the absolute expiry (unix seconds) when neither Lifetime
	// nor WaitingDays is set.
	Expire int64
	// Start asks the writer to start the key's clock (record StartedAt as
	// now) and derive again: the owed time cannot be expressed while the
	// key waits for first use.
	Start bool
	// Began is when the key's time began, for an absolute Expire: the
	// key's recorded start, or its earliest period's. The writer records
	// it as the key's start once it sets an absolute expiry, so a later
	// derivation without those periods still counts from it.
	Began     int64
	Ban       Ban
	BanReason string
	// Discord is the verified account the key must carry (rule 9); the
	// zero value when none.
	Discord Discord
}

// Derive computes a key's desired state from its grants (in any order),
// the key's facts and the policy. It is deterministic: the same set of
// grants gives the same state whatever order they were recorded in.
func Derive(grants []Grant, f Facts, p Policy) Desired {
	d := derive(grants, f, p)
	if !d.Unknown && !d.Delete {
		d.Discord = f.Discord
	}
	return d
}

func derive(grants []Grant, f Facts, p Policy) Desired {
	if len(grants) == 0 {
		return Desired{Unknown: true}
	}
	if f.SupportBan != "" && f.SupportDelete {
		return Desired{Delete: true}
	}
	gs := slices.Clone(grants)
	slices.SortFunc(gs, func(a, b Grant) int { return cmp.Compare(a.ID, b.ID) })

	var d Desired
	counted := gs[:0:0]
	var revoked *Grant
	for i, g := range gs {
		switch {
		case g.counts():
			counted = append(counted, g)
		case g.State == Revoked && revoked == nil:
			revoked = &gs[i]
		}
	}
	d.Ban, d.BanReason = ban(gs, f)
	if len(counted) == 0 {
		if revoked != nil && d.Ban != BanPermanent {
			if revoked.Action == ActionDelete {
				return Desired{Delete: true}
			}
			d.Ban, d.BanReason = BanPermanent, revoked.Reason
		}
		// Nothing paid stands: the key is over now.
		d.Expire = expiredAt(gs, f)
		return d
	}
	for _, g := range counted {
		if g.Kind == KindLifetime {
			d.Lifetime = true
			return d
		}
	}
	days, periods := 0, false
	for _, g := range counted {
		switch g.Kind {
		case KindDays:
			days += g.Days
		case KindPeriod:
			periods = true
		}
	}
	// A key that waits for first use (or never had a timer and holds no
	// period) has no beginning yet: it keeps waiting, or its clock starts
	// now. A period granted to a waiting key starts it too: once the key
	// is set to an absolute expiry, Luarmor no longer tells its first use
	// from that expiry, so the beginning must be on record.
	if f.StartedAt == nil && (!periods || f.WaitingDays > 0) {
		if !periods && days == f.WaitingDays && days > 0 {
			d.WaitingDays = days
			return d
		}
		d.Start = true
		return d
	}
	d.Began = start(counted, f)
	d.Expire = lay(counted, d.Began, p)
	return d
}

// ban is the ban the grants and facts call for, if any: support's and
// fraud's bans first, then suspensions.
func ban(gs []Grant, f Facts) (Ban, string) {
	if f.SupportBan != "" {
		return BanPermanent, f.SupportBan
	}
	for _, g := range gs {
		if g.State == Banned {
			return BanPermanent, g.Reason
		}
	}
	for _, g := range gs {
		if g.State == Suspended {
			return BanSuspended, g.Reason
		}
	}
	if f.Suspension != "" {
		return BanSuspended, f.Suspension
	}
	return NotBanned, ""
}

// start is when the key's time begins: its recorded start, or for a key
// that never waited for first use (a subscription's own key), its
// earliest counted period.
func start(counted []Grant, f Facts) int64 {
	if f.StartedAt != nil {
		return *f.StartedAt
	}
	first := int64(0)
	for _, g := range counted {
		if g.Kind == KindPeriod && (first == 0 || g.From < first) {
			first = g.From
		}
	}
	return first
}

// credit is time available from a moment.
type credit struct {
	from, length int64
	order        int64 // the grant's ID, for a fixed order among equals
}

// lay lays the counted grants' credits end to end from start and returns
// the expiry (rules 1 to 3).
func lay(counted []Grant, begin int64, p Policy) int64 {
	var credits []credit
	lines := map[string][]Grant{}
	var lineOrder []string
	for _, g := range counted {
		switch g.Kind {
		case KindDays:
			credits = append(credits, credit{from: max(g.From, begin), length: int64(g.Days) * day, order: g.ID})
		case KindPeriod:
			if _, ok := lines[g.Line]; !ok {
				lineOrder = append(lineOrder, g.Line)
			}
			lines[g.Line] = append(lines[g.Line], g)
		}
	}
	for _, line := range lineOrder {
		credits = append(credits, merge(lines[line])...)
	}
	slices.SortFunc(credits, func(a, b credit) int {
		return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.order, b.order))
	})
	cursor := begin
	for _, c := range credits {
		cursor = max(cursor, c.from) + c.length
	}
	if len(lines) > 0 {
		cursor += p.GraceSeconds
	}
	return cursor
}

// merge turns the periods of one subscription into the disjoint stretches
// they cover (rule 2).
func merge(periods []Grant) []credit {
	ps := slices.Clone(periods)
	slices.SortFunc(ps, func(a, b Grant) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.ID, b.ID)) })
	var out []credit
	for _, g := range ps {
		if g.To <= g.From {
			continue
		}
		if n := len(out); n > 0 && g.From <= out[n-1].from+out[n-1].length {
			last := &out[n-1]
			last.length = max(last.length, g.To-last.from)
			continue
		}
		out = append(out, credit{from: g.From, length: g.To - g.From, order: g.ID})
	}
	return out
}

// expiredAt is the expiry of a key nothing paid holds any more: the start
// of its time, so it reads as run out (and Same treats it as any past
// expiry).
func expiredAt(gs []Grant, f Facts) int64 {
	if f.StartedAt != nil {
		return *f.StartedAt
	}
	first := int64(0)
	for _, g := range gs {
		if first == 0 || (g.From > 0 && g.From < first) {
			first = g.From
		}
	}
	return first
}

// Applied is what the writer last set in Luarmor.
type Applied struct {
	Deleted     bool
	Lifetime    bool
	WaitingDays int
	Expire      int64
	Ban         Ban
	BanReason   string
	// AwaitingClaim: Luarmor kept the absolute expiry sent to the key,
	// unclaimed (no HWID, no Discord ID), as key_days (WaitingDays); it is
	// sent again once the key is claimed, or once the expiry it stands for
	// (Expire) moves.
	AwaitingClaim bool
	// DiscordVerification is the verification of a Discord account the
	// writer last acted on (rule 9): linked, or refused by Luarmor.
	DiscordVerification int64
}

// Same reports whether Luarmor's key, as last applied, already is in the
// desired state at now: equal, or both expiries in the past (an expired key
// is expired whatever moment it ran out; rule 5), with no verified Discord
// account left to link (rule 9).
func Same(a Applied, d Desired, now int64) bool {
	if d.Unknown {
		return true
	}
	if d.Delete || a.Deleted {
		return d.Delete == a.Deleted
	}
	return !DiscordDue(a, d) && SameAccess(a, d, now)
}

// SameAccess is Same about the key's access alone, its time and its ban,
// whatever is left to do about its Discord link.
func SameAccess(a Applied, d Desired, now int64) bool {
	if d.Unknown {
		return true
	}
	if d.Delete || a.Deleted {
		return d.Delete == a.Deleted
	}
	if a.Ban != d.Ban || (d.Ban != NotBanned && a.BanReason != d.BanReason) {
		return false
	}
	// A key banned for good has no use for its time: it is set again
	// when the ban is lifted.
	return d.Ban == BanPermanent || SameTime(a, d, now)
}

// DiscordDue reports whether the key's verified Discord account is still
// to be linked: a verification the writer has not acted on (rule 9).
func DiscordDue(a Applied, d Desired) bool {
	return d.Discord.Verification != 0 && a.DiscordVerification != d.Discord.Verification
}

// SameTime reports whether the applied expiry already is the desired one.
func SameTime(a Applied, d Desired, now int64) bool {
	switch {
	case !a.Lifetime && a.WaitingDays == 0 && a.Expire == 0:
		return false // not known yet: read the key
	case d.Lifetime || a.Lifetime:
		return d.Lifetime == a.Lifetime
	case d.WaitingDays > 0 || a.WaitingDays > 0:
		return d.WaitingDays == a.WaitingDays
	case d.Expire <= now && a.Expire <= now:
		return true
	}
	return d.Expire == a.Expire
}

// ExpireToSend is the absolute expiry to send for d at now: never below
// now, since time already used cannot be taken back and Luarmor's key is
// over the moment it is set (rule 5).
func ExpireToSend(d Desired, now int64) int64 {
	if d.Lifetime {
		return -1
	}
	return max(d.Expire, now)
}
