package order

import (
	"time"

	"fulfiller/internal/entitlement"
)

// What a key, and an order, are to the buyer: the one derivation the order
// page, the order API and the emails tell, from the key's status and what
// the entitlement ledger and support's records say of it (KeyStanding).
// A key "works" only in KeyStateActive and KeyStateEnding: nothing else is
// shown as ready, nor offered to copy.

// KeyState is a key's state as the buyer is told it.
type KeyState string

const (
	// KeyStateActive: the key works and is paid for.
	KeyStateActive KeyState = "active"
	// KeyStateEnding: the key works until its expiry and is renewed no
	// more (its subscription was cancelled, or it left it).
	KeyStateEnding KeyState = "ending"
	// KeyStateExpired: its time ran out.
	KeyStateExpired KeyState = "expired"
	// KeyStateSuspended: blacklisted until something is done (a renewal
	// paid) or decided (a dispute inquiry closed).
	KeyStateSuspended KeyState = "suspended"
	// KeyStateRevoked: taken back for good (a refund, a chargeback, an
	// early fraud warning, support).
	KeyStateRevoked KeyState = "revoked"
	// KeyStateReverted: this purchase only added days to a key another
	// purchase holds, and its days were taken back; the key still works
	// for that other purchase.
	KeyStateReverted KeyState = "reverted"
	// KeyStateReplaced: support reissued the key; the order's new key
	// replaces it and this one no longer works.
	KeyStateReplaced KeyState = "replaced"
	// KeyStatePending: not made yet, or Luarmor refused it; an order
	// whose keys are not all made yet.
	KeyStatePending KeyState = "pending"
	// StateFailed: an order that cannot be fulfilled without the shop.
	StateFailed KeyState = "failed"
)

// Works reports whether a key in state s can be used.
func (s KeyState) Works() bool { return s == KeyStateActive || s == KeyStateEnding }

// StateReason says why a key, or an order, is in its state.
type StateReason string

const (
	ReasonNone StateReason = ""
	// ReasonCancelled: the subscription was cancelled; it runs until the
	// end of what was paid.
	ReasonCancelled StateReason = "cancelled"
	// ReasonLeftSubscription: a seat was removed or the plan changed; the
	// key keeps what was paid.
	ReasonLeftSubscription StateReason = "left_subscription"
	// ReasonPastDue: the subscription's renewal is unpaid
	// (PAST_DUE_ACTION=suspend).
	ReasonPastDue StateReason = "past_due"
	// ReasonDisputeInquiry: the bank asked about the payment; the key is
	// suspended until the inquiry closes.
	ReasonDisputeInquiry StateReason = "dispute_inquiry"
	// ReasonRefund: the payment was refunded.
	ReasonRefund StateReason = "refund"
	// ReasonDispute: the payment was disputed (a chargeback).
	ReasonDispute StateReason = "dispute"
	// ReasonFraudWarning: the card network warned the payment was fraudulent.
	ReasonFraudWarning StateReason = "early_fraud_warning"
	// ReasonSupport: the shop's support banned or revoked the key.
	ReasonSupport StateReason = "support"
	// ReasonReissued: the shop's support replaced the key with a new one.
	ReasonReissued StateReason = "reissued"
	// ReasonFirstPaymentRefunded: the subscription's first payment (the
	// checkout's) was refunded and only the period it paid was taken
	// back; the renewals paid since hold the key.
	ReasonFirstPaymentRefunded StateReason = "first_payment_refunded"
	// ReasonRenewalRefunded: a renewal's payment was refunded and only the
	// period it paid was taken back; the other payments hold the key.
	ReasonRenewalRefunded StateReason = "renewal_refunded"
	// ReasonSomeKeys: an order some of whose keys work and some not.
	ReasonSomeKeys StateReason = "some_keys"
)

