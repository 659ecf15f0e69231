package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/mail"
	"fulfiller/internal/stripeapi/stripefake"
)

// A key the hourly run already checked, and found renewing, comes to owe
// its notice when Stripe ends the subscription inside the window: the next
// run announces it, once, however often it runs again.
func TestExpiryNoticeFollowsASubscriptionEndedInsideTheWindow(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, func(m *mail.Settings) { m.ExpiryNoticeDays = 3 })
	// A period that ends tomorrow: its key (a day's grace after it) runs
	// out in two days, inside the window from the start.
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Add(-29*24*time.Hour).Unix(),
		stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	b.queueExpiryNotices(t)
	b.queueExpiryNotices(t)
	require.Zero(t, b.lifecycleEmails(t, mail.KindExpiring), "a key that renews is not announced")

	sub.Status, sub.CanceledAt, sub.EndedAt = "canceled", time.Now().Unix(), time.Now().Unix()
	b.Stripe.PutSubscription(sub)
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.deleted", mustJSON(t, map[string]any{
		"id": sub.ID, "object": "subscription", "status": "canceled", "current_period_end": sub.CurrentPeriodEnd})))
	b.waitIdle(t)
	b.queueExpiryNotices(t)
	b.queueExpiryNotices(t) // the next hour's run
	notice := b.emailsWithSubject(t, "Your access ends in", 1)[0]
	ends := mail.FormatDate(time.Unix(b.user(t, o.Keys[0].UserKey).AuthExpire, 0))
	requireNamesTheOrder(t, notice, s.ID, "stops working on "+ends)
	require.Len(t, b.sentWithSubject(t, "Your access ends in"), 1, "one notice per key and expiry")
	require.Equal(t, 1, b.lifecycleEmails(t, mail.KindExpiring))
}
