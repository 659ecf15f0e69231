package app

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"fulfiller/internal/budget"
	"fulfiller/internal/jobs"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
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
	})
}

// serveMetrics serves /metrics on METRICS_ADDR, a listener of its own so
// that the public one never shows them; "" leaves it off.
func (m *Main) serveMetrics() error {
	m.Metrics.WatchBudget(m.Budget.WaitingByClass)
	m.Metrics.WatchFleet(m.Pool, jobs.ReplicaStaleAfter)
	m.Metrics.WatchStock(m.Pool, m.stockTargets)
	if m.Config.MetricsAddr == "" {
		return nil
	}
	var err error
	if m.metricsListener, err = net.Listen("tcp", m.Config.MetricsAddr); err != nil {
		return fmt.Errorf("listening on METRICS_ADDR %s (or set it to off): %w", m.Config.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Metrics.Handler())
	m.metricsServer = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	go func() {
		if err := m.metricsServer.Serve(m.metricsListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics server stopped", "error", err)
		}
	}()
	return nil
}

// MetricsAddr is the address /metrics is served on, or "" when off.
func (m *Main) MetricsAddr() string {
	if m.metricsListener == nil {
		return ""
	}
	return m.metricsListener.Addr().String()
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
