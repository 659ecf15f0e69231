package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// TestOrderStatusTransitions runs every transition documented on
// order.Status, and the moves that must not happen, against PostgreSQL.
func TestOrderStatusTransitions(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	n := 0
	// newOrder records a complete, paid order of one unit in state from.
	newOrder := func(t *testing.T, from order.Status, delivered bool) string {
		t.Helper()
		n++
		id := "cs_test_transition" + string(rune('a'+n))
		tx(t, pool, func(tx pgx.Tx) error {
			_, err := postgres.UpsertOrder(ctx, tx, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
				PaymentStatus: "paid", SessionStatus: "complete", PaymentIntentID: "pi_" + id})
			if err != nil {
				return err
			}
			if err := postgres.AddUnits(ctx, tx, id, []order.Line{{LineItemID: "li_1", Quantity: 1, PriceID: "price_a", ProjectID: "p", KeyDays: 1}}); err != nil {
				return err
			}
			if delivered {
				var keyID int64
				if err := tx.QueryRow(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1`, id).Scan(&keyID); err != nil {
					return err
				}
				if err := postgres.DeliverKey(ctx, tx, keyID, "KEY"+id, nil, false); err != nil {
					return err
				}
			}
			switch from {
			case order.StatusFailed:
				return postgres.FailOrder(ctx, tx, id, order.FailureLuarmorRefused, "refused")
			case order.StatusRevoked:
				return postgres.RevokeOrder(ctx, tx, id, revocation(t, tx, "pi_"+id))
			}
			return nil
		})
		o, err := postgres.GetOrder(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, from, o.Status, "set-up")
		return id
	}
	keyOf := func(t *testing.T, id string) int64 {
		o, err := postgres.GetOrder(ctx, pool, id)
		require.NoError(t, err)
		return o.Keys[0].ID
	}
	for _, tc := range []struct {
		name      string
		from      order.Status
		delivered bool
		step      func(t *testing.T, tx pgx.Tx, id string) error
		to        order.Status
		wantErr   string
	}{
		{name: "pending to fulfilled when the last key is delivered", from: order.StatusPending,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.DeliverKey(ctx, tx, keyOf(t, id), "KEY"+id, nil, false)
			}, to: order.StatusFulfilled},
		{name: "pending to failed when Luarmor refuses a key", from: order.StatusPending,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailKey(ctx, tx, keyOf(t, id), "refused", false)
			},
			to: order.StatusFailed},
		{name: "pending to failed when the payment fails", from: order.StatusPending,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailOrder(ctx, tx, id, order.FailurePaymentFailed, "payment failed")
			}, to: order.StatusFailed},
		{name: "failed to pending on an operator's retry", from: order.StatusFailed,
			step: func(t *testing.T, tx pgx.Tx, id string) error { return postgres.ResetFailures(ctx, tx, id) },
			to:   order.StatusPending},
		{name: "pending to revoked by a dispute", from: order.StatusPending,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.RevokeOrder(ctx, tx, id, revocation(t, tx, "pi_"+id))
			}, to: order.StatusRevoked},
		{name: "fulfilled to revoked by a refund", from: order.StatusFulfilled, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.RevokeOrder(ctx, tx, id, revocation(t, tx, "pi_"+id))
			}, to: order.StatusRevoked},
		{name: "revoked to fulfilled when lifted with every key delivered", from: order.StatusRevoked, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error { return lift(t, tx, id) }, to: order.StatusFulfilled},
		{name: "revoked to pending when lifted with units left", from: order.StatusRevoked,
			step: func(t *testing.T, tx pgx.Tx, id string) error { return lift(t, tx, id) }, to: order.StatusPending},
		{name: "fulfilled to failed when its subscription moved to a price the catalog lacks", from: order.StatusFulfilled, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailSubscriptionChange(ctx, tx, id, order.FailureUnknownPrice, "price_x is not in the catalog")
			}, to: order.StatusFailed},
		{name: "a subscription's failure leaves a revoked order revoked", from: order.StatusRevoked,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailSubscriptionChange(ctx, tx, id, order.FailureUnknownPrice, "price_x is not in the catalog")
			}, to: order.StatusRevoked},
		// Moves that must not happen.
		{name: "a failure leaves a fulfilled order fulfilled", from: order.StatusFulfilled, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailOrder(ctx, tx, id, order.FailureUnknownPrice, "late failure")
			}, to: order.StatusFulfilled},
		{name: "a failure leaves a revoked order revoked", from: order.StatusRevoked,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				return postgres.FailOrder(ctx, tx, id, order.FailureUnknownPrice, "late failure")
			}, to: order.StatusRevoked},
		{name: "a failed payment cannot be retried", from: order.StatusPending,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				if err := postgres.FailOrder(ctx, tx, id, order.FailurePaymentFailed, "payment failed"); err != nil {
					return err
				}
				return postgres.ResetFailures(ctx, tx, id)
			}, wantErr: "must pay again"},
		{name: "a fulfilled order cannot be retried", from: order.StatusFulfilled, delivered: true,
			step:    func(t *testing.T, tx pgx.Tx, id string) error { return postgres.ResetFailures(ctx, tx, id) },
			wantErr: "not failed"},
		{name: "a failed order cannot be retried while a key's create is on its way", from: order.StatusFailed,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				// Another unit's runner holds its create lease: its answer
				// would land after the reset and fail the order again.
				if _, err := postgres.ClaimCreate(ctx, tx, keyOf(t, id), "runner", time.Minute, true); err != nil {
					return err
				}
				return postgres.ResetFailures(ctx, tx, id)
			}, wantErr: "being created"},
		{name: "revoked to fulfilled when a renewal paid since outweighs a refund of the first invoice", from: order.StatusRevoked, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error { return refundFirstInvoice(t, tx, id, true) },
			to:   order.StatusFulfilled},
		{name: "a refund of the first invoice with no renewal since holds the order revoked", from: order.StatusRevoked, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error { return refundFirstInvoice(t, tx, id, false) },
			to:   order.StatusRevoked},
		{name: "a revoked order stays revoked while another revocation holds it", from: order.StatusRevoked, delivered: true,
			step: func(t *testing.T, tx pgx.Tx, id string) error {
				revocation(t, tx, "pi_"+id) // a refund, still active
				return lift(t, tx, id)
			}, to: order.StatusRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newOrder(t, tc.from, tc.delivered)
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tc.step(t, tx, id) })
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			o, err := postgres.GetOrder(ctx, pool, id)
			require.NoError(t, err)
			require.Equal(t, tc.to, o.Status)
		})
	}
}

var revocations int

// revocation records an active revocation of a payment and returns its ID.
func revocation(t *testing.T, tx pgx.Tx, paymentIntentID string) int64 {
	t.Helper()
	revocations++
	r, err := postgres.RecordRevocation(context.Background(), tx, order.Revocation{
		Source: "dispute", SourceID: "dp_" + paymentIntentID + string(rune('a'+revocations)),
		PaymentIntentID: paymentIntentID, Action: order.ActionBlacklist, Reason: "disputed"})
	require.NoError(t, err)
	return r.ID
}

// refundFirstInvoice makes the order a subscription's, revoked by a refund
// of its first invoice (its dispute lifted), with a renewal's period
// granted when renewed, and restores what the refund no longer holds.
func refundFirstInvoice(t *testing.T, tx pgx.Tx, id string, renewed bool) error {
	t.Helper()
	ctx := context.Background()
	sub, first := "sub_"+id, "in_first_"+id
	_, err := tx.Exec(ctx, `UPDATE orders SET mode = 'subscription', subscription_id = $2, invoice_id = $3
		WHERE checkout_session_id = $1`, id, sub, first)
	require.NoError(t, err)
	o, err := postgres.LockOrder(ctx, tx, id)
	require.NoError(t, err)
	disputed, err := postgres.GetRevocation(ctx, tx, o.RevocationID)
	require.NoError(t, err)
	_, _, err = postgres.LiftRevocation(ctx, tx, *disputed)
	require.NoError(t, err)
	refund, err := postgres.RecordRevocation(ctx, tx, order.Revocation{Source: order.SourceRefund, SourceID: "ch_" + id,
		SubscriptionID: sub, Action: order.ActionBlacklist, Reason: "refunded"})
	require.NoError(t, err)
	require.NoError(t, postgres.ResolveRevocation(ctx, tx, refund.ID, "", sub, first))
	require.NoError(t, postgres.RevokeOrder(ctx, tx, id, refund.ID))
	_, err = tx.Exec(ctx, `UPDATE key_grants g SET state = 'revoked', source = 'invoice:' || $2, revocation_id = $3
		FROM order_keys k WHERE k.id = g.order_key_id AND k.checkout_session_id = $1`, id, first, refund.ID)
	require.NoError(t, err)
	if renewed {
		_, err = tx.Exec(ctx, `INSERT INTO key_grants (order_key_id, source, kind, valid_from, valid_to, line)
			SELECT id, 'invoice:in_renewal', 'period', 1, 2, $2 FROM order_keys WHERE checkout_session_id = $1`, id, sub)
		require.NoError(t, err)
	}
	return postgres.RestoreRefundedOrders(ctx, tx, sub)
}

// lift lifts the revocation that revoked the order and restores it.
func lift(t *testing.T, tx pgx.Tx, id string) error {
	t.Helper()
	ctx := context.Background()
	o, err := postgres.LockOrder(ctx, tx, id)
	require.NoError(t, err)
	r, err := postgres.GetRevocation(ctx, tx, o.RevocationID)
	require.NoError(t, err)
	if _, _, err := postgres.LiftRevocation(ctx, tx, *r); err != nil {
		return err
	}
	return postgres.RestoreOrder(ctx, tx, id)
}

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

// A unit refused for its project marks the order's undelivered units of
// that project to be planned again; a refusal for another reason marks
// nothing, and a retry plans again only what is marked.
func TestProjectRefusalMarksTheUnitsOfItsProjectToPlanAgain(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()

	other := replanOrder(t, pool, "cs_test_replanother")
	tx(t, pool, func(tx pgx.Tx) error {
		return postgres.FailKey(ctx, tx, other["li_typo/1"], "luarmor refused: Request refused.", false)
	})
	require.Equal(t, map[int64]bool{other["li_typo/1"]: false, other["li_typo/2"]: false, other["li_good/1"]: false},
		replanned(t, pool, "cs_test_replanother"))

	id := "cs_test_replanproject"
	units := replanOrder(t, pool, id)
	tx(t, pool, func(tx pgx.Tx) error {
		return postgres.FailKey(ctx, tx, units["li_typo/1"], "luarmor refused: Project not found!", true)
	})
	require.Equal(t, map[int64]bool{units["li_typo/1"]: true, units["li_typo/2"]: true, units["li_good/1"]: false},
		replanned(t, pool, id))

	// The operator's retry: the refused unit starts over, and the marked
	// units take the catalog's terms once.
	tx(t, pool, func(tx pgx.Tx) error {
		if err := postgres.ResetFailures(ctx, tx, id); err != nil {
			return err
		}
		prices, err := postgres.PricesToReplan(ctx, tx, id)
		require.NoError(t, err)
		require.Equal(t, []string{"price_typo"}, prices)
		if err := postgres.ReplanUnits(ctx, tx, id, "price_typo", "fixed", 14); err != nil {
			return err
		}
		return postgres.ReplanUnits(ctx, tx, id, "price_good", "elsewhere", 1)
	})
	o, err := postgres.GetOrder(ctx, pool, id)
	require.NoError(t, err)
	for _, k := range o.Keys {
		switch k.PriceID {
		case "price_typo":
			require.Equal(t, "fixed", k.ProjectID)
			require.Equal(t, 14, k.KeyDays)
		default:
			require.Equal(t, "good", k.ProjectID, "an unmarked unit keeps what it was sold with")
			require.Equal(t, 30, k.KeyDays)
		}
	}
	for keyID, marked := range replanned(t, pool, id) {
		require.False(t, marked, "unit %d planned again once", keyID)
	}
}
