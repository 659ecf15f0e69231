package app_test

import (
	"net/http"
	"testing"

	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/stripeapi/stripefake"
)

func TestOrderAPIPendingWhileUnpaid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)

	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "pending", o.Status)
	require.Equal(t, defaultMail, o.CustomerEmail)
	require.NotNil(t, o.Keys)
	require.Empty(t, o.Keys)
}

func TestOrderAPIUnknownSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"cs_test_doesnotexist123", "not-a-session", "cs_live_x"} {
		code, _ := b.GetOrder(t, id)
		require.Equal(t, http.StatusNotFound, code, id)
	}
	// Asking again does not ask Stripe again: unknown IDs are remembered,
	// and malformed ones never reach Stripe.
	code, _ := b.GetOrder(t, "cs_test_doesnotexist123")
	require.Equal(t, http.StatusNotFound, code)
	lookups := 0
	for _, r := range b.Stripe.Requests() {
		if r.Path == "/v1/checkout/sessions/cs_test_doesnotexist123" {
			lookups++
		}
		require.NotContains(t, r.Path, "not-a-session")
	}
	require.Equal(t, 1, lookups)
	require.Zero(t, b.Count(t, "SELECT count(*) FROM orders"))
}

func TestOrderAPIBoundsStripeLookupsOfUnknownIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tooMany := 0
	for i := 0; i < 60; i++ {
		code, _ := b.GetOrder(t, fulfillertest.NewID("cs_test_unknown"))
		require.Contains(t, []int{http.StatusNotFound, http.StatusTooManyRequests}, code)
		if code == http.StatusTooManyRequests {
			tooMany++
		}
	}
	require.Positive(t, tooMany, "a burst of random IDs is throttled")
	require.Less(t, len(b.Stripe.Requests()), 40)
}

func TestOrderAPISuccessPageBeforeWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})

	// The customer lands on the success page; no webhook has arrived.
	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, []string{"pending", "fulfilled"}, o.Status)
	o = b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 2)

	// The late webhook changes nothing.
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	code, again := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.ElementsMatch(t, o.Keys, again.Keys)
	require.Equal(t, 2, b.luarmorUsersFor(s.ID))
	rivertest.RequireInserted(t.Context(), t, b.jobsDB(), jobs.FulfilOrderArgs{}, nil)
}

func TestOrderAPIFulfilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	require.Equal(t, s.ID, o.CheckoutSessionID)
	require.Len(t, o.Keys, 1)
	require.Len(t, o.Keys[0].UserKey, 32)
	require.Equal(t, "active", o.Keys[0].Status)
	require.Zero(t, o.KeysPending)
}
