package jobs

import (
	"strings"

	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/order"
)

// paidLines are a session's line items as the order records them: each
// product under the catalog's name and description, or, for a price the
// catalog does not name, the name Stripe's line item carries (the product
// name Checkout showed the buyer), with what the line cost.
func (w *FulfilOrderWorker) paidLines(items []*stripe.LineItem) []order.PaidLine {
	lines := make([]order.PaidLine, 0, len(items))
	for _, it := range items {
		l := order.PaidLine{LineItemID: it.ID, Quantity: int(it.Quantity), ProductName: strings.TrimSpace(it.Description)}
		if it.Currency != "" {
			total := it.AmountTotal
			l.AmountTotal, l.Currency = &total, strings.ToLower(string(it.Currency))
		}
		if p := it.Price; p != nil {
			l.PriceID = p.ID
			// A tiered or customer-chosen price has no unit amount.
			if p.BillingScheme != stripe.PriceBillingSchemeTiered && p.CustomUnitAmount == nil && l.Currency != "" {
				unit := p.UnitAmount
				l.UnitAmount = &unit
			}
			if product, ok := w.Catalog.Lookup(p.ID); ok {
				if product.Name != "" {
					l.ProductName = product.Name
				}
				l.Description = product.Description
			}
		}
		lines = append(lines, l)
	}
	return lines
}
