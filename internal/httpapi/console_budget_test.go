package httpapi

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres"
)

// TestBudgetChartDrawsEachMinuteAgainstTheBudget: each minute is a bar as
// tall as its requests, the budget a line at its height, a minute over
// the budget or with a 429 marked, and the figures in words.
func TestBudgetChartDrawsEachMinuteAgainstTheBudget(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	minutes := []postgres.MinuteCalls{
		{Minute: start, Calls: 0},
		{Minute: start.Add(time.Minute), Calls: 30},
		{Minute: start.Add(2 * time.Minute), Calls: 66, RateLimited: 2},
	}
	perMinute := budgetPerMinute(10, 10*time.Second)
	require.InDelta(t, 60, perMinute, 1e-9, "10 per 10 s is 60 a minute")
	c := renderBudgetChart(minutes, perMinute)
	require.Equal(t, 96, c.Total)
	require.Equal(t, 66, c.Peak)
	require.Equal(t, 2, c.RateLimited)
	require.Len(t, c.Bars, 3)
	require.Len(t, c.Busy, 2, "the table lists the minutes with requests")
	require.Zero(t, c.Bars[0].BarH)
	require.InDelta(t, c.Bars[2].BarH, 2*c.Bars[1].BarH*66/60, 0.05, "bars are proportional to the requests")
	require.InDelta(t, float64(chartHeight)-c.Bars[1].BarH*2, c.BudgetY, 0.05, "the budget's line stands at 60")
	require.False(t, c.Bars[1].OverBudget)
	require.True(t, c.Bars[2].OverBudget)
	require.True(t, c.Bars[2].Limited)
	require.Equal(t, "12:00", c.From)
	require.Equal(t, "12:02", c.To)
	require.Contains(t, c.Summary(), "96 Luarmor requests from 12:00 to 12:02 UTC, at most 66 in a minute, against a budget of 60 a minute")
	require.Contains(t, c.Summary(), "answered 429 to 2")

	var buf bytes.Buffer
	d := consoleData{Title: "Overview", Section: "overview", Overview: &consoleOverview{Budget: c}}
	require.NoError(t, consoleTemplates.ExecuteTemplate(&buf, "console-overview.html", d))
	html := buf.String()
	require.Contains(t, html, `<svg class="budget-chart" id="budget-chart" role="img" aria-labelledby="budget-title budget-desc"`)
	require.Contains(t, html, `class="budget-bar over limited"`)
	require.Contains(t, html, `data-minute="12:02" data-calls="66" data-rate-limited="2"`)
	require.Equal(t, 1, strings.Count(html, `class="budget-line"`))
	require.Contains(t, html, "<td>12:02</td><td>66</td><td>2</td>")
}

// TestBudgetPerMinuteDefaultsToLuarmors: an unset budget is Luarmor's 60 a
// minute, and a window other than a minute is converted.
func TestBudgetPerMinuteDefaultsToLuarmors(t *testing.T) {
	require.InDelta(t, 60, budgetPerMinute(0, 0), 1e-9)
	require.InDelta(t, 30, budgetPerMinute(60, 2*time.Minute), 1e-9)
	require.Equal(t, "30", formatRate(30))
	require.Equal(t, "7.5", formatRate(7.5))
}

// TestBudgetChartZoomsOnAnHourFarUnderTheBudget: with a budget far above
// the hour's requests the bars are scaled to the peak, so they show, and
// the caption says the budget's line is above the chart.
func TestBudgetChartZoomsOnAnHourFarUnderTheBudget(t *testing.T) {
	c := renderBudgetChart([]postgres.MinuteCalls{{Minute: time.Now(), Calls: 4}, {Minute: time.Now(), Calls: 2}}, 100000)
	require.True(t, c.BudgetAbove)
	require.Equal(t, "5", c.Top)
	require.InDelta(t, float64(chartHeight-chartTop)*4/5, c.Bars[0].BarH, 0.05)
	var buf bytes.Buffer
	require.NoError(t, consoleTemplates.ExecuteTemplate(&buf, "console-overview.html",
		consoleData{Overview: &consoleOverview{Budget: c}}))
	require.NotContains(t, buf.String(), `class="budget-line"`)
	require.Contains(t, buf.String(), "budget: 100000 a minute, above the chart's top (5)")
}
