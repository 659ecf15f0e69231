package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

const createEndpoint = "POST /v3/projects/{project_id}/users"

// withMetrics applies more; tests serve /metrics on the internal
// listener's ephemeral port.
func withMetrics(more func(*config.Config)) func(*options) {
	return withConfig(func(c *config.Config) {
		if more != nil {
			more(c)
		}
	})
}

// scrape is one parsed answer of /metrics, and its raw text.
type scrape struct {
	families map[string]*dto.MetricFamily
	text     string
}

func (b *bundle) scrape(t *testing.T) scrape {
	t.Helper()
	require.NotEmpty(t, b.Main.AdminAddr())
	resp, err := http.Get("http://" + b.Main.AdminAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	require.NoError(t, err)
	return scrape{families: families, text: string(raw)}
}

// value sums the series of name whose labels include labels: a counter's
// or gauge's value, a histogram's count of observations. A series not
// created yet (a job kind that never ran) is zero.
func (s scrape) value(name string, labels map[string]string) float64 {
	total := 0.0
	f := s.families[name]
series:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// waitMetric waits until name{labels} has grown by want since before:
// jobs bump counters right after the commit the order API already shows,
// before their attempt ends.
func (b *bundle) waitMetric(t *testing.T, before scrape, name string, labels map[string]string, want float64) scrape {
	t.Helper()
	var after scrape
	b.WaitJobsUntil(t, fmt.Sprintf("%s%v to grow by %v", name, labels, want), func() bool {
		after = b.scrape(t)
		return after.value(name, labels)-before.value(name, labels) == want
	})
	return after
}

func TestMetricsCountAPurchaseFromWebhookToKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	// The start-up check of the Luarmor key may still wait for its slot.
	// A poll: the gauge is read from the budget at each scrape, and the
	// check is no job.
	var before scrape
	require.Eventually(t, func() bool {
		before = b.scrape(t)
		waiting := 0.0
		for _, class := range []string{"revoke", "deliver", "renew", "maintenance"} {
			waiting += before.value("fulfiller_luarmor_budget_waiting", map[string]string{"class": class})
		}
		return waiting == 0
	}, 20*time.Second, 20*time.Millisecond, "nothing waits for the budget once the service has started")
	require.Equal(t, 1.0, before.value("fulfiller_replicas_alive", nil))
	require.Positive(t, before.value("go_goroutines", nil), "the Go collector is registered")

	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	ev := b.SessionEvent(t, "checkout.session.completed", s.ID)
	b.Deliver(t, ev)
	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 2)
	b.Deliver(t, ev) // Stripe repeats itself
	require.Equal(t, http.StatusBadRequest, b.PostWebhook(t, ev, fulfillertest.Sign(ev, "whsec_someone_else", time.Now())).Status)

	b.waitMetric(t, before, "fulfiller_keys_delivered_total", nil, 2)
	b.waitIdle(t)
	after := b.waitMetric(t, before, "fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": "completed"}, 2)
	grew := func(name string, labels map[string]string) float64 {
		return after.value(name, labels) - before.value(name, labels)
	}
	completed := map[string]string{"event_type": "checkout.session.completed"}
	require.Equal(t, 1.0, grew("fulfiller_webhooks_received_total", with(completed, "outcome", "recorded")))
	require.Equal(t, 1.0, grew("fulfiller_webhooks_received_total", with(completed, "outcome", "duplicate")))
	require.Equal(t, 1.0, grew("fulfiller_webhooks_received_total", map[string]string{"event_type": "other", "outcome": "bad_signature"}),
		"an unverified body's type is never trusted")
	// The webhook's job fulfils the order, or hands it to one fulfil_order.
	require.Equal(t, 1.0, grew("fulfiller_jobs_total", map[string]string{"kind": "handle_events", "outcome": "completed"}))
	require.LessOrEqual(t, grew("fulfiller_jobs_total", map[string]string{"kind": "fulfil_order", "outcome": "completed"}), 1.0)
	require.Equal(t, 2.0, grew("fulfiller_luarmor_requests_total", map[string]string{"endpoint": createEndpoint, "status": "200"}))
	require.Equal(t, float64(b.creates()), after.value("fulfiller_luarmor_requests_total", map[string]string{"endpoint": createEndpoint}),
		"every create the sandbox saw is counted")
	require.Equal(t, 2.0, grew("fulfiller_key_delivery_seconds", nil), "one observation per key")
	require.GreaterOrEqual(t, grew("fulfiller_luarmor_budget_slots_used_total", map[string]string{"class": "deliver"}), 2.0)
	require.Zero(t, grew("fulfiller_luarmor_rate_limited_total", nil))

	// A delivery counted once stays counted once: nothing runs again.
	require.Equal(t, 2.0, b.scrape(t).value("fulfiller_keys_delivered_total", nil)-before.value("fulfiller_keys_delivered_total", nil))
	requireNothingIdentifying(t, after, s, o.Keys[0].UserKey, o.Keys[1].UserKey)
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for lk, lv := range labels {
		out[lk] = lv
	}
	return out
}

