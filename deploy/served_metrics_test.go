package deploy

import (
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
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi/stripefake"
)

// servedMetrics runs the whole service against its stand-ins, makes one
// sale of a stocked price, and returns the metric families its /metrics
// serves: what the dashboard and the alerting rules may name. The sale
// gives the families whose series appear with their first event (jobs,
// Luarmor requests) a series.
func servedMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	const price, project = "price_alerts_month", "project_alerts"
	svc := fulfillertest.StartService(t, fulfillertest.Options{
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
			price: {ProjectID: project, KeyDays: 30, Stock: 2},
		}},
		Luarmor: sandbox.Options{Projects: []string{project}},
	})
	svc.Buy(t, "buyer@example.com", stripefake.Item{PriceID: price, Quantity: 1})

	var families map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		resp, err := http.Get(svc.AdminURL + "/metrics")
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }() // read only
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err = parser.TextToMetricFamilies(strings.NewReader(string(raw)))
		require.NoError(t, err)
		// Counted when the sale's job attempts end, just after the
		// order shows fulfilled.
		return families["fulfiller_jobs_total"] != nil && families["fulfiller_luarmor_requests_total"] != nil
	}, 20*time.Second, 50*time.Millisecond, "the sale's jobs and Luarmor requests are counted")
	return families
}

// servedFamily returns the family a selected name belongs to: a
// histogram's or summary's _bucket, _sum and _count series belong to it.
func servedFamily(served map[string]*dto.MetricFamily, name string) (string, bool) {
	if _, ok := served[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if f, ok := served[base]; found && ok && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
			return base, true
		}
	}
	return "", false
}

// requireServed fails for every metric expr names that the service does
// not serve, and returns the families it names.
func requireServed(t *testing.T, served map[string]*dto.MetricFamily, where, expr string) []string {
	t.Helper()
	names, err := metricNames(expr)
	require.NoError(t, err, where)
	require.NotEmpty(t, names, "%s: %s names no metric", where, expr)
	var families []string
	for _, n := range names {
		family, ok := servedFamily(served, n)
		require.True(t, ok, "%s: %s is not a metric the service serves (internal/metrics): %s", where, n, expr)
		families = append(families, family)
	}
	return families
}
