package stripeapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// portalCustomer registers a subscription of customer in the fake, which
// is how the fake comes to know a customer.
func portalCustomer(fake *fulfillertest.Stripe, customer string) {
	fake.PutSubscription(stripefake.Subscription{ID: "sub_" + strings.TrimPrefix(customer, "cus_"), Customer: customer,
		CurrentPeriodStart: 1_800_000_000, CurrentPeriodEnd: 1_802_592_000,
		Items: []stripefake.SubscriptionItem{{PriceID: "price_month", Quantity: 1}}})
}

func TestBillingPortalSessionIsOpenedForTheCustomerWithItsReturnURL(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	portalCustomer(fake, "cus_portal")
	const back = "https://keys.shop.example/orders/ol_back"

	s, err := c.CreateBillingPortalSession(context.Background(), "cus_portal", back)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s.ID, "bps_"), s.ID)
	require.Equal(t, "billing_portal.session", s.Object)
	require.Equal(t, "cus_portal", s.Customer)
	require.Equal(t, back, s.ReturnURL)
	require.Equal(t, stripefake.DefaultPortalConfiguration, s.Configuration.ID)
	require.False(t, s.Livemode)
	require.NotZero(t, s.Created)

	sessions := fake.BillingPortalSessions()
	require.Len(t, sessions, 1)
	require.Equal(t, stripefake.PortalSession{ID: s.ID, Customer: "cus_portal", ReturnURL: back, URL: s.URL,
		Created: sessions[0].Created}, sessions[0])

	// The session's URL is a page of the fake's own, for a browser.
	resp, err := http.Get(s.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), `<code id="customer">cus_portal</code>`)
	require.Contains(t, string(page), `href="`+back+`"`)
	require.Contains(t, string(page), "sub_portal")
}

func TestBillingPortalSessionRefusals(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	portalCustomer(fake, "cus_known")
	ctx := context.Background()

	_, err := c.CreateBillingPortalSession(ctx, "cus_gone", "https://keys.shop.example/back")
	require.True(t, stripeapi.IsUnknownCustomer(err), "%v", err)
	require.False(t, stripeapi.IsRetryable(err))
	require.False(t, stripeapi.IsPortalNotConfigured(err))
	require.ErrorContains(t, err, "creating a customer portal session for customer cus_gone: 400 invalid_request_error/resource_missing")
	require.NotContains(t, err.Error(), "keys.shop.example", "the return URL stays out of errors")

	fake.SetBillingPortalConfigured(false)
	_, err = c.CreateBillingPortalSession(ctx, "cus_known", "")
	require.True(t, stripeapi.IsPortalNotConfigured(err), "%v", err)
	require.False(t, stripeapi.IsRetryable(err))
	require.False(t, stripeapi.IsUnknownCustomer(err))
	require.ErrorContains(t, err, "saving your customer portal settings")
	fake.SetBillingPortalConfigured(true)

	_, err = c.CreateBillingPortalSession(ctx, "cus_known", "not a url")
	require.Error(t, err)
	require.Contains(t, err.Error(), "(param return_url)")

	before := len(fake.Requests())
	_, err = c.CreateBillingPortalSession(ctx, "", "https://keys.shop.example/back")
	require.ErrorContains(t, err, "empty id")
	require.Len(t, fake.Requests(), before, "an empty customer never reaches Stripe")
	require.Empty(t, fake.BillingPortalSessions(), "nothing refused opened a session")
}

// A POST that fails with 500 is not repeated by stripe-go (Stripe's
// idempotency layer would replay the failure); the failure is retryable
// later. A 503 is repeated at once, with the same idempotency key, so a
// session whose answer was lost is never opened twice.
func TestBillingPortalSessionFailuresAndRetries(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	portalCustomer(fake, "cus_retry")
	const path = "/v1/billing_portal/sessions"

	fake.FailNext(path, http.StatusInternalServerError, 5)
	_, err := c.CreateBillingPortalSession(context.Background(), "cus_retry", "https://keys.shop.example/back")
	require.True(t, stripeapi.IsRetryable(err), "%v", err)
	require.Equal(t, 1, countPosts(fake, path), "stripe-go does not repeat a POST answered 500")
	fake.FailNext(path, 0, 0)

	fake.FailNext(path, http.StatusServiceUnavailable, 1)
	s, err := c.CreateBillingPortalSession(context.Background(), "cus_retry", "https://keys.shop.example/back")
	require.NoError(t, err)
	require.Equal(t, 3, countPosts(fake, path), "the 503 was repeated")
	require.Len(t, fake.BillingPortalSessions(), 1)
	require.Equal(t, s.ID, fake.BillingPortalSessions()[0].ID)
}

func countPosts(fake *fulfillertest.Stripe, path string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost && r.Path == path {
			n++
		}
	}
	return n
}
