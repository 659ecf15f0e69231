package stripeapi

import (
	"context"

	"github.com/stripe/stripe-go/v76"
)

// Subscription retrieves the Subscription id (sub_...) with every one of
// its items: the object carries the first page of items, and the rest are
// listed from /v1/subscription_items when Stripe says there are more.
// Status, trial_end and current_period_end are top-level in this API
// version.
func (c *Client) Subscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	const op = "retrieving subscription"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.SubscriptionParams{}
	p.Context = ctx
	s, err := c.api.Subscriptions.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	if s.Items == nil || !s.Items.HasMore {
		return s, nil
	}
	items, err := c.subscriptionItems(ctx, id)
	if err != nil {
		return nil, err
	}
	s.Items.Data, s.Items.HasMore = items, false
	return s, nil
}

// subscriptionItems lists every item of the subscription id.
func (c *Client) subscriptionItems(ctx context.Context, id string) ([]*stripe.SubscriptionItem, error) {
	const op = "listing items of subscription"
	p := &stripe.SubscriptionItemListParams{Subscription: stripe.String(id)}
	p.Context = ctx
	p.Limit = stripe.Int64(listPageSize)
	it := c.api.SubscriptionItems.List(p)
	var items []*stripe.SubscriptionItem
	for it.Next() {
		if len(items) == maxListItems {
			return nil, c.wrap(op, id, errTooManyItems)
		}
		items = append(items, it.SubscriptionItem())
	}
	if err := it.Err(); err != nil {
		return nil, c.wrap(op, id, err)
	}
	return items, nil
}
