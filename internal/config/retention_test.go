package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/retention"
)

// Event bodies are kept 35 days unless told otherwise, never less than
// reconciliation's look-back and Stripe's 3 days of retries; their IDs 90
// days, never less than their bodies; the delivery log and the Luarmor call
// log 90 days.
func TestRetentionSettings(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, retention.Settings{EventPayloadAge: 35 * day, EventIDAge: 90 * day, DeliveryLogAge: 90 * day, CallLogAge: 90 * day}, c.Retention)

	c, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_PAYLOAD_DAYS": "3", "RETENTION_DELIVERY_LOG_DAYS": "400", "RETENTION_CALL_LOG_DAYS": "7"}))
	require.NoError(t, err)
	require.Equal(t, retention.Settings{EventPayloadAge: 3 * day, EventIDAge: 90 * day, DeliveryLogAge: 400 * day, CallLogAge: 7 * day}, c.Retention)

	// An event's ID is kept at least as long as its body.
	c, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_ID_DAYS": "40"}))
	require.NoError(t, err)
	require.Equal(t, 40*day, c.Retention.EventIDAge)
	c, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_PAYLOAD_DAYS": "120"}))
	require.NoError(t, err)
	require.Equal(t, 120*day, c.Retention.EventIDAge, "a body kept longer than the IDs' default keeps its ID as long")
	_, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_ID_DAYS": "30"}))
	require.EqualError(t, err, `config: RETENTION_EVENT_ID_DAYS "30" is shorter than RETENTION_EVENT_PAYLOAD_DAYS (35): an event's ID is kept at least as long as its body; keep at least 35 days`)

	_, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_PAYLOAD_DAYS": "2"}))
	require.EqualError(t, err, `config: RETENTION_EVENT_PAYLOAD_DAYS "2" is shorter than reconciliation needs: RECONCILE_LOOKBACK (72h0m0s) and Stripe's 3 days of retries may still send an event that old again; keep at least 3 days`)
	_, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_PAYLOAD_DAYS": "20", "RECONCILE_LOOKBACK": "30d"}))
	require.ErrorContains(t, err, "keep at least 30 days")
	c, err = config.FromEnv(env(map[string]string{"RETENTION_EVENT_PAYLOAD_DAYS": "31", "RECONCILE_LOOKBACK": "30d"}))
	require.NoError(t, err)
	require.Equal(t, 31*day, c.Retention.EventPayloadAge)

	for name, v := range map[string]string{
		"RETENTION_EVENT_PAYLOAD_DAYS": "35d", "RETENTION_EVENT_ID_DAYS": "90d", "RETENTION_DELIVERY_LOG_DAYS": "0", "RETENTION_CALL_LOG_DAYS": "-1",
	} {
		_, err := config.FromEnv(env(map[string]string{name: v}))
		require.ErrorContains(t, err, name, v)
		require.ErrorContains(t, err, "whole number of days", v)
	}
}
