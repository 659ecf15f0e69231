package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// deliveredKey records an order of one delivered key and returns its ID.
func deliveredKey(t *testing.T, pool *pgxpool.Pool, id string) int64 {
	t.Helper()
	ctx := context.Background()
	var keyID int64
	tx(t, pool, func(tx pgx.Tx) error {
		_, err := postgres.UpsertOrder(ctx, tx, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
			PaymentStatus: "paid", SessionStatus: "complete"})
		if err != nil {
			return err
		}
		if err := postgres.AddUnits(ctx, tx, id, []order.Line{{LineItemID: "li_1", Quantity: 1, PriceID: "price_a", ProjectID: "p", KeyDays: 1}}); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1`, id).Scan(&keyID); err != nil {
			return err
		}
		return postgres.DeliverKey(ctx, tx, keyID, "KEY"+id, nil, false)
	})
	return keyID
}

func reserve(t *testing.T, pool *pgxpool.Pool, keyID int64, now time.Time) (order.HWIDReset, bool) {
	t.Helper()
	var r order.HWIDReset
	var accepted bool
	tx(t, pool, func(tx pgx.Tx) (err error) {
		r, accepted, err = postgres.ReserveHWIDReset(context.Background(), tx, keyID, now, time.Hour)
		return err
	})
	return r, accepted
}

func TestHWIDResetCooldownIsReservedOnceAndGivenBackOnFailure(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	keyID := deliveredKey(t, pool, "cs_test_hwidreserve")
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	r, ok := reserve(t, pool, keyID, t0)
	require.True(t, ok, "the first reset is always allowed")
	require.Equal(t, 1, r.Request)
	require.Equal(t, order.HWIDResetQueued, r.Status)
	require.True(t, r.NextResetAt.Equal(t0.Add(time.Hour)))

	held, ok := reserve(t, pool, keyID, t0.Add(time.Hour-time.Microsecond))
	require.False(t, ok, "within the cooldown")
	require.Equal(t, 1, held.Request, "the reset that holds the cooldown")

	// Done once, however often its job records it.
	tx(t, pool, func(tx pgx.Tx) error {
		done, err := postgres.FinishHWIDReset(ctx, tx, keyID, 1, t0.Add(time.Second))
		require.True(t, done)
		return err
	})
	tx(t, pool, func(tx pgx.Tx) error {
		done, err := postgres.FinishHWIDReset(ctx, tx, keyID, 1, t0.Add(2*time.Second))
		require.False(t, done)
		return err
	})
	r, err := postgres.HWIDResetOf(ctx, pool, keyID)
	require.NoError(t, err)
	require.Equal(t, order.HWIDResetDone, r.Status)
	require.Equal(t, 1, r.Resets)
	require.True(t, r.LastResetAt.Equal(t0.Add(time.Second)))

	// The cooldown ends exactly an hour after the request.
	r, ok = reserve(t, pool, keyID, t0.Add(time.Hour))
	require.True(t, ok)
	require.Equal(t, 2, r.Request)
	require.Equal(t, 1, r.Resets, "the count of applied resets carries over")

	// A refusal gives the cooldown back but for a short pause (so a key
	// Luarmor refuses cannot cost a call per request); a stale request
	// changes nothing.
	failedAt := t0.Add(time.Hour + time.Second)
	require.NoError(t, postgres.FailHWIDReset(ctx, pool, keyID, 1, "stale", failedAt))
	require.NoError(t, postgres.FailHWIDReset(ctx, pool, keyID, 2, "resets disabled", failedAt))
	r, err = postgres.HWIDResetOf(ctx, pool, keyID)
	require.NoError(t, err)
	require.Equal(t, order.HWIDResetFailed, r.Status)
	require.Equal(t, "resets disabled", r.Message)
	require.True(t, r.NextResetAt.Equal(failedAt.Add(postgres.FailedResetPause)), "next reset at %s", r.NextResetAt)
	_, ok = reserve(t, pool, keyID, failedAt.Add(postgres.FailedResetPause-time.Second))
	require.False(t, ok, "refused during the pause")
	r, ok = reserve(t, pool, keyID, failedAt.Add(postgres.FailedResetPause))
	require.True(t, ok, "allowed again after the pause, long before the hour")
	require.Equal(t, 3, r.Request)
	require.Empty(t, r.Message)

	o, err := postgres.GetOrder(ctx, pool, "cs_test_hwidreserve")
	require.NoError(t, err)
	require.Equal(t, r, o.Keys[0].HWIDReset, "the order carries each key's reset")
}

// Concurrent reservations, each in its own transaction and with no other
// lock held: the statement alone lets exactly one through.
func TestConcurrentHWIDResetReservationsAcceptOne(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	now := time.Now()
	for round, keyID := range []int64{deliveredKey(t, pool, "cs_test_hwidrace1"), deliveredKey(t, pool, "cs_test_hwidrace2")} {
		if round == 1 {
			// A key with a passed cooldown: the update path races too.
			reserve(t, pool, keyID, now.Add(-2*time.Hour))
		}
		const n = 8
		var mu sync.Mutex
		accepted := 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, ok, err := postgres.ReserveHWIDReset(ctx, tx, keyID, now, time.Hour)
					if ok {
						mu.Lock()
						accepted++
						mu.Unlock()
					}
					return err
				})
				require.NoError(t, err)
			}()
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, accepted, "round %d", round)
	}
}

// TestHWIDCooldownIsTheKeysAcrossItsRows: a key extended by a later order
// has a row per order; a reset through one row holds the cooldown of all.
func TestHWIDCooldownIsTheKeysAcrossItsRows(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	first := deliveredKey(t, pool, "cs_test_hwidfirst")
	second := deliveredKey(t, pool, "cs_test_hwidsecond")
	_, err := pool.Exec(ctx, `UPDATE order_keys SET user_key = 'KEYshared' WHERE id = ANY($1)`, []int64{first, second})
	require.NoError(t, err)
	other := deliveredKey(t, pool, "cs_test_hwidother")
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	_, ok := reserve(t, pool, first, t0)
	require.True(t, ok)

	held := func(keyID int64, now time.Time) (order.HWIDReset, bool) {
		t.Helper()
		var holder order.HWIDReset
		var isHeld bool
		tx(t, pool, func(tx pgx.Tx) error {
			k, err := postgres.GetKey(ctx, tx, keyID)
			if err != nil {
				return err
			}
			holder, isHeld, err = postgres.LockKeyResets(ctx, tx, k, now)
			return err
		})
		return holder, isHeld
	}
	holder, isHeld := held(second, t0.Add(time.Minute))
	require.True(t, isHeld, "the other row of the same key is within the cooldown")
	require.True(t, holder.NextResetAt.Equal(t0.Add(time.Hour)))
	_, isHeld = held(second, t0.Add(time.Hour))
	require.False(t, isHeld, "free once the cooldown ends")
	_, isHeld = held(first, t0.Add(time.Minute))
	require.False(t, isHeld, "a row's own reset is ReserveHWIDReset's to judge")
	_, isHeld = held(other, t0.Add(time.Minute))
	require.False(t, isHeld, "another key is not held")
}
