package order

import "time"

// Purchase is what an order's buyer paid, and for what, as Stripe reported it
// when the order was recorded and fulfilled. Orders recorded before these
// were kept have none of it: AmountTotal nil, PlacedAt nil, no Lines.
type Purchase struct {
	// AmountTotal is the session's total in Currency's minor unit (cents;
	// whole yen), nil when unknown.
	AmountTotal *int64
	// Currency is the ISO code, lower case, as Stripe writes it.
	Currency string
	// PlacedAt is when the buyer placed the order (the Checkout Session's
	// creation); nil when unknown.
	PlacedAt *time.Time
	// ReceiptURL is Stripe's receipt of the payment; "" when unknown (a
	// free order, a subscription's trial, an order recorded before).
	ReceiptURL string
	// Lines are the session's line items as sold, in Stripe's order.
	Lines []PaidLine
}

// PaidLine is one line item of an order as it was sold.
type PaidLine struct {
	LineItemID string
	PriceID    string
	// ProductName is the catalog's name of the price at the sale, or the
	// name Stripe's line item carried; "" when neither was known.
	ProductName string
	// Description is the catalog's description at the sale; optional.
	Description string
	Quantity    int
	// UnitAmount is the price's unit amount, nil for prices without one
	// (tiered, customer-chosen); AmountTotal the line's total after
	// discounts and taxes.
	UnitAmount  *int64
	AmountTotal *int64
	Currency    string
}

// Name is what a buyer calls the line's product: its recorded name, or
// the price ID when none was known.
func (l PaidLine) Name() string {
	if l.ProductName != "" {
		return l.ProductName
	}
	return l.PriceID
}

// Date is when the order was placed: the Checkout Session's creation, or,
// for orders recorded before that was kept, when the service recorded it.
func (o *Order) Date() time.Time {
	if o.PlacedAt != nil {
		return *o.PlacedAt
	}
	return o.CreatedAt
}

// LineOf returns the line a key was sold under: the line of its line item,
// or, for a unit added later (a subscription's added seat), the first line
// of its price; nil when the order records no such line.
func (o *Order) LineOf(k Key) *PaidLine {
	var byPrice *PaidLine
	for i := range o.Lines {
		l := &o.Lines[i]
		if l.LineItemID == k.LineItemID {
			return l
		}
		if byPrice == nil && l.PriceID == k.PriceID {
			byPrice = l
		}
	}
	return byPrice
}

// ProductName is what a buyer calls the product a key was sold as: its
// line's name, or the key's price ID.
func (o *Order) ProductName(k Key) string {
	if l := o.LineOf(k); l != nil {
		return l.Name()
	}
	return k.PriceID
}
