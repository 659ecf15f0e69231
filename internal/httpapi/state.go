package httpapi

import (
	"time"

	"fulfiller/internal/order"
)

// The buyer's state of an order and its keys in the order API, derived in
// one place (order.KeyBuyerState, order.OrderBuyerState) for the API, the
// order page (which reads the API's JSON) and the emails.

// OrderStateJSON is an order's state for its buyer.
type OrderStateJSON struct {
	// State: "pending", "failed", "active", "ending", "suspended",
	// "revoked", "reverted" or "expired" (see order.KeyState).
	State string `json:"state"`
	// StateReason says why (see order.StateReason); "" when nothing needs
	// saying.
	StateReason string `json:"state_reason"`
	// KeysWorking counts the order's units whose key works now: a
	// reissued key and its replacement count once.
	KeysWorking int `json:"keys_working"`
}

// KeyStateJSON is a key's state for its buyer.
type KeyStateJSON struct {
	// State: "active", "ending", "expired", "suspended", "revoked",
	// "reverted" or "replaced"; only active and ending keys work.
	State       string `json:"state"`
	StateReason string `json:"state_reason"`
	// Shared: "extends" when this purchase added its time to a key
	// another purchase holds, "extended" when another purchase added its
	// time to this key; absent otherwise. SharedWithOrder is that other
	// order's reference when it is the same buyer's.
	Shared          string `json:"shared,omitempty"`
	SharedWithOrder string `json:"shared_with_order,omitempty"`
	// HWIDBound: whether the key was bound to a machine when the service
	// last read it from Luarmor; absent when not known.
	HWIDBound *bool `json:"hwid_bound,omitempty"`
}

// Values of KeyStateJSON.Shared.
const (
	sharedExtends  = "extends"
	sharedExtended = "extended"
)

func renderOrderState(o *order.Order, now time.Time) OrderStateJSON {
	s := order.OrderBuyerState(o, now)
	out := OrderStateJSON{State: string(s.State), StateReason: string(s.Reason)}
	for _, k := range o.Keys {
		if k.Delivered() && order.KeyBuyerState(o, k, now).State.Works() {
			out.KeysWorking++
		}
	}
	return out
}

func renderKeyState(o *order.Order, k order.Key, now time.Time) KeyStateJSON {
	s := order.KeyBuyerState(o, k, now)
	out := KeyStateJSON{State: string(s.State), StateReason: string(s.Reason), HWIDBound: k.Standing.HWIDBound}
	switch {
	case k.ExtendedExisting:
		// The key extended may be one this service never sold: shared
		// with a purchase of no order here.
		out.Shared, out.SharedWithOrder = sharedExtends, k.Standing.SharedWith
	case k.Standing.Shared:
		out.Shared, out.SharedWithOrder = sharedExtended, k.Standing.SharedWith
	}
	return out
}
