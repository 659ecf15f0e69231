package httpapi

import (
	"fmt"

	"fulfiller/internal/order"
)

// The order page's words for the buyer's state of an order and its keys
// (order.KeyBuyerState, order.OrderBuyerState, as the order API answers
// them): the heading, its lead, each key's badge and note. A key that does
// not work is never called ready, nor offered to copy.

// Order page states of a delivered or revoked order (data-state), besides
// stateDelivered (every key works) and stateRevoked.
const (
	stateEnding    = "ending"    // every key works until its end, renewed no more
	stateSome      = "some"      // some keys work, some not
	stateSuspended = "suspended" // blacklisted until paid or decided
	stateReverted  = "reverted"  // the purchase's days were taken back from a shared key
	stateExpired   = "expired"   // run out
)

// settledState is the page state of a delivered or revoked order.
func settledState(s OrderStateJSON) string {
	switch order.KeyState(s.State) {
	case order.KeyStateActive:
		if order.StateReason(s.StateReason) == order.ReasonSomeKeys {
			return stateSome
		}
		return stateDelivered
	case order.KeyStateEnding:
		return stateEnding
	case order.KeyStateSuspended:
		return stateSuspended
	case order.KeyStateReverted:
		return stateReverted
	case order.KeyStateExpired:
		return stateExpired
	}
	return stateRevoked
}

// Settled reports whether the order's heading follows its buyer state.
func (v *orderView) Settled() bool {
	switch v.State {
	case stateDelivered, stateEnding, stateSome, stateSuspended, stateReverted, stateExpired, stateRevoked:
		return true
	}
	return false
}

// countedText is "your key" or "your N keys" for n units.
func countedText(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}

// units counts the order's units shown: a reissued key's replacement
// stands for it.
func (v *orderView) units() int {
	n := 0
	for _, k := range v.Keys {
		if order.KeyState(k.State) != order.KeyStateReplaced {
			n++
		}
	}
	return n
}

// Heading is the order's heading: what works, counted in units.
func (v *orderView) Heading() string {
	working, units := v.Buyer.KeysWorking, v.units()
	switch v.State {
	case stateDelivered:
		return countedText(working, "Your key is ready", "Your %d keys are ready")
	case stateSome:
		if working == 1 {
			return fmt.Sprintf("1 of your %d keys works", units)
		}
		return fmt.Sprintf("%d of your %d keys work", working, units)
	case stateEnding:
		if order.StateReason(v.Buyer.StateReason) == order.ReasonCancelled {
			return "Your subscription was cancelled"
		}
		return countedText(units, "Your key is no longer renewed", "Your %d keys are no longer renewed")
	case stateSuspended:
		return countedText(units, "Your key is suspended", "Your %d keys are suspended")
	case stateReverted:
		return "This purchase was taken back"
	case stateExpired:
		return countedText(units, "Your key has expired", "Your %d keys have expired")
	}
	switch order.StateReason(v.Buyer.StateReason) {
	case order.ReasonRefund:
		return "This order was refunded"
	case order.ReasonDispute:
		return "This order's payment was disputed"
	case order.ReasonFraudWarning:
		return "This order's payment was flagged as fraudulent"
	}
	return countedText(max(units, 1), "This key was revoked", "These keys were revoked")
}

// Lead is the line under the heading; LeadNotice whether it is a warning.
func (v *orderView) Lead() string {
	reason := order.StateReason(v.Buyer.StateReason)
	switch v.State {
	case stateDelivered:
		lead := "Copy the loader line into your executor above the shop's script, or copy the key where the shop asks for it."
		switch reason {
		case order.ReasonFirstPaymentRefunded:
			lead = "Your first payment was refunded, so the time it paid for was taken back; your key works for the period your renewal paid. " + lead
		case order.ReasonRenewalRefunded:
			lead = "A renewal payment was refunded, so the period it paid for was taken back; your key works for the time your other payments paid. " + lead
		}
		return lead
	case stateSome:
		return "The others no longer work: each key below says why. If you think this is a mistake, contact the shop and quote the order reference below."
	case stateEnding:
		if reason != order.ReasonCancelled {
			return "Your keys left the subscription: they run until the date shown with each key, and are not renewed."
		}
		lead := "It is not renewed: your keys keep working until the date shown with each key, and then stop."
		if v.ManageURL != "" {
			lead += " To keep them, see Manage subscription below."
		}
		return lead
	case stateSuspended:
		return suspendedText(reason, v.ManageURL != "")
	case stateReverted:
		return "This purchase only added days to a key of another purchase, and those days were taken back. The key still works for that other purchase; each key below says which."
	case stateExpired:
		return "Its time ran out. Buy again from the shop to keep using the script."
	}
	switch reason {
	case order.ReasonRefund:
		return "The payment of this order was refunded, so its keys no longer work. If you think this is a mistake, contact the shop and quote the order reference below."
	case order.ReasonDispute:
		return "The payment of this order was disputed with the bank (a chargeback), so its keys no longer work. If you think this is a mistake, contact the shop and quote the order reference below."
	case order.ReasonFraudWarning:
		return "The card's network warned that this payment was fraudulent, so its keys no longer work. If you think this is a mistake, contact the shop and quote the order reference below."
	case order.ReasonSupport:
		return "The shop revoked the keys of this order. Contact the shop and quote the order reference below to know why."
	}
	return "The payment of this order was refunded or disputed, so its keys no longer work. If you think this is a mistake, contact the shop and quote the order reference below."
}

