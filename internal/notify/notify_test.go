package notify_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/notify"
	"fulfiller/internal/postgres/postgrestest"
)

type bundle struct {
	pool *pgxpool.Pool
	hub  *notify.Hub
}

func setup(t *testing.T, maxWaiters int) *bundle {
	t.Helper()
	pool := postgrestest.NewPool(t)
	hub := notify.New(pool.Config().ConnConfig, maxWaiters, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &bundle{pool: pool, hub: hub}
}

func (b *bundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// listening waits until the hub's LISTEN is in effect, by changing a
// throwaway order until a subscriber of it is woken.
func (b *bundle) listening(t *testing.T) {
	t.Helper()
	const probe = "cs_test_probe000000"
	b.exec(t, `INSERT INTO orders (checkout_session_id) VALUES ($1) ON CONFLICT DO NOTHING`, probe)
	sub, err := b.hub.Subscribe(probe)
	require.NoError(t, err)
	defer sub.Close()
	require.Eventually(t, func() bool {
		b.exec(t, `UPDATE orders SET status = CASE status WHEN 'pending' THEN 'failed' ELSE 'pending' END WHERE checkout_session_id = $1`, probe)
		select {
		case <-sub.C:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, 20*time.Second, time.Millisecond)
}

func received(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-time.After(20 * time.Second):
		return false
	}
}

func pending(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestOrderChangesWakeTheirWaitersOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.exec(t, `INSERT INTO orders (checkout_session_id) VALUES ('cs_test_a0000000'), ('cs_test_b0000000')`)
	b.exec(t, `INSERT INTO order_keys (checkout_session_id, line_item_id, unit, price_id, project_id, key_days, reference)
		VALUES ('cs_test_a0000000', 'li_1', 1, 'price_1', 'p', 30, 'ref-a1')`)
	// After the inserts: notifications arrive in commit order, so once the
	// probe's has, the inserts' have been handled too, before anyone
	// subscribed. (Waiting before them let an insert's notification,
	// still in flight, wake a1 late and fail the last check below.)
	b.listening(t)
	a1, err := b.hub.Subscribe("cs_test_a0000000")
	require.NoError(t, err)
	defer a1.Close()
	a2, err := b.hub.Subscribe("cs_test_a0000000")
	require.NoError(t, err)
	defer a2.Close()
	other, err := b.hub.Subscribe("cs_test_b0000000")
	require.NoError(t, err)
	defer other.Close()

	// A key delivered wakes both waiters of its order.
	b.exec(t, `UPDATE order_keys SET status = 'active', user_key = 'KEY' WHERE reference = 'ref-a1'`)
	require.True(t, received(a1.C))
	require.True(t, received(a2.C))

	// A change that a buyer cannot see (no status change) wakes nobody;
	// a status change of the other order wakes its waiter only, and
	// notifications arrive in commit order, so a1 would have its signal
	// by the time other has.
	b.exec(t, `UPDATE orders SET customer_email = 'x@example.com' WHERE checkout_session_id = 'cs_test_a0000000'`)
	b.exec(t, `UPDATE orders SET status = 'fulfilled' WHERE checkout_session_id = 'cs_test_b0000000'`)
	require.True(t, received(other.C))
	require.False(t, pending(a1.C), "an invisible change woke a waiter")
	require.False(t, pending(a2.C))
}

func TestSubscriptionsAreBoundedAndReleased(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	s1, err := b.hub.Subscribe("cs_test_a0000000")
	require.NoError(t, err)
	s2, err := b.hub.Subscribe("cs_test_b0000000")
	require.NoError(t, err)
	_, err = b.hub.Subscribe("cs_test_c0000000")
	require.ErrorIs(t, err, notify.ErrFull)
	require.Equal(t, 2, b.hub.Waiters())

	s1.Close()
	s1.Close() // twice is harmless and frees one slot only
	require.Equal(t, 1, b.hub.Waiters())
	s3, err := b.hub.Subscribe("cs_test_c0000000")
	require.NoError(t, err)
	s2.Close()
	s3.Close()
	require.Zero(t, b.hub.Waiters())
}

func TestListenerReconnectsAndWakesEveryWaiterAfterALostConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.listening(t)
	b.exec(t, `INSERT INTO orders (checkout_session_id) VALUES ('cs_test_a0000000')`)
	sub, err := b.hub.Subscribe("cs_test_a0000000")
	require.NoError(t, err)
	defer sub.Close()

	// The server drops the listening connection: whatever was notified
	// meanwhile is lost, so every waiter is woken to read its order again.
	b.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN order_changed' AND pid <> pg_backend_pid()`)
	require.True(t, received(sub.C), "no wake-up after the listener reconnected")

	// And the new connection carries notifications again.
	b.exec(t, `UPDATE orders SET status = 'fulfilled' WHERE checkout_session_id = 'cs_test_a0000000'`)
	require.True(t, received(sub.C))
}
