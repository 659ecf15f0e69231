package httpapi

import (
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/shop"
)

// PurchaseJSON is what an order answer tells of the purchase: its
// reference, date, what was bought and paid, the receipt, and where the
// buyer gets help. Orders recorded before amounts were kept have no
// amount_total, currency or lines.
type PurchaseJSON struct {
	// OrderRef is the short reference the buyer quotes to the shop
	// (ord_…); it names the order in the logs too.
	OrderRef string `json:"order_ref"`
	// Created is when the order was placed (unix seconds).
	Created int64 `json:"created"`
	// AmountTotal is what was paid, in Currency's minor unit (cents,
	// whole yen), as Stripe gives it; AmountFormatted the same written
	// for a buyer ("€12.00", "¥500").
	AmountTotal     *int64 `json:"amount_total,omitempty"`
	Currency        string `json:"currency,omitempty"`
	AmountFormatted string `json:"amount_formatted,omitempty"`
	// ReceiptURL is Stripe's receipt of the payment, when known.
	ReceiptURL string `json:"receipt_url,omitempty"`
	// Lines are the products bought, in Stripe's order.
	Lines []LineJSON `json:"lines,omitempty"`
	// Support is the shop's support contact (SHOP_SUPPORT), in the
	// buyer's answers.
	Support *SupportJSON `json:"support,omitempty"`
}

// LineJSON is one line item of an order.
type LineJSON struct {
	PriceID     string `json:"price_id"`
	ProductName string `json:"product_name"`
	Description string `json:"description,omitempty"`
	Quantity    int    `json:"quantity"`
	// UnitAmount is the price of one unit (absent for tiered and
	// customer-chosen prices), AmountTotal the line's total after
	// discounts and taxes, both in Currency's minor unit.
	UnitAmount  *int64 `json:"unit_amount,omitempty"`
	AmountTotal *int64 `json:"amount_total,omitempty"`
	Currency    string `json:"currency,omitempty"`
}

// SupportJSON is the shop's support contact: an email address or a page.
type SupportJSON struct {
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

func renderPurchase(o *order.Order) PurchaseJSON {
	out := PurchaseJSON{OrderRef: logging.OrderRef(o.CheckoutSessionID), Created: o.Date().Unix(),
		AmountTotal: o.AmountTotal, ReceiptURL: o.ReceiptURL}
	if o.AmountTotal != nil {
		out.Currency, out.AmountFormatted = o.Currency, shop.FormatAmount(*o.AmountTotal, o.Currency)
	}
	for _, l := range o.Lines {
		out.Lines = append(out.Lines, LineJSON{PriceID: l.PriceID, ProductName: l.Name(), Description: l.Description,
			Quantity: l.Quantity, UnitAmount: l.UnitAmount, AmountTotal: l.AmountTotal, Currency: l.Currency})
	}
	return out
}

func supportJSON(c shop.Contact) *SupportJSON {
	if c.IsZero() {
		return nil
	}
	return &SupportJSON{Email: c.Email, URL: c.URL}
}
