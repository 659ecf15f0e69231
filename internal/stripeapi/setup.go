package stripeapi

import (
	"context"

	"github.com/stripe/stripe-go/v76"
)

// Price retrieves the price id (price_...), for checking that what the
// catalog sells exists, is active and is billed as the catalog expects.
func (c *Client) Price(ctx context.Context, id string) (*stripe.Price, error) {
	const op = "retrieving price"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.PriceParams{}
	p.Context = ctx
	price, err := c.api.Prices.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return price, nil
}

// maxWebhookEndpoints bounds the listing: Stripe allows 16 endpoints per
// account and mode, so a longer list is a misbehaving server.
const maxWebhookEndpoints = 100

// WebhookEndpoints lists the account's webhook endpoints (of the key's
// mode), following pagination to the end.
func (c *Client) WebhookEndpoints(ctx context.Context) ([]*stripe.WebhookEndpoint, error) {
	const op = "listing webhook endpoints"
	if err := ctx.Err(); err != nil {
		return nil, c.wrap(op, "", err)
	}
	p := &stripe.WebhookEndpointListParams{}
	p.Context = ctx
	p.Limit = stripe.Int64(listPageSize)
	it := c.api.WebhookEndpoints.List(p)
	var out []*stripe.WebhookEndpoint
	for it.Next() {
		if len(out) == maxWebhookEndpoints {
			return nil, c.wrap(op, "", errTooManyItems)
		}
		out = append(out, it.WebhookEndpoint())
	}
	if err := it.Err(); err != nil {
		return nil, c.wrap(op, "", err)
	}
	return out, nil
}
