package shop

import (
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// Summary is what the order page and the keys email tell of an order: its
// reference, its date, what was bought and what it cost, and Stripe's
// receipt. An order recorded before amounts were kept has no Total and no
// Lines.
type Summary struct {
	Ref  string // ord_…, what the buyer quotes to the shop
	Date string // the day it was placed, in UTC like every date shown
	// TotalLabel names Total: "Total paid" once Stripe says it is paid.
	TotalLabel string
	Total      string // "€12.00"
	Lines      []ProductLine
	ReceiptURL string
}

// ProductLine is one product bought.
type ProductLine struct {
	Name        string
	Description string
	Price       string // "$5.00 × 3", "€12.00", or "" when unknown
}

// Summarize is o as a buyer reads it.
func Summarize(o *order.Order) Summary {
	s := Summary{Ref: logging.OrderRef(o.CheckoutSessionID), Date: o.Date().UTC().Format("2 January 2006"),
		TotalLabel: "Total", ReceiptURL: o.ReceiptURL}
	if order.Paid(o.PaymentStatus) {
		s.TotalLabel = "Total paid"
	}
	if o.AmountTotal != nil {
		s.Total = FormatAmount(*o.AmountTotal, o.Currency)
	}
	for _, l := range o.Lines {
		line := ProductLine{Name: l.Name(), Description: l.Description}
		switch {
		case l.UnitAmount != nil:
			line.Price = FormatUnits(*l.UnitAmount, l.Quantity, l.Currency)
		case l.AmountTotal != nil:
			line.Price = FormatAmount(*l.AmountTotal, l.Currency)
		}
		s.Lines = append(s.Lines, line)
	}
	return s
}
