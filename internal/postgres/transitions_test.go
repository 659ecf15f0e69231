package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

func tx(t *testing.T, pool *pgxpool.Pool, fn func(pgx.Tx) error) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(context.Background(), pool, fn))
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