// requireNothingIdentifying scans a whole scrape, label values included,
// for what identifies a buyer or grants access.
func requireNothingIdentifying(t *testing.T, s scrape, session stripefake.Session, keys ...string) {
	t.Helper()
	for _, secret := range append([]string{session.ID, session.CustomerEmail, session.Customer, session.PaymentIntent, luarmorKey, fulfillertest.StripeAPIKey, secretNew}, keys...) {
		require.NotContains(t, s.text, secret)
	}
	require.NotContains(t, s.text, "cs_test_")
	for _, f := range s.families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotRegexp(t, `cs_|@|/v3/projects/[^{]`, l.GetValue(), "%s{%s}", f.GetName(), l.GetName())
			}
		}
	}
}

func TestMetricsBoundEventTypesOutsiders(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	before := b.scrape(t)
	for _, typ := range []string{"customer.created", "cs_live_" + strings.Repeat("x", 20)} {
		b.Deliver(t, fulfillertest.Event(t, typ, []byte(`{"id":"cus_123","object":"customer"}`)))
	}
	// Counted before the webhook is answered.
	after := b.scrape(t)
	require.Equal(t, 2.0, after.value("fulfiller_webhooks_received_total", map[string]string{"event_type": "other", "outcome": "recorded"})-
		before.value("fulfiller_webhooks_received_total", map[string]string{"event_type": "other", "outcome": "recorded"}))
	require.NotContains(t, after.text, "customer.created")
	require.NotContains(t, after.text, "cs_live_")
}

func TestMetricsCountLuarmorRateLimits(t *testing.T) {
	t.Parallel()
	// A 429 pauses Luarmor requests for a window: a short one keeps the
	// test short.
	b := setup(t, withMetrics(func(c *config.Config) { c.LuarmorRateWindow = time.Second }))
	before := b.scrape(t)
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRateLimit, Times: 1})
	_, o := b.buy(t, stripefake.Item{PriceID: priceMonth})
	require.Len(t, o.Keys, 1)

	after := b.waitMetric(t, before, "fulfiller_keys_delivered_total", nil, 1)
	grew := func(name string, labels map[string]string) float64 {
		return after.value(name, labels) - before.value(name, labels)
	}
	require.Equal(t, 1.0, grew("fulfiller_luarmor_rate_limited_total", nil))
	require.Equal(t, 1.0, grew("fulfiller_luarmor_requests_total", map[string]string{"endpoint": createEndpoint, "status": "429"}))
	require.GreaterOrEqual(t, grew("fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": "snoozed"}), 1.0,
		"the job waits out the pause without using an attempt")
	require.Zero(t, grew("fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": "retried"}))
}

