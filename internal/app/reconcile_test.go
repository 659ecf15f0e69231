package app_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi/stripefake"
)

// reconcileNow runs one reconciliation, as the periodic job does, with the
// service's River client.
func (b *bundle) reconcileNow(t *testing.T) reconcile.Summary {
	t.Helper()
	rec := &reconcile.Reconciler{
		Pool:   b.Pool,
		Stripe: b.Stripe.Client(),
		Logger: fulfillertest.Logger(t, slog.LevelWarn),
	}
	sum, err := rec.Run(context.Background(), b.Main.River, reconcile.DefaultLookback)
	require.NoError(t, err)
	return sum
}

// waitFulfilledByEvents waits until the order of sessionID is fulfilled
// without asking the order API, which would fulfil an unknown paid session
// on its own: it reads the database as the jobs that fulfil it end.
func (b *bundle) waitFulfilledByEvents(t *testing.T, sessionID string) {
	t.Helper()
	b.WaitJobsUntil(t, "order "+sessionID+" fulfilled", func() bool {
		var status string
		err := b.Pool.QueryRow(context.Background(),
			"SELECT status FROM orders WHERE checkout_session_id = $1", sessionID).Scan(&status)
		return err == nil && status == "fulfilled"
	})
}

// deliverAndList delivers an event to the webhook and lists it in Stripe's
// events, as Stripe does with every event.
func (b *bundle) deliverAndList(t *testing.T, body []byte) {
	t.Helper()
	b.Deliver(t, body)
	b.Stripe.PutEvent(body)
}

func TestReconcileActsOnEventsThatNeverArrived(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A purchase whose checkout event never arrived.
	lostSale := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	b.Stripe.PutEvent(b.SessionEvent(t, "checkout.session.completed", lostSale.ID))
	// A subscription's renewal that never arrived.
	sub, subOrder := b.subscriptionOrder(t, 1)
	renewedKey := subOrder.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, renewedKey, "hwid-renewal"))
	periodEnd := time.Now().Unix() + 60*day
	_, renewal := b.invoice(t, sub.Subscription, "subscription_cycle", periodEnd)
	b.Stripe.PutEvent(renewal)
	// A chargeback that never arrived.
	disputed, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, disputed.PaymentIntent, "")
	b.Stripe.PutEvent(b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, disputed.PaymentIntent, "needs_response"))
	b.waitIdle(t)
	require.Zero(t, b.Count(t, "SELECT count(*) FROM orders WHERE checkout_session_id = $1", lostSale.ID))

	sum := b.reconcileNow(t)
	require.Equal(t, reconcile.Summary{Listed: 3, Ingested: 3}, sum)

	b.waitFulfilledByEvents(t, lostSale.ID)
	_, o := b.GetOrder(t, lostSale.ID)
	require.Len(t, o.Keys, 2, "the lost sale gets its keys")
	b.waitKeys(t, disputed.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	require.Equal(t, periodEnd+day, b.user(t, renewedKey).AuthExpire, "the renewal extended the key")
	require.Equal(t, 2, b.luarmorUsersFor(lostSale.ID))

	// A second run finds everything recorded: no job, no Luarmor call.
	jobsBefore := b.Count(t, "SELECT count(*) FROM river_job")
	b.Luarmor.ResetCalls()
	sum = b.reconcileNow(t)
	require.Equal(t, reconcile.Summary{Listed: 3, AlreadyRecorded: 3}, sum)
	b.waitIdle(t)
	require.Equal(t, jobsBefore, b.Count(t, "SELECT count(*) FROM river_job"))
	require.Empty(t, b.Luarmor.Calls())
}

func TestReconcileLeavesEventsTheWebhookHandledAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	b.deliverAndList(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "fulfilled")
	ch := b.charge(t, s.PaymentIntent, "")
	b.deliverAndList(t, b.disputeEvent(t, "charge.dispute.created", fulfillertest.NewID("dp_"), ch, s.PaymentIntent, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)

	jobsBefore := b.Count(t, "SELECT count(*) FROM river_job")
	b.Luarmor.ResetCalls()
	sum := b.reconcileNow(t)
	require.Equal(t, reconcile.Summary{Listed: 2, AlreadyRecorded: 2}, sum)
	b.waitIdle(t)
	require.Equal(t, jobsBefore, b.Count(t, "SELECT count(*) FROM river_job"), "no new job")
	require.Empty(t, b.Luarmor.Calls(), "no new Luarmor call")
	// RECONCILE_INTERVAL off (0) schedules no run.
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), reconcile.Args{}, nil)
}

func TestServiceReconcilesPeriodically(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.reconcileEvery = time.Second })
	s := b.paidSession(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	b.Stripe.PutEvent(b.SessionEvent(t, "checkout.session.completed", s.ID))

	// No webhook: a periodic run finds the event.
	b.waitFulfilledByEvents(t, s.ID)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events"))
	require.Equal(t, 1, b.luarmorUsersFor(s.ID))
	require.Positive(t, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'reconcile_events'"))
}
