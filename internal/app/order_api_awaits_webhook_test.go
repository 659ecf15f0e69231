package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/stripeapi/stripefake"
)

// sessionReads counts the Stripe requests that read Checkout Session id.
func (b *bundle) sessionReads(id string) int {
	n := 0
	for _, r := range b.Stripe.Requests() {
		if r.Method == http.MethodGet && strings.Contains(r.Path, id) {
			n++
		}
	}
	return n
}

// The buyer's page asks for the order after its webhook is recorded and
// before the webhook's job has run: the order API waits for that job
// rather than confirming the session with Stripe, so the session is read
// once and the order fulfilled once.
func TestOrderAPIWaitsForARecordedWebhookInsteadOfAskingStripe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})

	require.NoError(t, b.Main.River.QueuePause(ctx, jobs.QueueEvents, nil))
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	type answer struct {
		status int
		order  httpapi.OrderJSON
		err    error
	}
	answered := make(chan answer, 1)
	waitersBefore := b.Main.Changes.Waiters()
	go func() {
		var a answer
		resp, err := http.Get(b.URL + "/v1/orders/" + s.ID + "?wait=30")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		a.status = resp.StatusCode
		a.err = json.NewDecoder(resp.Body).Decode(&a.order)
		answered <- a
	}()
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() > waitersBefore }, 10*time.Second, 5*time.Millisecond,
		"the page's request waits for the order")
	require.Zero(t, b.sessionReads(s.ID), "the waiting page did not ask Stripe")

	require.NoError(t, b.Main.River.QueueResume(ctx, jobs.QueueEvents, nil))
	a := <-answered
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "fulfilled", a.order.Status)
	require.Len(t, a.order.Keys, 1)

	require.Equal(t, 1, b.sessionReads(s.ID), "one Stripe read of the session, by the webhook's job")
	require.Equal(t, 1, b.luarmorUsersFor(s.ID), "one key made")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1`, s.ID), "the order's units recorded once")
	rivertest.RequireNotInserted(ctx, t, b.jobsDB(), jobs.FulfilOrderArgs{}, nil)
}
