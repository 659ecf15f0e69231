package budget_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
)

// TestTheCallLogRecordsRequestsForAKeyOrAnOrder: a create records the key
// it made by its last characters and the job that sent it; a listing that
// names no key nor order, and the API key's check, are not recorded.
func TestTheCallLogRecordsRequestsForAKeyOrAnOrder(t *testing.T) {
	f := setup(t, 1, 60, time.Minute)
	c := f.replicas[0].client
	c.Calls = &budget.CallLog{Pool: f.pool, Logger: slog.New(slog.DiscardHandler)}
	ctx := budget.WithCaller(context.Background(), budget.Caller{JobID: 7, JobKind: "refill_stock", Attempt: 2})

	key, err := c.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: "stock"})
	require.NoError(t, err)
	_, err = c.ListUsers(ctx, project, luarmor.ListUsersOptions{Search: "stock"})
	require.NoError(t, err)
	_, err = c.KeyDetails(ctx)
	require.NoError(t, err)

	var endpoint, tail, kind string
	var status, attempt int
	var orderID *int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT endpoint, status, key_tail, job_kind, job_attempt, order_id
		FROM luarmor_call_log`).Scan(&endpoint, &status, &tail, &kind, &attempt, &orderID))
	require.Equal(t, "POST /v3/projects/{project_id}/users", endpoint)
	require.Equal(t, 200, status)
	require.Equal(t, logging.MaskKey(key), tail)
	require.Equal(t, "refill_stock", kind)
	require.Equal(t, 2, attempt)
	require.Nil(t, orderID, "a stock key belongs to no order yet")
}

// TestACallLogThatCannotWriteNeverFailsTheRequest: with the call log's
// table gone, requests still succeed and Luarmor still applies them.
func TestACallLogThatCannotWriteNeverFailsTheRequest(t *testing.T) {
	f := setup(t, 1, 60, time.Minute)
	c := f.replicas[0].client
	c.Calls = &budget.CallLog{Pool: f.pool, Logger: slog.New(slog.DiscardHandler)}
	_, err := f.pool.Exec(context.Background(), `DROP TABLE luarmor_call_log`)
	require.NoError(t, err)

	key, err := c.CreateUser(context.Background(), project, luarmor.CreateUserRequest{Note: "unlogged"})
	require.NoError(t, err)
	note := "still unlogged"
	require.NoError(t, c.UpdateUser(context.Background(), project, luarmor.UpdateUserRequest{UserKey: key, Note: &note}))
	_, ok := f.sandbox.User(project, key)
	require.True(t, ok, "the key was made")
}
