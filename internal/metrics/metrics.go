// Package metrics exposes the service's Prometheus metrics: what arrived
// (webhooks), what the workers did (jobs, Luarmor calls, the budget) and
// what buyers got (keys delivered, revoked, renewed; orders failed; time to
// deliver). Each process owns one Metrics with its own registry, served by
// Handler on a listener of its own (METRICS_ADDR), never the public one.
//
// Every label value comes from a fixed set: job kinds, endpoint templates,
// budget classes and revocation actions are constants of the code, HTTP
// statuses are numbers, and the two values that come from outside, a
// webhook's event type and an order's failure code, are checked against
// the sets given to New and counted as "other" when unknown. No label ever
// holds a Checkout Session ID, license key, email or raw path, so a scrape
// is safe to store and its series stay bounded whatever callers send.
//
// A nil *Metrics records nothing, so packages instrumented here work (and
// are tested) without it.
package metrics

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of the service.
const Namespace = "fulfiller"

// Other is the label value of anything outside a label's known set.
const Other = "other"

// Webhook outcomes: what the endpoint answered.
const (
	WebhookRecorded     = "recorded"      // 200, stored for the first time
	WebhookDuplicate    = "duplicate"     // 200, an event ID already stored
	WebhookBadSignature = "bad_signature" // 400, no valid signature
	WebhookRejected     = "rejected"      // 4xx, unreadable, too large or malformed
	WebhookUnavailable  = "unavailable"   // 503, the event's transaction failed
)

// Job outcomes: what became of one attempt.
const (
	JobCompleted = "completed"
	JobRetried   = "retried"   // failed; River tries again with backoff
	JobSnoozed   = "snoozed"   // waits (the budget, a 429) without using an attempt
	JobCancelled = "cancelled" // failed for good (JobCancel)
	JobDiscarded = "discarded" // failed its last attempt
)

// LatencyBuckets are the bounds, in seconds, of the webhook-to-key
// histogram: a key normally takes well under a second, a backlog behind
// the Luarmor budget minutes, and past ten minutes something is wrong.
var LatencyBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Labels are the label values known when the process starts. EventTypes
// and FailureCodes bound what outsiders send; the others only create their
// series at zero.
type Labels struct {
	EventTypes    []string // handled Stripe event types
	FailureCodes  []string // orders' failure codes
	BudgetClasses []string // the Luarmor budget's classes
	RevokeActions []string // what a revocation does to a key
	StockPrices   []string // prices the catalog keeps a stock of
	OrderStatuses []string // the statuses an order can have
	PruneKinds    []string // what retention prunes
}

// Metrics holds the collectors of one process.
type Metrics struct {
	registry *prometheus.Registry
	handler  http.Handler
	labels   Labels

	webhooks        *prometheus.CounterVec
	jobs            *prometheus.CounterVec
	luarmorCalls    *prometheus.CounterVec
	luarmor429s     prometheus.Counter
	budgetSlots     *prometheus.CounterVec
	keysDelivered   prometheus.Counter
	keysRevoked     *prometheus.CounterVec
	keysRenewed     prometheus.Counter
	deliveryLatency prometheus.Histogram
	stockRefills    *prometheus.CounterVec
	stockSales      *prometheus.CounterVec
	lastWebhook     prometheus.Gauge
	budgetPerMinute prometheus.Gauge
	pruned          *prometheus.CounterVec
}

// New returns the metrics of one process, registered (with the Go runtime
// and process collectors) in a registry of their own.
func New(labels Labels) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		labels:   labels,
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "webhooks_received_total",
			Help: "Stripe webhook deliveries by event type (handled types, else other) and outcome: recorded, duplicate, bad_signature, rejected (unreadable or malformed), unavailable (503, Stripe retries).",
		}, []string{"event_type", "outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jobs_total",
			Help: "Job attempts by kind and outcome: completed, retried, snoozed (waiting without using an attempt), cancelled (failed for good), discarded (failed its last attempt).",
		}, []string{"kind", "outcome"}),
		luarmorCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "luarmor_requests_total",
			Help: "Luarmor API requests by endpoint template and HTTP status; status is transport_error when no answer arrived.",
		}, []string{"endpoint", "status"}),
		luarmor429s: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "luarmor_rate_limited_total",
			Help: "Luarmor answers 429 received by this process; each pauses the whole fleet's Luarmor requests for a window.",
		}),
		budgetSlots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "luarmor_budget_slots_used_total",
			Help: "Slots of the fleet-wide Luarmor budget granted to this process, by class.",
		}, []string{"class"}),
		keysDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "keys_delivered_total",
			Help: "License keys delivered for purchased units.",
		}),
		keysRevoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "keys_revoked_total",
			Help: "License keys revoked after a dispute, refund or fraud warning, by action (blacklist, delete, revert_extension: the days a revoked purchase added taken back).",
		}, []string{"action"}),
		keysRenewed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "keys_renewed_total",
			Help: "Subscription renewals applied to a license key.",
		}),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "key_delivery_seconds",
			Help:    "Seconds from an order's first webhook received (or its session confirmed with Stripe by the success page, if that came first) to each of its keys delivered.",
			Buckets: LatencyBuckets,
		}),
	}
	m.stockRefills, m.stockSales = newStockCounters()
	m.lastWebhook, m.budgetPerMinute = newAlertingGauges()
	m.pruned = newPrunedCounter()
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.webhooks, m.jobs, m.luarmorCalls, m.luarmor429s, m.budgetSlots,
		m.keysDelivered, m.keysRevoked, m.keysRenewed, m.deliveryLatency,
		m.stockRefills, m.stockSales, m.lastWebhook, m.budgetPerMinute, m.pruned,
	)
	m.initSeries()
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		Registry:            m.registry, // counts its own failed scrapes
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
	return m
}

