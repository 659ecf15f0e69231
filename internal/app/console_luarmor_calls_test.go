package app_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

const createEndpointTitle = "Luarmor POST /v3/projects/{project_id}/users: "

var timelineTitle = regexp.MustCompile(`class="entry-title">([^<]*)</span>`)

// consoleTimeline reads the titles of an order's console timeline, oldest
// first.
func (b *bundle) consoleTimeline(t *testing.T, sessionID string) []string {
	t.Helper()
	status, _, body := b.consoleGet(t, "/console/orders/"+logging.OrderRef(sessionID))
	require.Equal(t, http.StatusOK, status, body)
	var titles []string
	for _, m := range timelineTitle.FindAllStringSubmatch(body, -1) {
		titles = append(titles, m[1])
	}
	return titles
}

// TestConsoleTimelineShowsEachLuarmorCallWithItsAnswer: Luarmor answers
// the order's first create 429 and the next 500, and is slow to
// answer the one after; the order is delivered
// by a later attempt, and its console timeline lists each of those calls
// in time order with Luarmor's answer, the retry's calls after the
// failures. The call log holds the key's last characters only: no whole
// key and never the API key.
func TestConsoleTimelineShowsEachLuarmorCallWithItsAnswer(t *testing.T) {
	t.Parallel()
	// A 429 pauses Luarmor requests for a window: a short one keeps the
	// test short.
	b := setup(t, withAdminLogin(), withConfig(func(c *config.Config) { c.LuarmorRateWindow = time.Second }))
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRateLimit, Times: 1})
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTTP500, Times: 1})
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultLatency,
		Latency: 60 * time.Millisecond, Times: 1})
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o.Keys, 1)
	b.waitIdle(t)

	var creates []string
	for _, title := range b.consoleTimeline(t, s.ID) {
		if strings.HasPrefix(title, createEndpointTitle) {
			creates = append(creates, strings.TrimPrefix(title, createEndpointTitle))
		}
	}
	require.Equal(t, []string{"HTTP 429 (rate limited)", "HTTP 500 (server error)", "HTTP 200"}, creates,
		"each create in time order, with Luarmor's answer")

	var orderID int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT id FROM orders WHERE checkout_session_id = $1`, s.ID).Scan(&orderID))
	calls, err := postgres.LuarmorCallsOfOrder(context.Background(), b.Pool, orderID, 100)
	require.NoError(t, err)
	var createCalls []postgres.LuarmorCall
	for _, c := range calls {
		if c.Endpoint == "POST /v3/projects/{project_id}/users" {
			createCalls = append(createCalls, c)
		}
		require.Equal(t, "create_key", c.JobKind, "every call of the order was its key's creation")
	}
	require.Len(t, createCalls, 3)
	failed, retried := createCalls[1], createCalls[2]
	require.Equal(t, "server_error", failed.ErrorClass)
	require.Equal(t, failed.JobID, retried.JobID, "the same job")
	require.Greater(t, retried.JobAttempt, failed.JobAttempt, "the retry's call")
	require.Equal(t, logging.MaskKey(o.Keys[0].UserKey), retried.KeyTail, "the delivered key by its last characters")
	require.GreaterOrEqual(t, retried.Took, 60*time.Millisecond, "the time Luarmor took to answer")

	// No row holds a whole key, whichever request it records, nor the API key.
	rows, err := b.Pool.Query(context.Background(), `SELECT to_jsonb(l)::text FROM luarmor_call_log l`)
	require.NoError(t, err)
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, stored)
	for _, row := range stored {
		require.NotContains(t, row, fulfillertest.LuarmorAPIKey)
		for _, u := range b.Luarmor.Users(project) {
			require.NotContains(t, row, u.UserKey)
		}
	}
}