// LeadNotice reports whether the lead warns: nothing, or not everything,
// works.
func (v *orderView) LeadNotice() bool {
	return v.State != stateDelivered && v.State != stateEnding
}

// suspendedText says why keys are suspended and what to do.
func suspendedText(reason order.StateReason, manage bool) string {
	if reason == order.ReasonDisputeInquiry {
		return "Your bank asked about this payment (a dispute inquiry), so the keys are suspended until the inquiry closes. If you did not mean to question the payment, tell your bank and contact the shop, quoting the order reference below."
	}
	where := "in the shop"
	if manage {
		where = "with Manage subscription below"
	}
	return "The subscription's renewal is unpaid. Pay the open invoice or update your payment method " + where + ", and the keys work again within a minute or two."
}

// badgeText is a key's badge.
func badgeText(s KeyStateJSON) string {
	reason := order.StateReason(s.StateReason)
	switch order.KeyState(s.State) {
	case order.KeyStateActive:
		return "Active"
	case order.KeyStateEnding:
		if reason == order.ReasonCancelled {
			return "Cancelled"
		}
		return "Ending"
	case order.KeyStateExpired:
		return "Expired"
	case order.KeyStateSuspended:
		return "Suspended"
	case order.KeyStateReplaced:
		return "Replaced"
	case order.KeyStateRevoked, order.KeyStateReverted:
		switch reason {
		case order.ReasonRefund:
			return "Refunded"
		case order.ReasonDispute:
			return "Disputed"
		}
		return "Revoked"
	}
	return "Not usable"
}

// ShowsExpiry is whether the key's expiry means anything to the buyer: a
// key taken back, replaced or reverted has none of its own.
func (k keyView) ShowsExpiry() bool {
	switch order.KeyState(k.State) {
	case order.KeyStateRevoked, order.KeyStateReplaced, order.KeyStateReverted:
		return false
	}
	return true
}

// otherOrder names the other purchase of a shared key: its reference when
// it is the buyer's own.
func (k keyView) otherOrder() string {
	if k.SharedWithOrder != "" {
		return "your order " + k.SharedWithOrder
	}
	return "another purchase"
}

// StateNote tells what the key's badge cannot: why it does not work and
// what to do, or what it shares; "" when nothing needs saying.
func (k keyView) StateNote(o *orderView) string {
	reason := order.StateReason(k.StateReason)
	switch order.KeyState(k.State) {
	case order.KeyStateEnding:
		if reason == order.ReasonCancelled {
			return "The subscription was cancelled: this key runs until " + k.ExpiryText() + ", with no renewal."
		}
		return "This key left the subscription (a seat was removed or the plan changed): it runs until " + k.ExpiryText() + ", with no renewal."
	case order.KeyStateExpired:
		return "This key's time ran out; it no longer works."
	case order.KeyStateSuspended:
		if reason == order.ReasonDisputeInquiry {
			return "Suspended until your bank's inquiry about the payment closes."
		}
		if o != nil && o.ManageURL != "" {
			return "Suspended until the subscription's unpaid renewal is paid (Manage subscription below)."
		}
		return "Suspended until the subscription's unpaid renewal is paid."
	case order.KeyStateReplaced:
		return "The shop replaced this key with a new one, shown in this order: this one no longer works. Use the new key."
	case order.KeyStateReverted:
		return "This purchase only added days to this key, which " + k.otherOrder() + " holds; " + takenText(reason) +
			" took those days back. The key still works for " + k.otherOrder() + "."
	case order.KeyStateRevoked:
		switch reason {
		case order.ReasonRefund:
			return "The payment was refunded, so this key no longer works."
		case order.ReasonDispute:
			return "The payment was disputed with the bank (a chargeback), so this key no longer works."
		case order.ReasonFraudWarning:
			return "The payment was flagged as fraudulent, so this key no longer works."
		case order.ReasonSupport:
			return "The shop revoked this key; contact the shop to know why."
		}
		return "This key no longer works."
	}
	switch {
	case reason == order.ReasonFirstPaymentRefunded:
		return "Your first payment was refunded and its period taken back; this key works for the period your renewal paid."
	case reason == order.ReasonRenewalRefunded:
		return "A renewal payment was refunded and its period taken back; this key works for the time your other payments paid."
	case k.Shared == sharedExtends:
		return "This purchase added its time to a key you already had (" + k.otherOrder() + "): the same key, with the time of both."
	case k.Shared == sharedExtended:
		return "This key also carries the time of " + k.otherOrder() + ", which was added to it."
	}
	return ""
}

// takenText names what took a purchase's days back.
func takenText(reason order.StateReason) string {
	switch reason {
	case order.ReasonDispute:
		return "a dispute (chargeback)"
	case order.ReasonFraudWarning:
		return "a fraud warning"
	}
	return "a refund"
}

// ResetOffered is whether the Reset HWID button is shown: for a key known
// to be bound to a machine, or whose binding is not known (the reset then
// finds out, and gives the cooldown back when there was nothing to reset).
func (k keyView) ResetOffered() bool { return k.HWIDBound == nil || *k.HWIDBound }

// NotBoundText says a key known to be unbound has nothing to reset.
func (keyView) NotBoundText() string { return notBoundText }

const notBoundText = "Not bound to a computer yet: nothing to reset. The key binds to the first computer that runs the script; once it has, you can reset it here."