// initSeries creates every series of the known label values at zero, so
// dashboards and rate() see a counter from the start rather than from its
// first increment.
func (m *Metrics) initSeries() {
	for _, t := range append(slices.Clone(m.labels.EventTypes), Other) {
		for _, o := range []string{WebhookRecorded, WebhookDuplicate, WebhookBadSignature, WebhookRejected, WebhookUnavailable} {
			m.webhooks.WithLabelValues(t, o)
		}
	}
	for _, c := range m.labels.BudgetClasses {
		m.budgetSlots.WithLabelValues(c)
	}
	for _, a := range m.labels.RevokeActions {
		m.keysRevoked.WithLabelValues(a)
	}
	for _, k := range m.labels.PruneKinds {
		m.pruned.WithLabelValues(k)
	}
	for _, p := range m.labels.StockPrices {
		m.stockRefills.WithLabelValues(p)
		m.stockSales.WithLabelValues(p, StockHit)
		m.stockSales.WithLabelValues(p, StockMiss)
	}
}

// Registry is the process's registry, for collectors registered elsewhere.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// bounded returns v if it is one of known, else Other.
func bounded(v string, known []string) string {
	if slices.Contains(known, v) {
		return v
	}
	return Other
}

// WebhookReceived counts one webhook delivery. eventType is the event's
// claimed type: pass "" when the body was not verified.
func (m *Metrics) WebhookReceived(eventType, outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(bounded(eventType, m.labels.EventTypes), outcome).Inc()
	m.webhookArrived(outcome)
}

// JobFinished counts one attempt of a job. kind is a registered worker's:
// River runs no other.
func (m *Metrics) JobFinished(kind, outcome string) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(kind, outcome).Inc()
}

// LuarmorRequest counts one Luarmor request to endpoint, a route template
// of the client's own, answered with status, or with none (status 0).
func (m *Metrics) LuarmorRequest(endpoint string, status int) {
	if m == nil {
		return
	}
	s := "transport_error"
	switch {
	case status >= 100 && status <= 599:
		s = strconv.Itoa(status)
	case status != 0:
		s = Other
	}
	m.luarmorCalls.WithLabelValues(endpoint, s).Inc()
	if status == http.StatusTooManyRequests {
		m.luarmor429s.Inc()
	}
}

// BudgetSlotGranted counts a slot of the Luarmor budget granted to class.
func (m *Metrics) BudgetSlotGranted(class string) {
	if m == nil {
		return
	}
	m.budgetSlots.WithLabelValues(class).Inc()
}

// KeyDelivered counts a key delivered sinceOrderSeconds after its order
// was recorded.
func (m *Metrics) KeyDelivered(sinceOrderSeconds float64) {
	if m == nil {
		return
	}
	m.keysDelivered.Inc()
	m.deliveryLatency.Observe(max(sinceOrderSeconds, 0))
}

// RevokedExtension is the action of a revoked purchase that had extended an
// earlier key: its days are taken back and the key stays usable.
const RevokedExtension = "revert_extension"

// KeyRevoked counts a key revoked by action.
func (m *Metrics) KeyRevoked(action string) {
	if m == nil {
		return
	}
	m.keysRevoked.WithLabelValues(action).Inc()
}

// KeyRenewed counts a renewal applied to a key.
func (m *Metrics) KeyRenewed() {
	if m == nil {
		return
	}
	m.keysRenewed.Inc()
}