func TestMetricsShowFailedOrdersByReason(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	before := b.scrape(t)
	for _, reason := range []string{order.FailureUnknownPrice, order.FailureLuarmorRefused} {
		require.Zero(t, before.value("fulfiller_orders_failed", map[string]string{"reason": reason}), "every known reason is shown, at zero")
	}

	unknown := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog"})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", unknown.ID))
	require.Equal(t, order.FailureUnknownPrice, b.waitFailed(t, unknown.ID).FailureCode)

	b.Catalog.Put("price_typo", catalog.Product{ProjectID: "project_with_a_typo", KeyDays: 7})
	refused := b.paidSession(t, stripefake.Item{PriceID: "price_typo"})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", refused.ID))
	require.Equal(t, order.FailureLuarmorRefused, b.waitFailed(t, refused.ID).FailureCode)

	after := b.scrape(t)
	require.Equal(t, 1.0, after.value("fulfiller_orders_failed", map[string]string{"reason": order.FailureUnknownPrice}))
	require.Equal(t, 1.0, after.value("fulfiller_orders_failed", map[string]string{"reason": order.FailureLuarmorRefused}))
	require.Equal(t, 1.0, after.value("fulfiller_luarmor_requests_total", map[string]string{"endpoint": createEndpoint, "status": "404"}),
		"the refused project's create, by template: the project ID is no label")
	requireNothingIdentifying(t, after, unknown)
	require.NotContains(t, after.text, "project_with_a_typo")

	// Fixed and retried, the order is no longer failed.
	b.Catalog.Put("price_typo", catalog.Product{ProjectID: project, KeyDays: 7})
	b.retry(t, refused.ID, http.StatusAccepted)
	b.WaitOrder(t, refused.ID, "fulfilled")
	require.Zero(t, b.scrape(t).value("fulfiller_orders_failed", map[string]string{"reason": order.FailureLuarmorRefused}))
}

func TestMetricsAreNotOnThePublicListener(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	require.NotEqual(t, b.Main.Addr(), b.Main.AdminAddr())
	resp, err := http.Get(b.URL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.NotContains(t, string(body), "fulfiller_")
	require.NotEmpty(t, b.scrape(t).families)

	off := setup(t, withConfig(func(c *config.Config) { c.AdminAddr = "" })) // ADMIN_ADDR=off
	require.Empty(t, off.Main.AdminAddr())
}

func TestMetricsCountRenewalsAndRevocationsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil))
	s, o := b.subscriptionOrder(t, 2)
	require.Len(t, o.Keys, 2)
	b.waitIdle(t)
	before := b.scrape(t)

	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", time.Now().Unix()+60*day)
	b.Deliver(t, ev)
	b.Deliver(t, ev)
	b.waitIdle(t)
	after := b.waitMetric(t, before, "fulfiller_keys_renewed_total", nil, 2)
	require.Equal(t, 2.0, after.value("fulfiller_jobs_total", map[string]string{"kind": "sync_key", "outcome": "completed"})-
		before.value("fulfiller_jobs_total", map[string]string{"kind": "sync_key", "outcome": "completed"}),
		"one write per key: the repeated event granted nothing new")

	one, _ := b.buy(t, stripefake.Item{PriceID: priceMonth})
	before = b.scrape(t)
	b.refundOrder(t, one) // REFUND_ACTION defaults to blacklist
	b.waitKeys(t, one.ID, "revoked", "blacklisted")
	after = b.waitMetric(t, before, "fulfiller_keys_revoked_total", map[string]string{"action": "blacklist"}, 1)
	require.Zero(t, after.value("fulfiller_keys_revoked_total", map[string]string{"action": "delete"}))
	require.Equal(t, 2.0, after.value("fulfiller_keys_renewed_total", nil), "nothing renewed twice")
}

// The delivery time starts when the first webhook about the order arrived,
// not when a worker got round to recording the order.
func TestDeliveryTimeCountsFromTheWebhooksArrival(t *testing.T) {
	t.Parallel()
	b := setup(t, withMetrics(nil), func(o *options) { o.luarmorLatency = 2 * time.Second })
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	// While the key's create is on its way, say the webhook arrived 100 s
	// earlier than it did.
	_, err := b.Pool.Exec(context.Background(), `UPDATE stripe_events SET received_at = received_at - interval '100 seconds'
		WHERE object_id = $1`, s.ID)
	require.NoError(t, err)
	b.WaitOrder(t, s.ID, "fulfilled")
	watch.WaitCompleted(t, "create_key", 1) // which observes the delivery before it ends

	var sum float64
	for _, m := range b.scrape(t).families["fulfiller_key_delivery_seconds"].GetMetric() {
		sum = m.GetHistogram().GetSampleSum()
	}
	require.GreaterOrEqual(t, sum, 100.0, "measured from the webhook's arrival")
	require.Less(t, sum, 200.0)
}
