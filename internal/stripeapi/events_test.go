package stripeapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi"
)

// putEvent stores a pretty-printed event, as Stripe's API writes them,
// with characters a re-encoding would escape.
func putEvent(fake *fulfillertest.Stripe, id, typ string, created time.Time) []byte {
	raw := []byte(fmt.Sprintf(`{
  "id": "%s",
  "object": "event",
  "api_version": "2023-10-16",
  "created": %d,
  "data": {"object": {"id": "ch_%s", "object": "charge", "description": "<Tom & Jerry>"}},
  "type": "%s"
}`, id, created.Unix(), id, typ))
	fake.PutEvent(raw)
	return raw
}

// collect lists events and returns them with the size of every page.
func collect(t *testing.T, c *stripeapi.Client, types []string, since time.Time) ([]string, []int, error) {
	t.Helper()
	var raws []string
	var pages []int
	err := c.ListEvents(context.Background(), types, since, func(events []json.RawMessage) error {
		pages = append(pages, len(events))
		for _, e := range events {
			raws = append(raws, string(e))
		}
		return nil
	})
	return raws, pages, err
}

func TestListEventsPagesThroughEveryMatchingEventAsSent(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	now := time.Now()
	var want []string
	// 250 matching events over three types, newest first; others that
	// must not be listed: another type, and one older than since.
	for i := 0; i < 250; i++ {
		typ := []string{"invoice.paid", "charge.refunded", "charge.dispute.created"}[i%3]
		want = append([]string{string(putEvent(fake, fmt.Sprintf("evt_%03d", i), typ, now.Add(time.Duration(i)*time.Second)))}, want...)
	}
	putEvent(fake, "evt_customer", "customer.created", now.Add(time.Hour))
	putEvent(fake, "evt_old", "invoice.paid", now.Add(-2*time.Hour))

	got, pages, err := collect(t, c, []string{"invoice.paid", "charge.refunded", "charge.dispute.created"}, now.Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, want, got, "every event once, newest first, byte for byte")
	require.Equal(t, []int{100, 100, 50}, pages)

	reqs := fake.Requests()
	require.Len(t, reqs, 3)
	for i, r := range reqs {
		require.Equal(t, "/v1/events", r.Path)
		q, err := url.ParseQuery(r.Query)
		require.NoError(t, err)
		require.Equal(t, "100", q.Get("limit"))
		require.Equal(t, strconv.FormatInt(now.Add(-time.Hour).Unix(), 10), q.Get("created[gte]"))
		require.Equal(t, []string{"invoice.paid"}, q["types[0]"])
		if i > 0 {
			require.NotEmpty(t, q.Get("starting_after"), "later pages continue after the last event")
		}
	}
}

func TestListEventsAsksForAtMostTwentyTypesAtOnce(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	var types []string
	for i := 0; i < 45; i++ {
		types = append(types, fmt.Sprintf("type.%d", i))
	}
	now := time.Now()
	putEvent(fake, "evt_first", "type.0", now)
	putEvent(fake, "evt_last", "type.44", now)

	got, _, err := collect(t, c, types, now.Add(-time.Minute))
	require.NoError(t, err)
	require.Len(t, got, 2)
	reqs := fake.Requests()
	require.Len(t, reqs, 3, "45 types: listings of 20, 20 and 5")
	asked := map[string]bool{}
	for _, r := range reqs {
		q, err := url.ParseQuery(r.Query)
		require.NoError(t, err)
		n := 0
		for k, vs := range q {
			if len(k) > 6 && k[:6] == "types[" {
				n++
				asked[vs[0]] = true
			}
		}
		require.LessOrEqual(t, n, 20)
	}
	require.Len(t, asked, 45, "every type asked for once")
}

func TestListEventsRefusesToListWithoutTypes(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	_, _, err := collect(t, c, nil, time.Now())
	require.ErrorContains(t, err, "no event types")
	require.Empty(t, fake.Requests(), "an unfiltered listing never reaches Stripe")
}

func TestListEventsStopsAtTheVisitorsError(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.SetMaxPageSize(1)
	now := time.Now()
	putEvent(fake, "evt_1", "invoice.paid", now)
	putEvent(fake, "evt_2", "invoice.paid", now)
	stop := errors.New("stop")
	err := c.ListEvents(context.Background(), []string{"invoice.paid"}, now.Add(-time.Minute), func([]json.RawMessage) error { return stop })
	require.ErrorIs(t, err, stop)
	require.Len(t, fake.Requests(), 1)
}

func TestListEventsErrorNamesThePageAndHidesTheKey(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.SetMaxPageSize(1)
	now := time.Now()
	putEvent(fake, "evt_1", "invoice.paid", now)
	putEvent(fake, "evt_2", "invoice.paid", now)
	// The second page fails beyond stripe-go's own retries.
	var pages []int
	err := c.ListEvents(context.Background(), []string{"invoice.paid"}, now.Add(-time.Minute), func(e []json.RawMessage) error {
		pages = append(pages, len(e))
		fake.FailNext("/v1/events", http.StatusServiceUnavailable, 10)
		return nil
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "stripe: listing events (page 2): 503")
	require.True(t, stripeapi.IsRetryable(err))
	require.Equal(t, []int{1}, pages)

	wrong := stripeapi.New("sk_test_notthekey0123456789", fake.URL, nil)
	err = wrong.ListEvents(context.Background(), []string{"invoice.paid"}, now, func([]json.RawMessage) error { return nil })
	require.ErrorContains(t, err, "stripe: listing events (page 1): 401")
	require.NotContains(t, err.Error(), "sk_test_notthekey0123456789")
}

// listServer answers every events listing with one event and has_more, as
// a broken server or proxy might; id names the event of the n-th request.
func listServer(t *testing.T, id func(n int64) string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"event","type":"invoice.paid","created":1}],"has_more":true}`,
			id(n.Add(1)))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestListEventsEndsWhenAServerSaysHasMoreForever(t *testing.T) {
	t.Parallel()
	srv, n := listServer(t, func(n int64) string { return fmt.Sprintf("evt_%d", n) })
	c := stripeapi.New(testKey, srv.URL, srv.Client())
	_, _, err := collect(t, c, []string{"invoice.paid"}, time.Now())
	require.ErrorContains(t, err, "refusing to page further")
	require.EqualValues(t, 1000, n.Load(), "at most 1000 pages")

	// A server that repeats its page is caught at once.
	srv, n = listServer(t, func(int64) string { return "evt_same" })
	c = stripeapi.New(testKey, srv.URL, srv.Client())
	_, _, err = collect(t, c, []string{"invoice.paid"}, time.Now())
	require.ErrorContains(t, err, "refusing to page in a circle")
	require.EqualValues(t, 2, n.Load())
}
