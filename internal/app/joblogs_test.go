package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/stripeapi/stripefake"
)

// TestJobLinesNameTheirJob: what a worker logs carries the job's ID and
// kind, without the worker passing them, so an operator can follow one job
// from its failure lines to River UI.
func TestJobLinesNameTheirJob(t *testing.T) {
	t.Parallel()
	var log logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&log, nil))))
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	s := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")
	// The webhook's own job records a paid checkout's order and fails it,
	// or hands the order to fulfil_order (its fallback), which then does.
	watch.WaitEnded(t, "handle_events") // the job logs why before it ends

	var line map[string]any
	var rawLine string
	for _, raw := range strings.Split(log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) == nil && m["msg"] == "order cannot be fulfilled" {
			line, rawLine = m, raw
			break
		}
	}
	require.NotNil(t, line, "the failure is logged: %s", log.String())
	require.Contains(t, []any{"handle_events", "fulfil_order"}, line["job_kind"], "the job that failed the order names itself: %s", rawLine)
	require.Positive(t, line["job_id"])
	require.Equal(t, 1, strings.Count(rawLine, `"job_id":`), "the job is named once: %s", rawLine)
	require.NotContains(t, log.String(), s.ID, "the order is named by its reference, never its session ID")
}

// TestJobArgumentsHoldNoSessionIDNorAddress: River UI shows every job's
// arguments to whoever has its login, and river_job keeps them as long as
// jobs are retained; a Checkout Session ID there reads the order's keys and
// an address is the buyer's. Jobs name orders by number and find-my-keys
// requests by row.
func TestJobArgumentsHoldNoSessionIDNorAddress(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	first := b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	// An order failing on a price missing from the catalog, retried once
	// the price is added.
	s := b.paidSession(t, stripefake.Item{PriceID: "price_added_later", Quantity: 1})
	s.CustomerEmail = "buyer@example.com"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")
	b.Catalog.Put("price_added_later", catalog.Product{ProjectID: project, KeyDays: 7})
	status, _, body := send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+s.ID+"/retry", "", bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)
	b.WaitOrder(t, s.ID, "fulfilled")

	// The keys emailed again, and a find-my-keys link.
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+first.CheckoutSessionID+"/resend-email", "", bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, "buyer@example.com", "").status)
	b.waitLookupMessages(t, 1)
	b.waitMessages(t, 4) // three keys emails and the link

	kinds := map[string]int{}
	rows, err := b.Pool.Query(context.Background(), `SELECT kind, args::text FROM river_job`)
	require.NoError(t, err)
	for rows.Next() {
		var kind, args string
		require.NoError(t, rows.Scan(&kind, &args))
		kinds[kind]++
		require.NotContains(t, args, "cs_", "%s job %s", kind, args)
		require.NotContains(t, args, "@", "%s job %s", kind, args)
	}
	require.NoError(t, rows.Err())
	// A paid checkout's order is recorded by its webhook's job; the
	// operator's retry goes through fulfil_order.
	require.GreaterOrEqual(t, kinds["handle_events"], 2, "the two purchases' webhooks")
	require.GreaterOrEqual(t, kinds["fulfil_order"], 1, "the retry")
	require.Equal(t, 3, kinds["send_order_email"])
	require.Equal(t, 1, kinds["send_key_lookup_email"])
	b.waitLookupJobs(t, 1)
	require.Zero(t, b.Count(t, `SELECT count(*) FROM key_lookup_emails`), "the link's address is deleted once it is sent")
}
