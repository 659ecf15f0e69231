package stripeapi

import (
	"context"

	"github.com/stripe/stripe-go/v76"
)

// Dispute retrieves the Dispute id (dp_... or du_...): its status as Stripe
// has it now, whatever an event said.
func (c *Client) Dispute(ctx context.Context, id string) (*stripe.Dispute, error) {
	const op = "retrieving dispute"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.DisputeParams{}
	p.Context = ctx
	d, err := c.api.Disputes.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return d, nil
}

// CancelSubscription cancels the Subscription id at once
// (DELETE /v1/subscriptions/{id}). It needs a secret key, or a restricted
// key with write access to subscriptions. Stripe answers a subscription
// that is already cancelled as one it does not know (IsNotFound).
func (c *Client) CancelSubscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	const op = "cancelling subscription"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.SubscriptionCancelParams{}
	p.Context = ctx
	s, err := c.api.Subscriptions.Cancel(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return s, nil
}
