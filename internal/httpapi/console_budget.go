package httpapi

import (
	"fmt"
	"math"
	"time"

	"fulfiller/internal/postgres"
)

// The overview's chart of the Luarmor budget: the fleet's requests per
// minute over the last hour against LUARMOR_RATE_LIMIT, drawn by the
// template as an inline SVG (no script), its figures also in words and in
// a table for screen readers.

// Chart geometry, in the SVG's own units (it scales to the page's width).
const (
	chartWidth  = 600
	chartHeight = 160
	chartTop    = 12 // room above the highest bar for the budget's label
	chartBarGap = 2
	// budgetZoom is how many times the hour's peak the budget may be
	// before the chart is scaled to the peak instead.
	budgetZoom = 20
)

// budgetChart is the chart as the template draws it.
type budgetChart struct {
	Width, Height int
	Bars          []budgetBar
	// PerMinute is the budget converted to requests a minute; BudgetY its
	// line's height.
	PerMinute float64
	BudgetY   float64
	// BudgetAbove: the budget is over budgetZoom times the hour's peak, so
	// the bars are scaled to the peak and the budget's line is off the
	// chart.
	BudgetAbove bool
	// Top is the requests a minute at the chart's top edge.
	Top string
	// Busy are the minutes with a request, for the table.
	Busy []budgetBar
	// Total, Peak and RateLimited sum up the hour.
	Total, Peak, RateLimited int
	From, To                 string
}

// budgetBar is one minute.
type budgetBar struct {
	Minute              string // "15:04" UTC
	Calls, RateLimited  int
	X, Y, BarW, BarH    float64
	OverBudget, Limited bool
}

// budgetPerMinute is LUARMOR_RATE_LIMIT (count per window) as requests a
// minute; the default's 60 when unset.
func budgetPerMinute(count int, window time.Duration) float64 {
	if count <= 0 || window <= 0 {
		return 60
	}
	return float64(count) * float64(time.Minute) / float64(window)
}

func renderBudgetChart(minutes []postgres.MinuteCalls, perMinute float64) *budgetChart {
	c := &budgetChart{Width: chartWidth, Height: chartHeight, PerMinute: perMinute}
	for _, m := range minutes {
		c.Total += m.Calls
		c.RateLimited += m.RateLimited
		c.Peak = max(c.Peak, m.Calls)
	}
	// The chart's top: the budget with a margin, unless the hour's peak
	// is under a twentieth of it (its bars would hardly show); then the
	// bars are scaled to the peak, the line is left out and the caption
	// says the budget is above the chart.
	top := math.Max(float64(c.Peak), perMinute) * 1.1
	if perMinute > budgetZoom*float64(max(c.Peak, 1)) {
		top, c.BudgetAbove = float64(max(c.Peak, 1))*1.25, true
	}
	c.Top = formatRate(math.Round(top))
	plot := float64(chartHeight - chartTop)
	scale := plot / top
	n := max(len(minutes), 1)
	slot := float64(chartWidth) / float64(n)
	for i, m := range minutes {
		h := float64(m.Calls) * scale
		b := budgetBar{Minute: m.Minute.UTC().Format("15:04"), Calls: m.Calls, RateLimited: m.RateLimited,
			X: round2(float64(i) * slot), BarW: round2(slot - chartBarGap), BarH: round2(h), Y: round2(chartHeight - h),
			OverBudget: float64(m.Calls) > perMinute, Limited: m.RateLimited > 0}
		c.Bars = append(c.Bars, b)
		if m.Calls > 0 {
			c.Busy = append(c.Busy, b)
		}
	}
	c.BudgetY = round2(chartHeight - perMinute*scale)
	if len(minutes) > 0 {
		c.From, c.To = c.Bars[0].Minute, c.Bars[len(c.Bars)-1].Minute
	}
	return c
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// Summary words the chart for its <desc>.
func (c *budgetChart) Summary() string {
	s := fmt.Sprintf("%d Luarmor requests from %s to %s UTC, at most %d in a minute, against a budget of %s a minute",
		c.Total, c.From, c.To, c.Peak, formatRate(c.PerMinute))
	if c.RateLimited > 0 {
		return s + fmt.Sprintf("; Luarmor answered 429 to %d of them", c.RateLimited)
	}
	return s + "; none answered 429"
}

func formatRate(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
