// Package stripeapi holds the few Stripe API reads the fulfiller makes:
// retrieving a Checkout Session and its line items, and the Payment Intent,
// Charge and Invoice objects that connect a payment to a subscription.
//
// Every call goes through a stripe-go v76 client.API built from its own
// backend, so two Clients in one process (a test against a fake and another
// against a second fake, say) never share configuration through stripe-go's
// package globals.
package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// StandInHeader is the response header by which the local Stripe stand-in
// that `fulfiller dev` runs (stripefake) says it is not Stripe, with the
// value StandInName; Stripe never sends it. `fulfiller doctor` reads it.
const (
	StandInHeader = "Fulfiller-Stand-In"
	StandInName   = "stripe"
)

// maxNetworkRetries is how many times stripe-go retries a request that failed
// in a way Stripe documents as safe to retry (network errors, 409, 5xx on
// GET, 429 lock_timeout). Two is stripe-go's default; it is spelled out so a
// change of library default does not silently change our behaviour.
const maxNetworkRetries = 2

// listPageSize is the page size asked for when listing. 100 is Stripe's
// maximum, and a Checkout Session holds at most 100 line items, so a session
// normally costs one list request.
const listPageSize = 100

// maxListItems bounds how many objects one list call collects. Stripe caps a
// Checkout Session at 100 line items and invoices rarely have more than a few
// hundred lines; the bound exists so a misbehaving server (or proxy) that
// keeps answering has_more=true cannot make the caller loop and allocate
// without end.
const maxListItems = 10000

// Client makes the Stripe API reads the service needs. It is safe for
// concurrent use.
type Client struct {
	api *client.API
	// apiKey is kept only to scrub it from error messages; it is never
	// formatted into anything.
	apiKey string
}

// New returns a Client that authenticates with apiKey and sends requests to
// baseURL ("" means Stripe's production API, https://api.stripe.com; a
// trailing "/" or "/v1" is accepted). A nil httpClient uses stripe-go's
// default client (80 s timeout, tuned to Stripe's own server-side timeouts);
// pass one to set a different timeout or transport. Callers bound each call
// with its ctx either way.
func New(apiKey, baseURL string, httpClient *http.Client) *Client {
	cfg := &stripe.BackendConfig{
		HTTPClient:        httpClient,
		LeveledLogger:     slogLogger{},
		MaxNetworkRetries: stripe.Int64(maxNetworkRetries),
	}
	if baseURL != "" {
		cfg.URL = stripe.String(baseURL)
	}
	b := stripe.GetBackendWithConfig(stripe.APIBackend, cfg)
	// All three backends point at the same configured one: the service only
	// uses the API backend, and pointing the others at Stripe's defaults
	// would leave a path by which a test could reach the real network.
	api := client.New(apiKey, &stripe.Backends{API: b, Connect: b, Uploads: b})
	return &Client{api: api, apiKey: apiKey}
}

// CheckoutSession retrieves the Checkout Session id (cs_...). Line items are
// not included; use LineItems.
func (c *Client) CheckoutSession(ctx context.Context, id string) (*stripe.CheckoutSession, error) {
	const op = "retrieving checkout session"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	s, err := c.api.CheckoutSessions.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return s, nil
}

// LineItems returns every line item of the Checkout Session sessionID,
// following pagination to the end. Stripe always renders a line item's price
// as an object on this route, so price.id, price.recurring and quantity are
// present without expansion.
func (c *Client) LineItems(ctx context.Context, sessionID string) ([]*stripe.LineItem, error) {
	const op = "listing line items of checkout session"
	if err := c.precheck(ctx, op, sessionID); err != nil {
		return nil, err
	}
	p := &stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(sessionID)}
	p.Context = ctx
	p.Limit = stripe.Int64(listPageSize)
	it := c.api.CheckoutSessions.ListLineItems(p)
	var items []*stripe.LineItem
	for it.Next() {
		if len(items) == maxListItems {
			return nil, c.wrap(op, sessionID, errTooManyItems)
		}
		items = append(items, it.LineItem())
	}
	if err := it.Err(); err != nil {
		return nil, c.wrap(op, sessionID, err)
	}
	return items, nil
}

// PaymentIntent retrieves the Payment Intent id (pi_...).
func (c *Client) PaymentIntent(ctx context.Context, id string) (*stripe.PaymentIntent, error) {
	const op = "retrieving payment intent"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.PaymentIntentParams{}
	p.Context = ctx
	pi, err := c.api.PaymentIntents.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return pi, nil
}

// Charge retrieves the Charge id (ch_... or py_...).
func (c *Client) Charge(ctx context.Context, id string) (*stripe.Charge, error) {
	const op = "retrieving charge"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.ChargeParams{}
	p.Context = ctx
	ch, err := c.api.Charges.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return ch, nil
}

// Invoice retrieves the Invoice id (in_...). Its Lines hold at most the first
// page of lines; use InvoiceLines for all of them.
func (c *Client) Invoice(ctx context.Context, id string) (*stripe.Invoice, error) {
	const op = "retrieving invoice"
	if err := c.precheck(ctx, op, id); err != nil {
		return nil, err
	}
	p := &stripe.InvoiceParams{}
	p.Context = ctx
	in, err := c.api.Invoices.Get(id, p)
	if err != nil {
		return nil, c.wrap(op, id, err)
	}
	return in, nil
}

// InvoiceLines returns every line of the Invoice invoiceID, following
// pagination to the end.
func (c *Client) InvoiceLines(ctx context.Context, invoiceID string) ([]*stripe.InvoiceLineItem, error) {
	const op = "listing lines of invoice"
	if err := c.precheck(ctx, op, invoiceID); err != nil {
		return nil, err
	}
	p := &stripe.InvoiceListLinesParams{Invoice: stripe.String(invoiceID)}
	p.Context = ctx
	p.Limit = stripe.Int64(listPageSize)
	it := c.api.Invoices.ListLines(p)
	var lines []*stripe.InvoiceLineItem
	for it.Next() {
		if len(lines) == maxListItems {
			return nil, c.wrap(op, invoiceID, errTooManyItems)
		}
		lines = append(lines, it.InvoiceLineItem())
	}
	if err := it.Err(); err != nil {
		return nil, c.wrap(op, invoiceID, err)
	}
	return lines, nil
}

var (
	errEmptyID      = errors.New("empty id")
	errTooManyItems = fmt.Errorf("more than %d items; refusing to page further", maxListItems)
)

// precheck rejects calls that must not reach Stripe. An empty ID matters
// most: stripe-go would request "/v1/checkout/sessions/", which is the list
// route, and decode a list into a session without complaint. A context that
// is already done is reported without a request (and without stripe-go
// logging a failed request).
func (c *Client) precheck(ctx context.Context, op, id string) error {
	if id == "" {
		return c.wrap(op, "", errEmptyID)
	}
	if err := ctx.Err(); err != nil {
		return c.wrap(op, id, err)
	}
	return nil
}

// probeSessionID is a well-formed Checkout Session ID that no session has.
const probeSessionID = "cs_test_fulfillerCredentialProbe0000000000"

// CheckKey makes one cheap authenticated read that needs exactly the
// permission the service relies on (reading Checkout Sessions): retrieving
// a session that does not exist. Stripe's "no such session" proves the key
// works; an error that IsUnauthorized proves it does not.
func (c *Client) CheckKey(ctx context.Context) error {
	_, err := c.CheckoutSession(ctx, probeSessionID)
	if err == nil || IsNotFound(err) {
		return nil
	}
	return err
}
