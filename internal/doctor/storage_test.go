package doctor_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/doctor"
	"fulfiller/internal/retention"
)

// storedEvent records a Stripe event received ago, with its body, waiting
// for its job or not.
func storedEvent(t *testing.T, b *bundle, id string, ago time.Duration, awaiting bool) {
	t.Helper()
	_, err := b.doctor.Pool.Exec(t.Context(), `INSERT INTO stripe_events
		(id, type, api_version, livemode, object_id, created_at, received_at, handled, payload, awaiting_handler)
		VALUES ($1, 'invoice.paid', '2023-10-16', false, 'in_1', now() - $2::interval, now() - $2::interval, true, '{}', $3)`,
		id, ago, awaiting)
	require.NoError(t, err)
}

// The storage line names the database's size and the oldest body kept,
// and warns when a handled event's body outlived the retention setting by
// days: the pruning job is not running. A body kept because its event was
// never handled is no sign of that.
func TestStorageShowsDatabaseSizeAndOldestEventBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := result(t, b.run(t), "storage")
	require.Equal(t, doctor.Pass, r.Status, r.Message)
	require.Regexp(t, `^database [0-9.]+ [KMG]iB; no Stripe event body stored$`, r.Message)

	storedEvent(t, b, "evt_recent", 3*24*time.Hour, false)
	storedEvent(t, b, "evt_waiting", 90*24*time.Hour, true)
	r = result(t, b.run(t), "storage")
	require.Equal(t, doctor.Pass, r.Status, r.Message)
	require.Contains(t, r.Message, "oldest Stripe event body stored 90 days old (kept 35 days, RETENTION_EVENT_PAYLOAD_DAYS)")
	require.Contains(t, r.Message, "still waiting for their handle_events job")

	storedEvent(t, b, "evt_missed", 40*24*time.Hour, false)
	r = result(t, b.run(t), "storage")
	require.Equal(t, doctor.Warn, r.Status, r.Message)
	require.Contains(t, r.Message, "bodies of handled events 40 days old are still stored")
	require.Contains(t, r.Message, "prune_history job is not running")

	b.doctor.Retention = retention.Settings{EventPayloadAge: 60 * 24 * time.Hour}
	r = result(t, b.run(t), "storage")
	require.Equal(t, doctor.Pass, r.Status, "kept 60 days: %s", r.Message)
}
