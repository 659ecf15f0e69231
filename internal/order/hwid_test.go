package order_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestHWIDResetRefusal(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future, never := now.Unix()-1, now.Unix()+1, int64(-1)
	active := order.Key{Status: order.KeyActive}
	for name, tc := range map[string]struct {
		orderStatus order.Status
		key         order.Key
		want        string
	}{
		"active key of a fulfilled order":  {order.StatusFulfilled, active, ""},
		"active key of a pending order":    {order.StatusPending, active, ""},
		"lifetime key":                     {order.StatusFulfilled, order.Key{Status: order.KeyActive, AuthExpire: &never}, ""},
		"unexpired key":                    {order.StatusFulfilled, order.Key{Status: order.KeyActive, AuthExpire: &future}, ""},
		"expired key":                      {order.StatusFulfilled, order.Key{Status: order.KeyActive, AuthExpire: &past}, "expired at 2029-12-31 23:59:59 (UTC)"},
		"revoked order":                    {order.StatusRevoked, active, "revoked"},
		"failed order":                     {order.StatusFailed, active, "failed"},
		"banned key":                       {order.StatusFulfilled, order.Key{Status: order.KeyBlacklisted}, "banned"},
		"suspended key":                    {order.StatusFulfilled, order.Key{Status: order.KeyActive, Suspended: true}, "suspended"},
		"deleted key":                      {order.StatusFulfilled, order.Key{Status: order.KeyDeleted}, "deleted, not active"},
		"reverted extension":               {order.StatusFulfilled, order.Key{Status: order.KeyReverted}, "reverted, not active"},
		"key of an order still being made": {order.StatusPending, order.Key{Status: order.KeyPending}, "pending, not active"},
	} {
		got := order.HWIDResetRefusal(tc.orderStatus, tc.key, now)
		if tc.want == "" {
			require.Empty(t, got, name)
		} else {
			require.Contains(t, got, tc.want, name)
		}
	}
}

func TestCooldownMessageNamesTheResetAndTheNextAllowedTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600))
	next := at.Add(24 * time.Hour)
	done := &order.CooldownError{Reset: order.HWIDReset{Status: order.HWIDResetDone, RequestedAt: at, LastResetAt: &at, NextResetAt: &next}}
	require.Equal(t, "this key's HWID was reset at 2030-05-06 05:08:09; the next reset is allowed at 2030-05-07 05:08:09 (UTC)", done.Error())
	require.Equal(t, order.ECOOLDOWN, order.ErrorCode(done))
	queued := &order.CooldownError{Reset: order.HWIDReset{Status: order.HWIDResetQueued, RequestedAt: at, NextResetAt: &next}}
	require.Equal(t, "a reset of this key's HWID was requested at 2030-05-06 05:08:09; the next reset is allowed at 2030-05-07 05:08:09 (UTC)", queued.Error())
}
