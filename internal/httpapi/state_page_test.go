package httpapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

// The order page's heading follows the buyer's state, counting units.
func TestOrderHeadingFollowsWhatWorks(t *testing.T) {
	t.Parallel()
	future := time.Now().Unix() + 86400
	working := order.Key{UserKey: "A", Status: order.KeyActive, AuthExpire: &future}
	banned := order.Key{UserKey: "B", Status: order.KeyBlacklisted, SupportBan: true}
	replaced := order.Key{UserKey: "C", Status: order.KeyBlacklisted, SupportBan: true, Standing: order.KeyStanding{Replaced: true}}
	ending := order.Key{UserKey: "D", Status: order.KeyActive, Recurring: true, Ending: true, AuthExpire: &future}
	for _, tc := range []struct {
		name    string
		o       order.Order
		state   string
		heading string
	}{
		{"every key", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{working, working}}, stateDelivered, "Your 2 keys are ready"},
		{"a reissue", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{replaced, working, working}}, stateDelivered, "Your 2 keys are ready"},
		{"one of two", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{banned, working}}, stateSome, "1 of your 2 keys works"},
		{"none", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{banned}}, stateRevoked, "This key was revoked"},
		{"cancelled", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{ending}, Standing: order.OrderStanding{Cancelled: true}},
			stateEnding, "Your subscription was cancelled"},
		{"left the subscription", order.Order{Status: order.StatusFulfilled, Keys: []order.Key{ending, ending}}, stateEnding, "Your 2 keys are no longer renewed"},
		{"refunded before any key", order.Order{Status: order.StatusRevoked, Keys: []order.Key{{Status: order.KeyPending}},
			Standing: order.OrderStanding{RevokedBy: order.TakenByRefund}}, stateRevoked, "This order was refunded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.o.CheckoutSessionID = sessionID
			v, err := newOrderView(&tc.o, sessionID, time.Now())
			require.NoError(t, err)
			require.Equal(t, tc.state, v.State)
			require.Equal(t, tc.heading, v.Heading())
			require.Contains(t, renderSection(t, v), ">"+tc.heading+"</h2>")
		})
	}
}
