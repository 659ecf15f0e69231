package jobs_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// oldFulfilOrderArgs is fulfil_order as versions before order numbers
// queued it, which a replica of such a version still does during a rolling
// deploy.
type oldFulfilOrderArgs struct {
	CheckoutSessionID string `json:"checkout_session_id"`
}

func (oldFulfilOrderArgs) Kind() string { return jobs.FulfilOrderArgs{}.Kind() }

func TestFulfilOrderJobOfTheOldFormStillFulfils(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	const id = "cs_test_oldform001"
	b.stripe.PutSession(stripefake.Session{ID: id, Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: "jobs@example.com", PaymentIntent: "pi_" + id, Items: []stripefake.Item{{PriceID: "price_a", Quantity: 2}}})
	ctx := context.Background()
	_, err = postgres.UpsertOrder(ctx, b.pool, order.SessionDetails{CheckoutSessionID: id, PaymentStatus: "paid", SessionStatus: "complete"})
	require.NoError(t, err)
	_, err = client.Insert(ctx, oldFulfilOrderArgs{CheckoutSessionID: id}, &river.InsertOpts{Queue: jobs.QueueDefault})
	require.NoError(t, err)

	o := b.waitFulfilled(t, w, id)
	require.Len(t, o.Keys, 2)
	require.Len(t, b.sandbox.Users(project), 2)
}

func TestFulfilOrderJobOfAnUnknownOrderNumberIsCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	res, err := client.Insert(context.Background(), jobs.FulfilOrderArgs{OrderID: 987654}, nil)
	require.NoError(t, err)
	ended := waitJobs(t, w, res.Job.ID)[res.Job.ID]
	require.Equal(t, rivertype.JobStateCancelled, ended.State)
	require.Contains(t, jobErrors(ended), "order number 987654 does not exist")
	require.Empty(t, b.sandbox.Users(project))
}

// A session read before its payment was recorded is not expanded, even
// once the order says paid (an async_payment_succeeded handled between
// the read and the transaction): the read has no line items, and an order
// marked expanded with no units would never be fulfilled. The paid read
// that follows expands it.
func TestAReadFromBeforeThePaymentDoesNotExpandThePaidOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{InsertOnly: true})
	require.NoError(t, err)
	ctx := rivertest.WorkContext(context.Background(), client) // as a job's
	const id = "cs_test_readbeforepaid"
	_, err = postgres.UpsertOrder(ctx, b.pool, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
		PaymentStatus: "paid", SessionStatus: "complete", PaymentIntentID: "pi_" + id})
	require.NoError(t, err)

	unpaid := &stripe.CheckoutSession{ID: id, Mode: "payment", Status: "complete", PaymentStatus: "unpaid",
		PaymentIntent: &stripe.PaymentIntent{ID: "pi_" + id}}
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.FulfilFromRead(ctx, b.deps, tx, unpaid, nil)
		return err
	}))
	o, err := postgres.GetOrder(ctx, b.pool, id)
	require.NoError(t, err)
	require.False(t, o.ItemsLoaded, "an unpaid read expands nothing")
	require.Equal(t, order.StatusPending, o.Status)
	require.Empty(t, o.Keys)

	paid := *unpaid
	paid.PaymentStatus = "paid"
	items := []*stripe.LineItem{{ID: "li_1", Quantity: 2, Price: &stripe.Price{ID: "price_a"}}}
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.FulfilFromRead(ctx, b.deps, tx, &paid, items)
		return err
	}))
	o, err = postgres.GetOrder(ctx, b.pool, id)
	require.NoError(t, err)
	require.True(t, o.ItemsLoaded)
	require.Len(t, o.Keys, 2, "the paid read expands the order into its units")
}
