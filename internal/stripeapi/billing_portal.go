package stripeapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/stripe/stripe-go/v76"
)

// CreateBillingPortalSession opens a session of Stripe's customer portal
// for the customer customerID (cus_...): POST /v1/billing_portal/sessions.
// The portal sends the buyer back to returnURL ("" leaves it to the
// portal configuration's default return URL).
//
// The answer's URL lets whoever holds it manage the customer's
// subscriptions and payment methods until it expires, minutes later:
// redirect the buyer to it at once, and never store or log it. Errors
// name the customer, never the URL or the return URL.
//
// What the portal allows (cancelling, switching plans, updating the card)
// is the account's portal configuration in Stripe's Dashboard; without one,
// Stripe refuses the call and IsPortalNotConfigured reports it. It needs a
// secret key, or a restricted key with write access to the customer
// portal.
//
// stripe-go sends the request with an idempotency key of its own, so its
// retries of a request cut off never open two sessions.
func (c *Client) CreateBillingPortalSession(ctx context.Context, customerID, returnURL string) (*stripe.BillingPortalSession, error) {
	const op = "creating a customer portal session for customer"
	if err := c.precheck(ctx, op, customerID); err != nil {
		return nil, err
	}
	p := &stripe.BillingPortalSessionParams{Customer: stripe.String(customerID)}
	if returnURL != "" {
		p.ReturnURL = stripe.String(returnURL)
	}
	p.Context = ctx
	s, err := c.api.BillingPortalSessions.New(p)
	if err != nil {
		return nil, c.wrap(op, customerID, err)
	}
	return s, nil
}

// IsPortalNotConfigured reports whether err is Stripe refusing a customer
// portal session because the account has no portal configuration in the
// key's mode: 400 invalid_request_error, "No configuration provided and
// your test mode default configuration has not been created. Provide a
// configuration or create your default by saving your customer portal
// settings in test mode at https://dashboard.stripe.com/test/settings/billing/portal."
// (live mode alike). Stripe gives the refusal no code of its own, so its
// message is what tells it apart. The fix is the shop's: save the portal
// settings in the Dashboard.
func IsPortalNotConfigured(err error) bool {
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != http.StatusBadRequest {
		return false
	}
	return strings.Contains(se.Msg, "No configuration provided") ||
		strings.Contains(se.Msg, "default configuration has not been created")
}

// IsUnknownCustomer reports whether err is Stripe answering that the
// customer a request names does not exist (deleted, or of another account
// or mode): resource_missing on the customer parameter, which Stripe
// answers 400 when the customer is a parameter rather than the path.
func IsUnknownCustomer(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.Code == stripe.ErrorCodeResourceMissing && se.Param == "customer"
}