// Revocation sources as GrantStanding.TakenBy and OrderStanding.RevokedBy
// name them: a revocation's source, or "inquiry" for a dispute inquiry.
const (
	TakenByRefund       = "refund"
	TakenByDispute      = "dispute"
	TakenByFraudWarning = "early_fraud_warning"
	TakenByInquiry      = "inquiry"
)

// KeyStanding is what the entitlement ledger and support's records say of
// one unit's key, read with its order.
type KeyStanding struct {
	// Grants are the unit's own grants: what each payment gave it and
	// what became of it.
	Grants []GrantStanding
	// Replaced: support reissued the key and its replacement is
	// delivered. Replacement: this key replaced another.
	Replaced    bool
	Replacement bool
	// Shared: another order's unit holds the same Luarmor key (one
	// purchase extended the other's key). SharedWith is that order's
	// reference when it is the same buyer's, "" otherwise.
	Shared     bool
	SharedWith string
	// HWIDBound is whether the key was bound to a machine when the
	// service last read it from Luarmor; nil when never read, or reset
	// since.
	HWIDBound *bool
}

// GrantStanding is one grant of a unit as the buyer's state needs it.
type GrantStanding struct {
	State entitlement.State
	// TakenBy is what holds the grant when it is not active: a TakenBy*
	// constant, "" when nothing does.
	TakenBy string
	// Source is what paid for it: "unit", "invoice:<id>", "seat",
	// "collecting".
	Source string
}

// OrderStanding is what the buyer's state needs of the order itself.
type OrderStanding struct {
	// Cancelled: its subscription was cancelled (at the period's end, or
	// at once).
	Cancelled bool
	// RevokedBy is the TakenBy* of the revocation that revoked the order,
	// "" when none did.
	RevokedBy string
}

// BuyerState is a key's or an order's state for the buyer, and why.
type BuyerState struct {
	State  KeyState
	Reason StateReason
}

// KeyBuyerState derives what key k of order o is to its buyer at now.
func KeyBuyerState(o *Order, k Key, now time.Time) BuyerState {
	st := k.Standing
	switch {
	case st.Replaced:
		return BuyerState{KeyStateReplaced, ReasonReissued}
	case k.Status == KeyPending || k.Status == KeyFailed:
		return BuyerState{KeyStatePending, ReasonNone}
	case k.SupportBan:
		return BuyerState{KeyStateRevoked, ReasonSupport}
	case k.Status == KeyBlacklisted || k.Status == KeyDeleted:
		taken := takenReason(st.Grants)
		switch {
		case taken == ReasonDisputeInquiry:
			return BuyerState{KeyStateSuspended, taken}
		case taken == ReasonNone && k.Suspended:
			return BuyerState{KeyStateSuspended, ReasonPastDue}
		case taken == ReasonNone:
			taken = reasonOf(o.Standing.RevokedBy)
		}
		return BuyerState{KeyStateRevoked, taken}
	case k.Status == KeyReverted:
		return BuyerState{KeyStateReverted, takenReason(st.Grants)}
	case k.Suspended:
		return BuyerState{KeyStateSuspended, ReasonPastDue}
	case takenReason(st.Grants) == ReasonDisputeInquiry && !anyCounts(st.Grants, false):
		return BuyerState{KeyStateSuspended, ReasonDisputeInquiry}
	}
	ending := k.Ending || (k.Recurring && o.Standing.Cancelled)
	endingReason := ReasonLeftSubscription
	if o.Standing.Cancelled {
		endingReason = ReasonCancelled
	}
	switch {
	case k.AuthExpire != nil && *k.AuthExpire > 0 && *k.AuthExpire <= now.Unix():
		if ending {
			return BuyerState{KeyStateExpired, endingReason}
		}
		return BuyerState{KeyStateExpired, ReasonNone}
	case ending:
		return BuyerState{KeyStateEnding, endingReason}
	}
	if r := refundedPart(o, st.Grants); r != ReasonNone {
		return BuyerState{KeyStateActive, r}
	}
	return BuyerState{KeyStateActive, ReasonNone}
}

