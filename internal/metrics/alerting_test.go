package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/metrics"
)

// gauges scrapes m and returns each gauge series by its name and labels,
// rendered as name{k=v,...}.
func gauges(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range families {
		if f.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] = s.GetGauge().GetValue()
		}
	}
	return out
}

const lastWebhook = "fulfiller_webhook_last_received_timestamp_seconds{}"

// The last webhook's time moves with every delivery whose signature held,
// new or repeated, and with nothing a stranger can send.
func TestLastWebhookTimeMovesWithVerifiedDeliveriesOnly(t *testing.T) {
	t.Parallel()
	start := float64(time.Now().UnixNano()) / 1e9
	m := metrics.New(metrics.Labels{EventTypes: []string{"checkout.session.completed"}})
	started := gauges(t, m)[lastWebhook]
	require.GreaterOrEqual(t, started, start, "a process that saw none yet shows its start")

	for _, outcome := range []string{metrics.WebhookBadSignature, metrics.WebhookRejected, metrics.WebhookUnavailable} {
		time.Sleep(2 * time.Millisecond)
		m.WebhookReceived("", outcome)
		require.Equal(t, started, gauges(t, m)[lastWebhook], outcome)
	}
	last := started
	for _, outcome := range []string{metrics.WebhookRecorded, metrics.WebhookDuplicate} {
		time.Sleep(2 * time.Millisecond)
		m.WebhookReceived("checkout.session.completed", outcome)
		now := gauges(t, m)[lastWebhook]
		require.Greater(t, now, last, outcome)
		last = now
	}
}

func TestBudgetLimitIsShownPerMinute(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Labels{})
	m.BudgetLimit(30, 30*time.Second)
	require.Equal(t, 60.0, gauges(t, m)["fulfiller_luarmor_budget_slots_per_minute{}"])
	m.BudgetLimit(60, 2*time.Minute)
	require.Equal(t, 30.0, gauges(t, m)["fulfiller_luarmor_budget_slots_per_minute{}"])
}

func TestRefusedCredentialsShowPerService(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Labels{})
	refused := map[string]bool{}
	m.WatchCredentials(func() map[string]bool { return refused })
	g := gauges(t, m)
	require.Equal(t, 0.0, g["fulfiller_credential_refused{service=stripe}"])
	require.Equal(t, 0.0, g["fulfiller_credential_refused{service=luarmor}"], "shown at zero before any refusal")

	refused = map[string]bool{"luarmor": true}
	g = gauges(t, m)
	require.Equal(t, 0.0, g["fulfiller_credential_refused{service=stripe}"])
	require.Equal(t, 1.0, g["fulfiller_credential_refused{service=luarmor}"])
}
