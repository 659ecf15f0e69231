package order_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestRefundRevokesFromTheShareOn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		percent            int
		refunded, captured int64
		want               bool
	}{
		{100, 999, 1000, false},
		{100, 1000, 1000, true},
		{50, 499, 1000, false},
		{50, 500, 1000, true},
		{1, 1, 100, true},
		{1, 0, 100, false},
		{33, 33, 100, true},
		{34, 33, 100, false},
		{0, 1000, 1000, true},         // unset means 100
		{100, 0, 0, false},            // nothing was charged
		{100, 1000, 0, false},         // an uncaptured charge's refund took no money back
		{100, 1 << 40, 1 << 40, true}, // large amounts do not overflow
	} {
		p := order.Policy{RefundRevokePercent: tc.percent}
		require.Equal(t, tc.want, p.RefundRevokes(tc.refunded, tc.captured), "%+v", tc)
	}
}

func TestUnbanOnLift(t *testing.T) {
	t.Parallel()
	keep := order.Policy{UnbanWhenDisputeWon: false}
	require.True(t, keep.UnbanOnLift(true), "a closed inquiry always lifts its suspension")
	require.False(t, keep.UnbanOnLift(false))
	require.True(t, order.DefaultPolicy().UnbanOnLift(false))
}
