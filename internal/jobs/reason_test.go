package jobs

import (
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/catalog"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// TestUnknownPricesReasonIsBounded: an order of 3,000 unknown prices names
// a few of them and counts the rest, instead of a reason (logged at every
// restart, stored in the order) of tens of thousands of characters.
func TestUnknownPricesReasonIsBounded(t *testing.T) {
	t.Parallel()
	w := &FulfilOrderWorker{Deps: Deps{MaxUnitsPerOrder: 10000, Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{}}}}
	var items []*stripe.LineItem
	for i := range 3000 {
		items = append(items, &stripe.LineItem{ID: fmt.Sprintf("li_%d", i), Quantity: 1,
			Price: &stripe.Price{ID: fmt.Sprintf("price_unknown_%04d_abcdefghijkl", i)}})
	}
	_, failure := w.plan(items, nil)
	require.NotNil(t, failure)
	require.Equal(t, order.FailureUnknownPrice, failure.code)
	require.LessOrEqual(t, utf8.RuneCountInString(failure.reason), logging.MaxReasonLength)
	require.Contains(t, failure.reason, "price_unknown_0000_abcdefghijkl")
	require.Contains(t, failure.reason, "and 2990 more")
	require.Contains(t, failure.reason, "add it to CATALOG_FILE", "the advice survives")
}
