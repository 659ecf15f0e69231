package app_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/outbound"
	"fulfiller/internal/stripeapi/stripefake"
)

// consoleDeliveryRow is one row of the console's delivery log as served.
var consoleDeliveryRow = regexp.MustCompile(`(?s)<tr data-delivery="(\d+)" data-status="(\w+)">.*?</tr>`)

// consoleNextAttempt is the row's "Next attempt" cell when it has one.
var consoleNextAttempt = regexp.MustCompile(`<time datetime="([^"]+)">`)

// consoleOlderLink is the delivery log's link to its next page.
var consoleOlderLink = regexp.MustCompile(`<a href="([^"]+)" rel="next">Older</a>`)

type consoleDeliveryListed struct {
	id     int64
	status string
	next   string // the next attempt's RFC 3339 time, "" for none
}

// consoleDeliveries reads one page of the console's delivery log: its
// rows, newest first, and its link to older ones ("" on the last page).
func (b *bundle) consoleDeliveries(t *testing.T, path string) ([]consoleDeliveryListed, string, string) {
	t.Helper()
	status, _, page := b.consoleGet(t, path)
	require.Equal(t, http.StatusOK, status, "%s", page)
	var rows []consoleDeliveryListed
	for _, m := range consoleDeliveryRow.FindAllStringSubmatch(page, -1) {
		id, err := strconv.ParseInt(m[1], 10, 64)
		require.NoError(t, err)
		row := consoleDeliveryListed{id: id, status: m[2]}
		if at := consoleNextAttempt.FindStringSubmatch(m[0]); at != nil {
			row.next = at[1]
		}
		rows = append(rows, row)
	}
	older := ""
	if m := consoleOlderLink.FindStringSubmatch(page); m != nil {
		older = html.UnescapeString(m[1])
	}
	return rows, older, page
}

// TestConsoleDeliveryLogPagesOlderAndShowsTheNextAttempt: the shop's
// backend answers 503 to every sale's event, so three deliveries wait for
// their next attempt. The console lists each with the time River will try
// it next, and pages through them two at a time with the filter kept:
// every delivery once, newest first, and no link past the last page.
func TestConsoleDeliveryLogPagesOlderAndShowsTheNextAttempt(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	b := setup(t, withAdminLogin(), withWebhooks(rc, func(s *outbound.Settings) { s.Events = []outbound.EventType{outbound.OrderFulfilled} }))
	for _, email := range []string{"ann@example.com", "ben@example.com", "cat@example.com"} {
		b.Buy(t, email, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	}
	// Four failed attempts each: the fifth waits about 8 s, long enough
	// to read the page between two reads of the queue that agree.
	b.WaitJobsUntil(t, "three deliveries failed four times each", func() bool {
		return b.Count(t, `SELECT count(*) FROM outbound_deliveries WHERE status = 'pending' AND attempts >= 4`) == 3
	})
	var ids []int64
	for _, d := range b.deliveries(t) {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	require.Len(t, ids, 3)

	// scheduled reads when River tries each delivery next, from its job.
	scheduled := func() map[int64]string {
		out := map[int64]string{}
		rows, err := b.Pool.Query(t.Context(), `SELECT (args->>'delivery_id')::bigint, scheduled_at, state::text FROM river_job WHERE kind = 'deliver_event'`)
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var id int64
			var at time.Time
			var state string
			require.NoError(t, rows.Scan(&id, &at, &state))
			if state == "retryable" || state == "scheduled" {
				out[id] = at.UTC().Format(time.RFC3339)
			}
		}
		require.NoError(t, rows.Err())
		return out
	}
	var listed []consoleDeliveryListed
	var older string
	require.Eventually(t, func() bool {
		before := scheduled()
		listed, older, _ = b.consoleDeliveries(t, "/console/deliveries?status=pending&limit=2")
		after := scheduled()
		if len(before) != 3 || fmt.Sprint(before) != fmt.Sprint(after) {
			return false // an attempt ran while the page was read: read again
		}
		require.Len(t, listed, 2, "a page of two")
		for _, row := range listed {
			require.Equal(t, "pending", row.status)
			require.Equal(t, before[row.id], row.next, "delivery %d: the next attempt River has scheduled", row.id)
			next, err := time.Parse(time.RFC3339, row.next)
			require.NoError(t, err)
			require.WithinDuration(t, time.Now(), next, 2*time.Minute, "the next attempt is the fast backoff's, not a day away")
		}
		return true
	}, time.Minute, 50*time.Millisecond, "the delivery log while no attempt runs")
	require.Equal(t, []int64{ids[0], ids[1]}, []int64{listed[0].id, listed[1].id}, "newest first")
	require.NotEmpty(t, older, "a full page links to older deliveries")
	link, err := url.Parse(older)
	require.NoError(t, err)
	require.Equal(t, "pending", link.Query().Get("status"), "the filter is kept on the next page")
	require.Equal(t, "2", link.Query().Get("limit"), "and the page's size")

	rest, last, page := b.consoleDeliveries(t, older)
	require.Len(t, rest, 1)
	require.Equal(t, ids[2], rest[0].id, "the oldest, once")
	require.Empty(t, last, "no link past the last page")
	require.Contains(t, page, "Older deliveries (filtered)")
	require.Contains(t, page, `<a href="/console/deliveries">Newest</a>`)

	// Another filter's pages hold none of them.
	none, noMore, _ := b.consoleDeliveries(t, "/console/deliveries?status=delivered&limit=2")
	require.Empty(t, none)
	require.Empty(t, noMore)
}
