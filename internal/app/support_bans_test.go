package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

// A subscription key support banned is renewed: the renewal's period is
// granted, and support's ban holds with its reason. Support's unban then
// gives the key the period the renewal paid for.
func TestSupportBanHoldsThroughARenewal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "blacklist", `{"user_key":"`+key+`","reason":"Key shared"}`))

	periodEnd := time.Now().Unix() + 60*day
	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", periodEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	u := b.user(t, key)
	require.True(t, u.IsBanned(), "support's ban holds through the renewal")
	require.Equal(t, "Key shared", u.BanReason)
	require.Equal(t, "blacklisted", b.keyStatus(t, key))
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))

	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "unban", keyBody(key)))
	u = b.user(t, key)
	require.False(t, u.IsBanned())
	require.Equal(t, periodEnd+day, u.AuthExpire, "the renewed period, set by the unban's writer")
	require.Equal(t, "active", b.keyStatus(t, key))
}

// A key support revoked stays revoked after a renewal webhook, blacklisted
// or deleted as REFUND_ACTION says, and is counted revoked once however
// often the revocation is asked.
func TestSupportRevocationHoldsThroughARenewal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		action order.Action
		status string
	}{{order.ActionBlacklist, "blacklisted"}, {order.ActionDelete, "deleted"}} {
		t.Run(string(c.action), func(t *testing.T) {
			t.Parallel()
			b := setup(t, withMetrics(nil), withPolicy(func(p *order.Policy) { p.RefundAction = c.action }))
			s, o := b.subscriptionOrder(t, 1)
			key := o.Keys[0].UserKey
			before := b.scrape(t)
			for range 2 {
				require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "revoke", keyBody(key)))
				require.Equal(t, c.status, b.keyStatus(t, key))
			}
			_, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+60*day)
			b.Deliver(t, ev)
			b.waitIdle(t)

			require.Equal(t, c.status, b.keyStatus(t, key))
			u, exists := b.Luarmor.User(project, key)
			if c.action == order.ActionDelete {
				require.False(t, exists, "the deleted key is not made again")
			} else {
				require.True(t, u.IsBanned(), "the revocation holds through the renewal")
				require.Equal(t, "Revoked by support", u.BanReason)
			}
			after := b.waitMetric(t, before, "fulfiller_keys_revoked_total", map[string]string{"action": string(c.action)}, 1)
			require.Equal(t, 1.0, after.value("fulfiller_keys_revoked_total", nil)-before.value("fulfiller_keys_revoked_total", nil))
			_, got := b.GetOrder(t, s.ID)
			require.Equal(t, c.status, got.Keys[0].Status, "the order API shows it")
		})
	}
}
