package order_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/order"
)

func TestKeyBuyerState(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	future, past := now.Unix()+86400, now.Unix()-86400
	active := func(src string) order.GrantStanding {
		return order.GrantStanding{State: entitlement.Active, Source: src}
	}
	taken := func(state entitlement.State, by, src string) order.GrantStanding {
		return order.GrantStanding{State: state, TakenBy: by, Source: src}
	}
	key := func(status order.KeyStatus, grants ...order.GrantStanding) order.Key {
		return order.Key{UserKey: "k", Status: status, AuthExpire: &future, Standing: order.KeyStanding{Grants: grants}}
	}
	with := func(k order.Key, change func(*order.Key)) order.Key { change(&k); return k }
	plain := &order.Order{Status: order.StatusFulfilled, InvoiceID: "in_first"}
	cancelled := &order.Order{Status: order.StatusFulfilled, Standing: order.OrderStanding{Cancelled: true}}
	revokedBy := func(by string) *order.Order {
		return &order.Order{Status: order.StatusRevoked, Standing: order.OrderStanding{RevokedBy: by}}
	}
	cases := []struct {
		name  string
		order *order.Order
		key   order.Key
		want  order.BuyerState
	}{
		{"paid and running", plain, key(order.KeyActive, active("unit")), order.BuyerState{State: order.KeyStateActive}},
		{"lifetime", plain, with(key(order.KeyActive, active("unit")), func(k *order.Key) { never := int64(-1); k.AuthExpire = &never }),
			order.BuyerState{State: order.KeyStateActive}},
		{"waiting for first use", plain, with(key(order.KeyActive, active("unit")), func(k *order.Key) { k.AuthExpire = nil }),
			order.BuyerState{State: order.KeyStateActive}},
		{"expired", plain, with(key(order.KeyActive, active("unit")), func(k *order.Key) { k.AuthExpire = &past }),
			order.BuyerState{State: order.KeyStateExpired}},
		{"subscription cancelled at the period's end", cancelled,
			with(key(order.KeyActive, active("invoice:in_1")), func(k *order.Key) { k.Recurring = true }),
			order.BuyerState{State: order.KeyStateEnding, Reason: order.ReasonCancelled}},
		{"subscription ended", cancelled,
			with(key(order.KeyActive, active("invoice:in_1")), func(k *order.Key) { k.Recurring, k.Ending = true, true }),
			order.BuyerState{State: order.KeyStateEnding, Reason: order.ReasonCancelled}},
		{"cancelled and run out", cancelled,
			with(key(order.KeyActive, active("invoice:in_1")), func(k *order.Key) { k.Recurring, k.Ending, k.AuthExpire = true, true, &past }),
			order.BuyerState{State: order.KeyStateExpired, Reason: order.ReasonCancelled}},
		{"seat removed", plain,
			with(key(order.KeyActive, active("invoice:in_1")), func(k *order.Key) { k.Recurring, k.Ending = true, true }),
			order.BuyerState{State: order.KeyStateEnding, Reason: order.ReasonLeftSubscription}},
		{"one-time key of a cancelled subscription's checkout runs on", cancelled, key(order.KeyActive, active("unit")),
			order.BuyerState{State: order.KeyStateActive}},
		{"past due, suspended", plain, with(key(order.KeyActive, active("invoice:in_first")), func(k *order.Key) { k.Suspended = true }),
			order.BuyerState{State: order.KeyStateSuspended, Reason: order.ReasonPastDue}},
		{"dispute inquiry", plain, key(order.KeyBlacklisted, taken(entitlement.Suspended, order.TakenByInquiry, "unit")),
			order.BuyerState{State: order.KeyStateSuspended, Reason: order.ReasonDisputeInquiry}},
		{"dispute inquiry before its writer ran", plain, key(order.KeyActive, taken(entitlement.Suspended, order.TakenByInquiry, "unit")),
			order.BuyerState{State: order.KeyStateSuspended, Reason: order.ReasonDisputeInquiry}},
		{"refunded", revokedBy(order.TakenByRefund), key(order.KeyBlacklisted, taken(entitlement.Revoked, order.TakenByRefund, "unit")),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonRefund}},
		{"refunded and deleted", revokedBy(order.TakenByRefund), key(order.KeyDeleted, taken(entitlement.Revoked, order.TakenByRefund, "unit")),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonRefund}},
		{"chargeback", revokedBy(order.TakenByDispute), key(order.KeyBlacklisted, taken(entitlement.Banned, order.TakenByDispute, "unit")),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonDispute}},
		{"early fraud warning", revokedBy(order.TakenByFraudWarning), key(order.KeyBlacklisted, taken(entitlement.Banned, order.TakenByFraudWarning, "unit")),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonFraudWarning}},
		{"a chargeback outranks an earlier refund", plain,
			key(order.KeyBlacklisted, taken(entitlement.Revoked, order.TakenByRefund, "invoice:in_2"), taken(entitlement.Banned, order.TakenByDispute, "invoice:in_first")),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonDispute}},
		{"banned by support", plain, with(key(order.KeyBlacklisted, active("unit")), func(k *order.Key) { k.SupportBan = true }),
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonSupport}},
		{"reissued: the old key", plain,
			with(key(order.KeyBlacklisted, active("unit")), func(k *order.Key) { k.SupportBan, k.Standing.Replaced = true, true }),
			order.BuyerState{State: order.KeyStateReplaced, Reason: order.ReasonReissued}},
		{"reissued: the new key", plain, with(key(order.KeyActive, active("unit")), func(k *order.Key) { k.Standing.Replacement = true }),
			order.BuyerState{State: order.KeyStateActive}},
		{"an extension refunded: the key works for the other purchase", plain,
			with(key(order.KeyReverted, taken(entitlement.Revoked, order.TakenByRefund, "unit")), func(k *order.Key) { k.Standing.Shared = true }),
			order.BuyerState{State: order.KeyStateReverted, Reason: order.ReasonRefund}},
		{"first payment refunded after a renewal", plain,
			key(order.KeyActive, taken(entitlement.Revoked, order.TakenByRefund, "invoice:in_first"), active("invoice:in_2")),
			order.BuyerState{State: order.KeyStateActive, Reason: order.ReasonFirstPaymentRefunded}},
		{"first payment of an order recorded before invoices were kept", &order.Order{Status: order.StatusFulfilled},
			key(order.KeyActive, taken(entitlement.Revoked, order.TakenByRefund, "invoice:checkout"), active("invoice:in_2")),
			order.BuyerState{State: order.KeyStateActive, Reason: order.ReasonFirstPaymentRefunded}},
		{"renewal refunded", plain,
			key(order.KeyActive, active("invoice:in_first"), taken(entitlement.Revoked, order.TakenByRefund, "invoice:in_2")),
			order.BuyerState{State: order.KeyStateActive, Reason: order.ReasonRenewalRefunded}},
		{"access kept while collecting, ended", plain,
			key(order.KeyActive, active("invoice:in_first"), order.GrantStanding{State: entitlement.Ended, Source: "collecting"}),
			order.BuyerState{State: order.KeyStateActive}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := order.KeyBuyerState(c.order, c.key, now)
			require.Equal(t, c.want, got)
			require.Equal(t, c.want.State == order.KeyStateActive || c.want.State == order.KeyStateEnding, got.State.Works())
		})
	}
}

