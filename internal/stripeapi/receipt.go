package stripeapi

import (
	"context"
	neturl "net/url"

	"github.com/stripe/stripe-go/v76"
)

// receiptExpansions are the charges a Checkout Session's receipt is read
// from, expanded into the session's own answer so the receipt costs no
// request of its own: a payment's latest charge, or a subscription's
// first invoice's charge.
var receiptExpansions = []string{"payment_intent.latest_charge", "invoice.charge"}

// CheckoutSessionWithReceipt retrieves the Checkout Session id as
// CheckoutSession does, with the charge that paid it expanded, so that
// ReceiptURL finds Stripe's receipt: one request, as many as without.
// Expanding needs read access to Payment Intents, Invoices and Charges; a
// restricted key without it is answered 403 for the whole request, and the
// session is then read again without them (its receipt unknown), so a key
// that may read sessions always gets the session.
func (c *Client) CheckoutSessionWithReceipt(ctx context.Context, id string) (*stripe.CheckoutSession, error) {
	const op = "retrieving checkout session"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	for _, e := range receiptExpansions {
		p.AddExpand(e)
	}
	s, err := c.api.CheckoutSessions.Get(id, p)
	if err != nil && IsUnauthorized(err) {
		return c.CheckoutSession(ctx, id)
	}
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return s, nil
}

// ReceiptURL is the receipt of the charge that paid s, when s was read
// with it (CheckoutSessionWithReceipt) and Stripe made one: "" for a
// session read without its charge, a free order, a trial. Only an https
// address is taken: it becomes a link on the buyer's page.
func ReceiptURL(s *stripe.CheckoutSession) string {
	var url string
	switch {
	case s.PaymentIntent != nil && s.PaymentIntent.LatestCharge != nil:
		url = s.PaymentIntent.LatestCharge.ReceiptURL
	case s.Invoice != nil && s.Invoice.Charge != nil:
		url = s.Invoice.Charge.ReceiptURL
	}
	if !isHTTPS(url) {
		return ""
	}
	return url
}

// isHTTPS reports whether raw is an absolute https URL with a host.
func isHTTPS(raw string) bool {
	u, err := neturl.Parse(raw)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil
}
