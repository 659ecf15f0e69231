package metrics

import "github.com/prometheus/client_golang/prometheus"

func newPrunedCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "retention_pruned_rows_total",
		Help: "Rows pruned by this process's retention job, by kind (internal/retention's Prunables): a body dropped or a row deleted.",
	}, []string{"kind"})
}

// PrunedRows counts n rows of kind pruned (a kind of Labels.PruneKinds,
// else other).
func (m *Metrics) PrunedRows(kind string, n int64) {
	if m == nil {
		return
	}
	m.pruned.WithLabelValues(bounded(kind, m.labels.PruneKinds)).Add(float64(n))
}
