package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The metrics below exist for alerting rules (deploy/prometheus): a rule
// can only compare what a scrape shows, so the limits and the last times
// it compares against are metrics too.

var credentialRefusedDesc = prometheus.NewDesc(Namespace+"_credential_refused",
	"1 while the latest check of an API key found it refused (401 or 403), by service: stripe (STRIPE_API_KEY) or luarmor (LUARMOR_API_KEY); 0 while accepted or not yet refused.",
	[]string{"service"}, nil)

// CredentialServices are the services whose API keys the process checks.
var CredentialServices = []string{"stripe", "luarmor"}

func newAlertingGauges() (lastWebhook, budgetPerMinute prometheus.Gauge) {
	lastWebhook = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "webhook_last_received_timestamp_seconds",
		Help: "Unix time of the last Stripe webhook with a valid signature this process recorded or found already recorded; the process's start until the first one.",
	})
	lastWebhook.SetToCurrentTime()
	budgetPerMinute = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "luarmor_budget_slots_per_minute",
		Help: "The fleet-wide Luarmor budget (LUARMOR_RATE_LIMIT per LUARMOR_RATE_WINDOW) in slots a minute: the same on every replica.",
	})
	return lastWebhook, budgetPerMinute
}

// webhookArrived notes a verified delivery for the last-webhook gauge.
func (m *Metrics) webhookArrived(outcome string) {
	if outcome == WebhookRecorded || outcome == WebhookDuplicate {
		m.lastWebhook.SetToCurrentTime()
	}
}

// BudgetLimit records the fleet-wide Luarmor budget: count slots per
// window.
func (m *Metrics) BudgetLimit(count int, window time.Duration) {
	if m == nil || window <= 0 {
		return
	}
	m.budgetPerMinute.Set(float64(count) * float64(time.Minute) / float64(window))
}

// WatchCredentials adds whether each API key was refused at its latest
// check, read from refused (service to refused) at each scrape. Every
// service of CredentialServices shows, at 0 unless refused says otherwise.
func (m *Metrics) WatchCredentials(refused func() map[string]bool) {
	m.registry.MustRegister(&credentialsCollector{refused: refused})
}

type credentialsCollector struct{ refused func() map[string]bool }

func (c *credentialsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- credentialRefusedDesc }

func (c *credentialsCollector) Collect(ch chan<- prometheus.Metric) {
	refused := c.refused()
	for _, service := range CredentialServices {
		v := 0.0
		if refused[service] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(credentialRefusedDesc, prometheus.GaugeValue, v, service)
	}
}
