package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/mail"
	"fulfiller/internal/outbound"
	"fulfiller/internal/stripeapi/stripefake"
)

// expiringEventsOnce cancels a subscription whose keys run out within the
// window and runs the hourly job three times: the shop's backend hears
// key.expiring once, with the key's expiry.
func expiringEventsOnce(t *testing.T, b *bundle, rc *receiver, start int64) {
	t.Helper()
	sub := monthly(fulfillertest.NewID("sub_"), start, stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	_, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	key := o.Keys[0].UserKey
	b.queueExpiryNotices(t)
	require.Empty(t, rc.ofType(outbound.KeyExpiring), "a key that renews is not expiring")

	sub.CancelAtPeriodEnd = true
	b.changeSubscription(t, sub)
	b.queueExpiryNotices(t)
	got := rc.ofType(outbound.KeyExpiring)
	require.Len(t, got, 1)
	require.NoError(t, got[0].verified)
	require.NotNil(t, got[0].event.Data.ExpiresAt)
	require.Equal(t, b.user(t, key).AuthExpire, *got[0].event.Data.ExpiresAt)

	b.queueExpiryNotices(t) // the next hour's run
	b.queueExpiryNotices(t) // and the one after
	require.Len(t, rc.ofType(outbound.KeyExpiring), 1, "once per key and expiry")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM outbound_events WHERE type = 'key.expiring'`))
}

// With mail off altogether and MAIL_EXPIRY_NOTICE_DAYS=0, key.expiring
// still goes out, within the notice's default window (3 days): a key
// ending in two days is announced, once.
func TestKeyExpiringIsSentWithMailOff(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setup(t, withWebhooks(rc, func(s *outbound.Settings) { s.Events = []outbound.EventType{outbound.KeyExpiring} }),
		withConfig(func(c *config.Config) { c.Mail = mail.Settings{ExpiryNoticeDays: 0} }))
	// A period that ends tomorrow: its key (a day's grace after it) runs
	// out in two days.
	expiringEventsOnce(t, b, rc, time.Now().Add(-29*24*time.Hour).Unix())
	require.Zero(t, b.lifecycleEmails(t, mail.KindExpiring), "no buyer is emailed with mail off")
}

// With mail on but the expiry notice turned off (MAIL_DISABLE=expiring),
// key.expiring goes out within MAIL_EXPIRY_NOTICE_DAYS, once, and no
// buyer is emailed.
func TestKeyExpiringIsSentWithTheExpiryNoticeDisabled(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setupLifecycleMail(t, func(m *mail.Settings) {
		m.ExpiryNoticeDays = 90
		m.Disabled = m.Disabled.With(mail.KindExpiring)
	}, withWebhooks(rc, func(s *outbound.Settings) { s.Events = []outbound.EventType{outbound.KeyExpiring} }))
	expiringEventsOnce(t, b.bundle, rc, time.Now().Unix())
	require.Zero(t, b.lifecycleEmails(t, mail.KindExpiring))
	require.Empty(t, b.sentWithSubject(t, "Your access ends in"))
}