func TestOrderBuyerState(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	future := now.Unix() + 86400
	working := order.Key{UserKey: "a", Status: order.KeyActive, AuthExpire: &future}
	revoked := order.Key{UserKey: "b", Status: order.KeyBlacklisted, SupportBan: true}
	replaced := order.Key{UserKey: "c", Status: order.KeyBlacklisted, SupportBan: true, Standing: order.KeyStanding{Replaced: true}}
	suspended := order.Key{UserKey: "d", Status: order.KeyActive, Suspended: true, AuthExpire: &future}
	ending := order.Key{UserKey: "e", Status: order.KeyActive, Ending: true, Recurring: true, AuthExpire: &future}
	undelivered := order.Key{Status: order.KeyPending}
	cases := []struct {
		name  string
		order order.Order
		want  order.BuyerState
	}{
		{"pending", order.Order{Status: order.StatusPending, Keys: []order.Key{working, undelivered}}, order.BuyerState{State: order.KeyStatePending}},
		{"failed", order.Order{Status: order.StatusFailed}, order.BuyerState{State: order.StateFailed}},
		{"every key works", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{working, working}}, order.BuyerState{State: order.KeyStateActive}},
		{"a reissued key counts once", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{replaced, working, working}},
			order.BuyerState{State: order.KeyStateActive}},
		{"some work", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{revoked, working}},
			order.BuyerState{State: order.KeyStateActive, Reason: order.ReasonSomeKeys}},
		{"all ending", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{ending, ending}, Standing: order.OrderStanding{Cancelled: true}},
			order.BuyerState{State: order.KeyStateEnding, Reason: order.ReasonCancelled}},
		{"suspended", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{suspended}},
			order.BuyerState{State: order.KeyStateSuspended, Reason: order.ReasonPastDue}},
		{"revoked before any key", order.Order{Status: order.StatusRevoked, Keys: []order.Key{undelivered}, Standing: order.OrderStanding{RevokedBy: order.TakenByDispute}},
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonDispute}},
		{"nothing works", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{revoked}},
			order.BuyerState{State: order.KeyStateRevoked, Reason: order.ReasonSupport}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, order.OrderBuyerState(&c.order, now))
		})
	}
}
