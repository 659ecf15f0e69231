package app

import (
	"fulfiller/internal/budget"
	"fulfiller/internal/jobs"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/retention"
)

// newMetrics returns the process's metrics, each label's values known up
// front.
func newMetrics(stockPrices []string) *metrics.Metrics {
	var classes []string
	for c := budget.ClassRevoke; c <= budget.ClassStock; c++ {
		classes = append(classes, c.String())
	}
	return metrics.New(metrics.Labels{
		EventTypes: jobs.HandledTypes(),
		FailureCodes: []string{
			order.FailureUnknownPrice, order.FailurePaymentFailed, order.FailureLuarmorRefused,
			order.FailureTooManyUnits, order.FailureBadQuantity, order.FailureLivemodeMismatch,
			order.FailureSessionUnknown,
		},
		BudgetClasses: classes,
		RevokeActions: []string{string(order.ActionBlacklist), string(order.ActionDelete)},
		StockPrices:   stockPrices,
		PruneKinds:    retention.Kinds(),
		OrderStatuses: []string{
			string(order.StatusPending), string(order.StatusFulfilled), string(order.StatusRevoked), string(order.StatusFailed),
		},
	})
}

// watchMetrics starts the gauges read at each scrape.
func (m *Main) watchMetrics() {
	m.Metrics.WatchBudget(m.Budget.WaitingByClass)
	m.Metrics.WatchFleet(m.Pool, jobs.ReplicaStaleAfter)
	m.Metrics.WatchStock(m.Pool, m.stockTargets)
	m.Metrics.WatchCredentials(m.Credentials.Refused)
}

// stockTargets maps each price the catalog stocks to its stock: N.
func (m *Main) stockTargets() map[string]int {
	targets := map[string]int{}
	for _, id := range m.Catalog.Stocked() {
		if p, ok := m.Catalog.Lookup(id); ok {
			targets[id] = p.Stock
		}
	}
	return targets
}
