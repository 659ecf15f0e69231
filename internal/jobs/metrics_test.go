package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// counter reads name{labels} from m's registry; 0 when not created yet.
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for k, v := range labels {
				match := false
				for _, l := range s.GetLabel() {
					match = match || (l.GetName() == k && l.GetValue() == v)
				}
				if !match {
					continue series
				}
			}
			if s.Counter != nil {
				total += s.GetCounter().GetValue()
			}
			if s.Histogram != nil {
				total += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// A run cut off between Luarmor's answer and its commit is retried, finds
// the key and delivers it: the key is counted once, by the run whose
// commit recorded it, and each attempt once with its outcome.
func TestKeyDeliveredIsCountedOnceAcrossACrashedRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := metrics.New(metrics.Labels{})
	b.deps.Metrics = m
	var crashes atomic.Int32
	client, err := jobs.NewClientWithCrash(b.deps, jobs.Config{}, func(ctx context.Context) error {
		if crashes.Add(1) == 1 {
			return errors.New("process killed after Luarmor created the key")
		}
		return nil
	})
	require.NoError(t, err)
	w := b.start(t, client)

	b.purchase(t, client, "cs_test_metrics001", 1)
	// An attempt is counted before River records its outcome, so before
	// the job's event.
	w.WaitCompleted(t, "create_key", 1)
	o, err := postgres.GetOrder(context.Background(), b.pool, "cs_test_metrics001")
	require.NoError(t, err)
	require.Equal(t, order.StatusFulfilled, o.Status)
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": metrics.JobCompleted}))

	require.Equal(t, 1.0, counter(t, m, "fulfiller_keys_delivered_total", nil))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_key_delivery_seconds", nil))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": metrics.JobRetried}))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "fulfil_order", "outcome": metrics.JobCompleted}))
}
