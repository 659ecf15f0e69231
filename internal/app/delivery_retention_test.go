package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/outbound"
	"fulfiller/internal/retention"
	"fulfiller/internal/stripeapi/stripefake"
)

// The prune_history job drops the deliveries that finished more than
// RETENTION_DELIVERY_LOG_DAYS ago, their attempts and their events'
// bodies. What they were sent for is still recorded: the same sale's
// webhook and the expiry check run again tell the shop nothing twice. A
// replay of a pruned delivery is refused, by the admin API and the
// console, saying it is no longer kept, and nothing is sent.
func TestPruneHistoryDropsOldDeliveriesAndRefusesTheirReplay(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	b := setup(t, withAdminLogin(), withConfig(func(c *config.Config) {
		c.Mail = mail.Settings{SMTP: server, From: "Acme <keys@shop.example>", PublicBaseURL: publicBase, ExpiryNoticeDays: 90}
		c.Outbound = outbound.Settings{WebhookURLs: []string{rc.URL}, Secret: outboundSecret,
			Events: []outbound.EventType{outbound.OrderFulfilled, outbound.KeyExpiring}}
	}))
	ctx := t.Context()
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	s, _ := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	sub.CancelAtPeriodEnd = true
	b.changeSubscription(t, sub)
	b.queueExpiryNotices(t)
	fulfilled := b.waitDelivery(t, outbound.OrderFulfilled, "delivered")
	b.waitDelivery(t, outbound.KeyExpiring, "delivered")
	b.waitIdle(t)
	sent := len(rc.requests())
	require.Equal(t, 2, sent)
	events := b.Count(t, `SELECT count(*) FROM outbound_events`)

	// A quarter of a year and more later.
	_, err = b.Pool.Exec(ctx, `UPDATE outbound_deliveries SET updated_at = now() - interval '100 days'`)
	require.NoError(t, err)
	_, err = b.Pool.Exec(ctx, `UPDATE outbound_delivery_attempts SET at = now() - interval '100 days'`)
	require.NoError(t, err)
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err = b.Main.River.Insert(ctx, jobs.PruneHistoryArgs{}, nil)
	require.NoError(t, err)
	var sum retention.Summary
	require.NoError(t, json.Unmarshal(watch.WaitCompleted(t, "prune_history", 1)[0].Output(), &sum))
	require.True(t, sum.Complete)
	require.Equal(t, int64(2), sum.Pruned["outbound_deliveries"])
	require.Equal(t, 2.0, prunedRowsCounted(t, b, "outbound_deliveries"))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM outbound_deliveries`))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM outbound_delivery_attempts`))
	require.Equal(t, events, b.Count(t, `SELECT count(*) FROM outbound_events`), "every event's row stays")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM outbound_events WHERE data IS NOT NULL`), "no body is left")

	// What was sent is still known: nothing is sent twice.
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.queueExpiryNotices(t)
	b.waitIdle(t)
	require.Len(t, rc.requests(), sent, "neither order.fulfilled nor key.expiring again")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM outbound_deliveries`))

	// Its replay is refused, saying why, and sends nothing.
	get := b.adminCall(t, http.MethodGet, fmt.Sprintf("/v1/admin/webhooks/deliveries/%d", fulfilled.ID), "", adminToken)
	require.Equal(t, http.StatusNotFound, get.status)
	require.Contains(t, string(get.body), "is no longer kept")
	replay := b.adminCall(t, http.MethodPost, fmt.Sprintf("/v1/admin/webhooks/deliveries/%d/replay", fulfilled.ID),
		`{"reason":"the backend lost it"}`, adminToken)
	require.Equal(t, http.StatusNotFound, replay.status)
	require.Contains(t, string(replay.body), "RETENTION_DELIVERY_LOG_DAYS")
	status, _, page := b.consoleForm(t, fmt.Sprintf("/console/deliveries/%d/replay", fulfilled.ID),
		url.Values{"reason": {"the backend lost it"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, page, "is no longer kept")
	never := b.adminCall(t, http.MethodPost, "/v1/admin/webhooks/deliveries/999999/replay", "", adminToken)
	require.Equal(t, http.StatusNotFound, never.status)
	require.NotContains(t, string(never.body), "no longer kept", "a delivery that never was")
	b.waitIdle(t)
	require.Len(t, rc.requests(), sent)
	require.Zero(t, b.Count(t, `SELECT count(*) FROM support_audit WHERE action = 'replay-delivery'`))
}
