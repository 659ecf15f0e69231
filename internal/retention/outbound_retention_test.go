package retention_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/retention"
)

// outboundEvent records an event of type typ about subject, created age
// ago, with one delivery per status given, each last changed changed ago.
func outboundEvent(t *testing.T, pool *pgxpool.Pool, typ, subject string, age, changed time.Duration, statuses ...string) (int64, []int64) {
	t.Helper()
	ctx := t.Context()
	var id int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO outbound_events (event_id, type, subject, data, created_at)
		VALUES ('evt_' || md5($1 || $2), $1, $2, '{"order_ref":"ord_1"}', now() - $3::interval) RETURNING id`,
		typ, subject, age).Scan(&id))
	var deliveries []int64
	for i, status := range statuses {
		var did int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO outbound_deliveries (event_id, destination, endpoint, status, attempts, created_at, updated_at)
			VALUES ($1, 'webhook', 'https://shop.example/hooks/' || $2::int, $3, 1, now() - $4::interval, now() - $5::interval) RETURNING id`,
			id, i, status, age, changed).Scan(&did))
		_, err := pool.Exec(ctx, `INSERT INTO outbound_delivery_attempts (delivery_id, at, status_code, duration_ms)
			VALUES ($1, now() - $2::interval, 200, 30)`, did, changed)
		require.NoError(t, err)
		deliveries = append(deliveries, did)
	}
	return id, deliveries
}

// A delivery finished (delivered, or failed for good) longer ago than
// RETENTION_DELIVERY_LOG_DAYS goes with its attempts, and then its event's
// body with the event's last delivery. A pending delivery, one
// replayed recently and a recent one stay with their bodies; so does
// every event's row, which is what keeps the shop from being told twice.
func TestPruneDropsOldFinishedDeliveriesThenTheirBodies(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	old := 100 * day
	delivered, _ := outboundEvent(t, pool, "order.fulfilled", "order:1", old, old, "delivered", "failed")
	pending, _ := outboundEvent(t, pool, "order.fulfilled", "order:2", old, old, "pending")
	replayed, _ := outboundEvent(t, pool, "order.fulfilled", "order:3", old, 10*day, "delivered")
	partly, _ := outboundEvent(t, pool, "order.revoked", "revocation:4", old, old, "delivered", "pending")
	recent, _ := outboundEvent(t, pool, "order.fulfilled", "order:5", 30*day, 30*day, "delivered")
	expiring, _ := outboundEvent(t, pool, "key.expiring", "key:7:expiry:1700000000", old, old, "delivered")

	for run := range 2 {
		sum, err := (&retention.Pruner{Pool: pool}).Run(ctx, time.Now().Add(time.Minute))
		require.NoError(t, err)
		require.True(t, sum.Complete)
		if run == 0 {
			require.Equal(t, int64(4), sum.Pruned["outbound_deliveries"], "order:1's two, revocation:4's delivered one, key:7's")
		} else {
			require.Zero(t, sum.Pruned["outbound_deliveries"], "a second run finds nothing more")
		}
	}

	deliveriesLeft := map[int64]int{}
	bodyKept := map[int64]bool{}
	rows, err := pool.Query(ctx, `SELECT e.id, e.data IS NOT NULL, count(d.id) FROM outbound_events e
		LEFT JOIN outbound_deliveries d ON d.event_id = e.id GROUP BY e.id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var kept bool
		var n int
		require.NoError(t, rows.Scan(&id, &kept, &n))
		bodyKept[id], deliveriesLeft[id] = kept, n
	}
	require.NoError(t, rows.Err())
	require.Len(t, bodyKept, 6, "every event's row stays")
	require.Equal(t, map[int64]int{delivered: 0, pending: 1, replayed: 1, partly: 1, recent: 1, expiring: 0}, deliveriesLeft)
	require.Equal(t, map[int64]bool{delivered: false, pending: true, replayed: true, partly: true, recent: true, expiring: false}, bodyKept,
		"a body goes with its event's last delivery")
	var orphanAttempts int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM outbound_delivery_attempts a
		WHERE NOT EXISTS (SELECT 1 FROM outbound_deliveries d WHERE d.id = a.delivery_id)`).Scan(&orphanAttempts))
	require.Zero(t, orphanAttempts)

	// The same things happening again tell the shop nothing more: the
	// event rows, without their bodies, still hold (type, subject).
	for _, again := range []struct{ typ, subject string }{{"order.fulfilled", "order:1"}, {"key.expiring", "key:7:expiry:1700000000"}} {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			ids, err := postgres.RecordOutboundEvent(ctx, tx, outbound.Event{ID: "evt_again", Type: outbound.EventType(again.typ),
				Created: time.Now().Unix()}, again.subject, 0, []outbound.Destination{{Kind: outbound.DestinationWebhook, Endpoint: "https://shop.example/hooks/0"}})
			require.Empty(t, ids, "%s of %s recorded again", again.typ, again.subject)
			return err
		})
		require.NoError(t, err)
	}
}

// A pruned delivery is neither shown nor replayed: the refusal says it is
// no longer kept and why, rather than sending the event without its body,
// and differs from a delivery that never was.
func TestPrunedDeliveryCannotBeReplayed(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	_, ids := outboundEvent(t, pool, "order.fulfilled", "order:1", 100*day, 100*day, "delivered")
	_, err := (&retention.Pruner{Pool: pool}).Run(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)

	_, err = postgres.GetOutboundDelivery(ctx, pool, ids[0])
	require.Equal(t, order.ENOTFOUND, order.ErrorCode(err))
	require.ErrorContains(t, err, "is no longer kept")
	require.ErrorContains(t, err, "RETENTION_DELIVERY_LOG_DAYS")
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := postgres.ReplayOutboundDelivery(ctx, tx, ids[0])
		return err
	})
	require.Equal(t, order.ENOTFOUND, order.ErrorCode(err))
	require.ErrorContains(t, err, "cannot be shown or replayed")

	_, err = postgres.GetOutboundDelivery(ctx, pool, ids[0]+1000)
	require.Equal(t, order.ENOTFOUND, order.ErrorCode(err))
	require.NotContains(t, err.Error(), "no longer kept", "a delivery never made")
}

// An event with no destination to send it to is recorded for its (type,
// subject) alone, the guard against telling the shop twice: no delivery
// will ever read its body, so none is stored.
func TestEventWithoutDestinationIsRecordedWithoutBody(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := t.Context()
	record := func(to []outbound.Destination) {
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := postgres.RecordOutboundEvent(ctx, tx, outbound.Event{ID: "evt_nowhere", Type: "order.fulfilled",
				Created: time.Now().Unix(), Data: outbound.Data{OrderRef: "ord_1"}}, "order:1", 0, to)
			return err
		}))
	}
	record(nil)
	record([]outbound.Destination{{Kind: outbound.DestinationWebhook, Endpoint: "https://shop.example/hooks"}})
	var events, deliveries int
	var bodies int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(data), (SELECT count(*) FROM outbound_deliveries) FROM outbound_events`).
		Scan(&events, &bodies, &deliveries))
	require.Equal(t, []int{1, 0, 0}, []int{events, bodies, deliveries}, "recorded once, without a body; the second time is the same event")
}

// Tables names every table a prune shrinks, once: the benchmark rewrites
// them to measure what the kept rows hold, and a delivery's prune also
// drops its attempts and its event's body.
func TestTablesNameEveryTablePruned(t *testing.T) {
	require.Equal(t, []string{"stripe_events", "outbound_delivery_attempts", "outbound_deliveries", "outbound_events", "luarmor_call_log"},
		retention.Tables())
}
