package stripeapi_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

func TestSubscriptionWithTrialAndItems(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSubscription(stripefake.Subscription{
		ID: "sub_trial", Customer: "cus_1", Status: "trialing",
		CurrentPeriodStart: 1700000000, CurrentPeriodEnd: 1700259200, TrialStart: 1700000000, TrialEnd: 1700259200,
		Items: []stripefake.SubscriptionItem{{PriceID: "price_monthly", Quantity: 3}, {ID: "si_fixed", PriceID: "price_other", Quantity: 1}},
	})
	s, err := c.Subscription(context.Background(), "sub_trial")
	require.NoError(t, err)
	require.Equal(t, "sub_trial", s.ID)
	require.Equal(t, stripe.SubscriptionStatusTrialing, s.Status)
	require.Equal(t, int64(1700259200), s.TrialEnd)
	require.Equal(t, int64(1700259200), s.CurrentPeriodEnd)
	require.Equal(t, "cus_1", s.Customer.ID)
	require.Len(t, s.Items.Data, 2)
	require.Equal(t, "si_trial_1", s.Items.Data[0].ID)
	require.Equal(t, "price_monthly", s.Items.Data[0].Price.ID)
	require.Equal(t, int64(3), s.Items.Data[0].Quantity)
	require.NotNil(t, s.Items.Data[0].Price.Recurring, "subscription prices are recurring")
	require.Equal(t, "si_fixed", s.Items.Data[1].ID)
}

func TestSubscriptionWithoutTrialHasNoTrialEnd(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSubscription(stripefake.Subscription{ID: "sub_plain", CurrentPeriodEnd: 1702592000,
		Items: []stripefake.SubscriptionItem{{PriceID: "price_monthly", Quantity: 1}}})
	s, err := c.Subscription(context.Background(), "sub_plain")
	require.NoError(t, err)
	require.Equal(t, stripe.SubscriptionStatusActive, s.Status)
	require.Zero(t, s.TrialEnd)
	require.Equal(t, int64(1702592000), s.CurrentPeriodEnd)
}

func TestSubscriptionItemsAreReadAcrossPages(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	items := make([]stripefake.SubscriptionItem, 23)
	for i := range items {
		items[i] = stripefake.SubscriptionItem{PriceID: fmt.Sprintf("price_%02d", i), Quantity: int64(i + 1)}
	}
	fake.PutSubscription(stripefake.Subscription{ID: "sub_many", CurrentPeriodEnd: 1702592000, Items: items})
	fake.SetMaxPageSize(5)
	s, err := c.Subscription(context.Background(), "sub_many")
	require.NoError(t, err)
	require.Len(t, s.Items.Data, 23)
	require.False(t, s.Items.HasMore)
	for i, it := range s.Items.Data {
		require.Equal(t, fmt.Sprintf("price_%02d", i), it.Price.ID)
		require.Equal(t, int64(i+1), it.Quantity)
	}
	var listed int
	for _, r := range fake.Requests() {
		if r.Path == "/v1/subscription_items" {
			q, err := url.ParseQuery(r.Query)
			require.NoError(t, err)
			require.Equal(t, "sub_many", q.Get("subscription"))
			listed++
		}
	}
	require.Equal(t, 5, listed, "23 items at 5 a page")
}

func TestUnknownSubscriptionIsNotFound(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	_, err := c.Subscription(context.Background(), "sub_missing")
	require.True(t, stripeapi.IsNotFound(err), "got %v", err)
}
