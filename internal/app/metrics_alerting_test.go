package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// The gauges the alerting rules compare against: orders by status, the
// last verified webhook's time and the budget's limit.
func TestMetricsShowOrdersByStatusTheLastWebhookAndTheBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(func(c *config.Config) { c.LuarmorRateLimit, c.LuarmorRateWindow = 50000, 30*time.Second }))
	before := b.scrape(t)
	for _, status := range []string{"pending", "fulfilled", "revoked", "failed"} {
		require.Zero(t, before.value("fulfiller_orders", map[string]string{"status": status}), "every status is shown, at zero")
	}
	require.Equal(t, 100000.0, before.value("fulfiller_luarmor_budget_slots_per_minute", nil), "50000 per 30 s")
	started := before.value("fulfiller_webhook_last_received_timestamp_seconds", nil)
	require.Positive(t, started, "the process's start until the first webhook")

	b.buy(t, stripefake.Item{PriceID: priceMonth})
	unknown := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog"})
	ev := b.SessionEvent(t, "checkout.session.completed", unknown.ID)
	b.Deliver(t, ev)
	require.Equal(t, order.FailureUnknownPrice, b.waitFailed(t, unknown.ID).FailureCode)
	b.Deliver(t, ev) // Stripe repeats itself: still one order

	after := b.scrape(t)
	require.Equal(t, 1.0, after.value("fulfiller_orders", map[string]string{"status": "fulfilled"}))
	require.Equal(t, 1.0, after.value("fulfiller_orders", map[string]string{"status": "failed"}))
	require.Zero(t, after.value("fulfiller_orders", map[string]string{"status": "pending"}))
	received := after.value("fulfiller_webhook_last_received_timestamp_seconds", nil)
	require.Greater(t, received, started)

	// A delivery whose signature fails is no sign that Stripe reaches the
	// service.
	require.Equal(t, http.StatusBadRequest, b.PostWebhook(t, ev, fulfillertest.Sign(ev, "whsec_someone_else", time.Now())).Status)
	require.Equal(t, received, b.scrape(t).value("fulfiller_webhook_last_received_timestamp_seconds", nil))
}

func TestMetricsShowARefusedStripeKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(func(c *config.Config) { c.StripeAPIKey = "sk_test_revoked" }))
	// A poll: the credentials are checked by the process, not by a job.
	require.Eventually(t, func() bool {
		return b.scrape(t).value("fulfiller_credential_refused", map[string]string{"service": "stripe"}) == 1
	}, 10*time.Second, 50*time.Millisecond)
	require.Zero(t, b.scrape(t).value("fulfiller_credential_refused", map[string]string{"service": "luarmor"}))
}

func TestMetricsShowARefusedLuarmorKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(func(c *config.Config) { c.LuarmorAPIKey = "not-the-key" }))
	var s scrape
	require.Eventually(t, func() bool {
		s = b.scrape(t)
		return s.value("fulfiller_credential_refused", map[string]string{"service": "luarmor"}) == 1
	}, 10*time.Second, 50*time.Millisecond)
	require.Zero(t, s.value("fulfiller_credential_refused", map[string]string{"service": "stripe"}))
	require.Positive(t, s.value("fulfiller_luarmor_requests_total", map[string]string{"status": "403"}), "the refusal's answer is counted")
	require.NotContains(t, s.text, "not-the-key")
}