// OrderBuyerState derives what order o is to its buyer at now, from its
// status and its keys' states: each unit counted once (a reissued key's
// replacement stands for it).
func OrderBuyerState(o *Order, now time.Time) BuyerState {
	switch o.Status {
	case StatusPending:
		return BuyerState{KeyStatePending, ReasonNone}
	case StatusFailed:
		return BuyerState{StateFailed, ReasonNone}
	}
	var states []BuyerState
	for _, k := range o.Keys {
		if !k.Delivered() {
			continue
		}
		if s := KeyBuyerState(o, k, now); s.State != KeyStateReplaced {
			states = append(states, s)
		}
	}
	working := 0
	for _, s := range states {
		if s.State.Works() {
			working++
		}
	}
	switch {
	case len(states) == 0 && o.Status == StatusRevoked:
		return BuyerState{KeyStateRevoked, reasonOf(o.Standing.RevokedBy)}
	case len(states) == 0:
		return BuyerState{KeyStateActive, ReasonNone}
	case working > 0 && working < len(states):
		return BuyerState{KeyStateActive, ReasonSomeKeys}
	case working > 0:
		return worksTogether(states)
	}
	// Nothing works: the most hopeful state first (a suspension can be
	// lifted), then what the order's keys share.
	for _, want := range []KeyState{KeyStateSuspended, KeyStateReverted, KeyStateRevoked, KeyStateExpired} {
		for _, s := range states {
			if s.State == want {
				return s
			}
		}
	}
	return states[0]
}

// worksTogether is the state of an order every key of which works: ending
// when they all end, active otherwise, with a refunded payment named.
func worksTogether(states []BuyerState) BuyerState {
	out := BuyerState{KeyStateEnding, ReasonNone}
	for _, s := range states {
		if s.State != KeyStateEnding {
			out.State = KeyStateActive
		}
	}
	for _, s := range states {
		if s.State == out.State && s.Reason != ReasonNone {
			out.Reason = s.Reason
			break
		}
	}
	return out
}

// takenReason is why grants were taken: a chargeback or fraud warning
// first, then a refund, then an inquiry's suspension; ReasonNone when none
// was.
func takenReason(gs []GrantStanding) StateReason {
	best := ReasonNone
	rank := map[StateReason]int{ReasonDispute: 3, ReasonFraudWarning: 3, ReasonRefund: 2, ReasonDisputeInquiry: 1}
	for _, g := range gs {
		if g.State == entitlement.Active || g.State == entitlement.Ended {
			continue
		}
		if r := reasonOf(g.TakenBy); rank[r] > rank[best] {
			best = r
		}
	}
	return best
}

// refundedPart says which payment a refund took from the unit while its
// other grants still hold it: the checkout's first, or a renewal;
// ReasonNone when no refund took part of it.
func refundedPart(o *Order, gs []GrantStanding) StateReason {
	if !anyCounts(gs, true) {
		return ReasonNone
	}
	out := ReasonNone
	for _, g := range gs {
		if g.State != entitlement.Revoked || g.TakenBy != TakenByRefund {
			continue
		}
		if g.Source == "invoice:checkout" || (o.InvoiceID != "" && g.Source == "invoice:"+o.InvoiceID) {
			return ReasonFirstPaymentRefunded
		}
		out = ReasonRenewalRefunded
	}
	return out
}

// anyCounts reports whether a grant still counts: active, or with
// suspended also a suspended one.
func anyCounts(gs []GrantStanding, suspended bool) bool {
	for _, g := range gs {
		if g.State == entitlement.Active || (suspended && g.State == entitlement.Suspended) {
			return true
		}
	}
	return false
}

func reasonOf(takenBy string) StateReason {
	switch takenBy {
	case TakenByRefund:
		return ReasonRefund
	case TakenByDispute:
		return ReasonDispute
	case TakenByFraudWarning:
		return ReasonFraudWarning
	case TakenByInquiry:
		return ReasonDisputeInquiry
	}
	return ReasonNone
}
