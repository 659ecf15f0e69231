package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// TestRenewalRecordedBeforeItsOrderCountsForPaidThrough: the invoice's
// event may be handled before the checkout's (a replica died mid-checkout,
// Stripe's order of delivery); the order still shows the renewed period.
func TestRenewalRecordedBeforeItsOrderCountsForPaidThrough(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	const periodEnd = int64(1900000000)
	tx(t, pool, func(tx pgx.Tx) error {
		_, err := postgres.RecordRenewal(ctx, tx, order.Renewal{InvoiceID: "in_early", SubscriptionID: "sub_early",
			BillingReason: "subscription_cycle", PeriodEnd: periodEnd, ExpiresAt: periodEnd + 86400, Extends: true})
		return err
	})

	o, err := postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: "cs_test_late", Mode: "subscription",
		PaymentStatus: "paid", SessionStatus: "complete", SubscriptionID: "sub_early"})
	require.NoError(t, err)
	require.NotNil(t, o.PaidThrough)
	require.Equal(t, periodEnd, *o.PaidThrough, "the renewal recorded first counts")

	// An order learning its subscription on a later read gets it too, and
	// a repeat never moves it back.
	o, err = postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: "cs_test_later", Mode: "subscription"})
	require.NoError(t, err)
	require.Nil(t, o.PaidThrough)
	o, err = postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: "cs_test_later", SubscriptionID: "sub_early"})
	require.NoError(t, err)
	require.Equal(t, periodEnd, *o.PaidThrough)
	_, err = pool.Exec(ctx, `UPDATE orders SET paid_through = $1 WHERE checkout_session_id = 'cs_test_later'`, periodEnd+100)
	require.NoError(t, err)
	o, err = postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: "cs_test_later", SubscriptionID: "sub_early"})
	require.NoError(t, err)
	require.Equal(t, periodEnd+100, *o.PaidThrough, "never moved back")
}
