package app_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestJobLinesNameTheirJob: what a worker logs carries the job's ID and
// kind, without the worker passing them, so an operator can follow one job
// from its failure lines to River UI.
func TestJobLinesNameTheirJob(t *testing.T) {
	t.Parallel()
	var log logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&log, nil))))
	s := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.deliver(t, b.sessionEvent(t, "checkout.session.completed", s.ID))
	b.waitOrder(t, s.ID, "failed")

	var line map[string]any
	var rawLine string
	require.Eventually(t, func() bool {
		for _, raw := range strings.Split(log.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(raw), &m) == nil && m["msg"] == "order cannot be fulfilled" {
				line, rawLine = m, raw
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "fulfil_order", line["job_kind"])
	require.Positive(t, line["job_id"])
	require.Equal(t, 1, strings.Count(rawLine, `"job_id":`), "the job is named once: %s", rawLine)
	require.NotContains(t, log.String(), s.ID, "the order is named by its reference, never its session ID")
}
