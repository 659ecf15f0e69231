package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/catalog"
	"fulfiller/internal/order"
)

func TestPlanChecksEveryBoundBeforeAllocating(t *testing.T) {
	t.Parallel()
	w := &FulfilOrderWorker{Deps: Deps{MaxUnitsPerOrder: 10, Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
		"price_a":      {ProjectID: "p1", KeyDays: 30},
		"price_capped": {ProjectID: "p2", KeyDays: 0, MaxQuantity: 2},
	}}}}
	item := func(id, price string, qty int64) *stripe.LineItem {
		return &stripe.LineItem{ID: id, Price: &stripe.Price{ID: price}, Quantity: qty}
	}
	for _, tc := range []struct {
		name  string
		items []*stripe.LineItem
		code  string
		lines []order.Line
	}{
		{name: "within bounds", items: []*stripe.LineItem{item("li_1", "price_a", 3), item("li_2", "price_capped", 2)},
			lines: []order.Line{{LineItemID: "li_1", Quantity: 3, PriceID: "price_a", ProjectID: "p1", KeyDays: 30},
				{LineItemID: "li_2", Quantity: 2, PriceID: "price_capped", ProjectID: "p2"}}},
		{name: "zero quantity", items: []*stripe.LineItem{item("li_1", "price_a", 0)}, code: order.FailureBadQuantity},
		{name: "negative quantity", items: []*stripe.LineItem{item("li_1", "price_a", -4)}, code: order.FailureBadQuantity},
		{name: "above max_quantity", items: []*stripe.LineItem{item("li_1", "price_capped", 3)}, code: order.FailureTooManyUnits},
		{name: "above the order limit in one line", items: []*stripe.LineItem{item("li_1", "price_a", 1_000_000_000_000)}, code: order.FailureTooManyUnits},
		{name: "above the order limit across lines", items: []*stripe.LineItem{item("li_1", "price_a", 6), item("li_2", "price_a", 5)}, code: order.FailureTooManyUnits},
		{name: "unknown price", items: []*stripe.LineItem{item("li_1", "price_a", 1), item("li_2", "price_gone", 1)}, code: order.FailureUnknownPrice},
		{name: "line without a price", items: []*stripe.LineItem{{ID: "li_9", Quantity: 1}}, code: order.FailureUnknownPrice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, failure := w.plan(tc.items, nil)
			if tc.code == "" {
				require.Nil(t, failure)
				require.Equal(t, tc.lines, lines)
				return
			}
			require.NotNil(t, failure)
			require.Equal(t, tc.code, failure.code)
			require.NotEmpty(t, failure.reason)
			require.Nil(t, lines)
		})
	}
}
