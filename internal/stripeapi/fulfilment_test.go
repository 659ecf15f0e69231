package stripeapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// A paid session's fulfilment reads the session, its receipt, its line
// items and its subscription in one request.
func TestCheckoutSessionToFulfilReadsEverythingInOneRequest(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_sub", Mode: "subscription", Subscription: "sub_one",
		Items: []stripefake.Item{{PriceID: "price_a", Quantity: 2, Recurring: true}, {PriceID: "price_b", Quantity: 1}}})

	s, items, err := c.CheckoutSessionToFulfil(context.Background(), "cs_test_sub")
	require.NoError(t, err)
	require.Equal(t, "cs_test_sub", s.ID)
	require.Len(t, items, 2)
	require.Equal(t, "price_a", items[0].Price.ID)
	require.EqualValues(t, 2, items[0].Quantity)
	require.NotNil(t, items[0].Price.Recurring)
	require.Equal(t, "price_b", items[1].Price.ID)
	require.True(t, stripeapi.SubscriptionExpanded(s), "the subscription came with the session")
	require.Equal(t, "sub_one", s.Subscription.ID)
	require.Len(t, fake.Requests(), 1, "one request for the whole read")
}

// A session of more line items than Stripe embeds has the rest listed,
// and one whose key may not expand is read as before.
func TestCheckoutSessionToFulfilListsWhatTheSessionDoesNotHold(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	many := make([]stripefake.Item, 15)
	for i := range many {
		many[i] = stripefake.Item{PriceID: fmt.Sprintf("price_%02d", i), Quantity: 1}
	}
	fake.PutSession(stripefake.Session{ID: "cs_test_many", PaymentIntent: "pi_many", Items: many})
	s, items, err := c.CheckoutSessionToFulfil(context.Background(), "cs_test_many")
	require.NoError(t, err)
	require.Len(t, items, 15)
	require.Equal(t, stripefake.ReceiptURL("pi_many"), stripeapi.ReceiptURL(s))
	require.Len(t, fake.Requests(), 2, "the session, then its line items in full")

	fake.PutSession(stripefake.Session{ID: "cs_test_restricted", PaymentIntent: "pi_r", Items: []stripefake.Item{{PriceID: "price_a"}}})
	fake.FailNext("/v1/checkout/sessions/cs_test_restricted", http.StatusForbidden, 1)
	s, items, err = c.CheckoutSessionToFulfil(context.Background(), "cs_test_restricted")
	require.NoError(t, err)
	require.Equal(t, "cs_test_restricted", s.ID)
	require.Len(t, items, 1)
	require.False(t, stripeapi.SubscriptionExpanded(s))

	_, _, err = c.CheckoutSessionToFulfil(context.Background(), "cs_test_unknown")
	require.True(t, stripeapi.IsNotFound(err), "%v", err)
}
