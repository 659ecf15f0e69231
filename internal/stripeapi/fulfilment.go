package stripeapi

import (
	"context"

	"github.com/stripe/stripe-go/v76"
)

// fulfilmentExpansions are what fulfilling a paid session reads besides
// the session, expanded into the session's own answer: the charge of its
// receipt, its line items (a first page; a session of more is listed in
// full) and its subscription (for the period its checkout paid).
var fulfilmentExpansions = append([]string{"line_items", "subscription"}, receiptExpansions...)

// CheckoutSessionToFulfil retrieves the Checkout Session id with what its
// fulfilment reads, in one request where it can: the receipt's charge,
// every line item and the subscription. A session of more line items than
// Stripe embeds has them listed; a key that may not expand them all (403)
// reads the session as CheckoutSessionWithReceipt does and lists them. The
// subscription, when the answer does not hold it expanded, is left for
// the caller to read (Subscription).
func (c *Client) CheckoutSessionToFulfil(ctx context.Context, id string) (*stripe.CheckoutSession, []*stripe.LineItem, error) {
	const op = "retrieving checkout session"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, nil, err
	}
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	for _, e := range fulfilmentExpansions {
		p.AddExpand(e)
	}
	s, err := c.api.CheckoutSessions.Get(id, p)
	if err != nil && IsUnauthorized(err) {
		s, err = c.CheckoutSessionWithReceipt(ctx, id)
		if err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		return nil, nil, c.wrap(op, id, err)
	}
	if s.LineItems != nil && !s.LineItems.HasMore {
		return s, s.LineItems.Data, nil
	}
	items, err := c.LineItems(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return s, items, nil
}

// SubscriptionExpanded reports whether a session's subscription was read
// with it (expanded), rather than named by its ID alone.
func SubscriptionExpanded(s *stripe.CheckoutSession) bool {
	return s.Subscription != nil && s.Subscription.Status != ""
}
