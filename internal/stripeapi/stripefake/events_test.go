package stripefake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi/stripefake"
)

// rawEvent is an event object written the way Stripe's API pretty-prints
// it, with characters json.Marshal would escape.
func rawEvent(id, typ string, created int64) []byte {
	return []byte(fmt.Sprintf(`{
  "id": "%s",
  "object": "event",
  "api_version": "2023-10-16",
  "created": %d,
  "data": {"object": {"id": "obj_%s", "object": "charge", "description": "<b>&</b>"}},
  "livemode": false,
  "type": "%s"
}`, id, created, id, typ))
}

type eventList struct {
	Object  string            `json:"object"`
	URL     string            `json:"url"`
	HasMore bool              `json:"has_more"`
	Data    []json.RawMessage `json:"data"`
}

func TestEventsListFiltersNewestFirstAndPages(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	const base = int64(1_700_000_000)
	// Put out of order; two events share a second.
	f.PutEvent(rawEvent("evt_b", "charge.refunded", base+20))
	f.PutEvent(rawEvent("evt_a", "invoice.paid", base+10))
	f.PutEvent(rawEvent("evt_d", "charge.dispute.created", base+30))
	f.PutEvent(rawEvent("evt_c", "customer.created", base+20))
	f.PutEvent(rawEvent("evt_e", "charge.dispute.closed", base+40))

	fetch := func(query string) ([]string, bool) {
		t.Helper()
		a := get(t, srv, key, "/v1/events"+query)
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		var l eventList
		require.NoError(t, json.Unmarshal(a.body, &l))
		require.Equal(t, "list", l.Object)
		require.Equal(t, "/v1/events", l.URL)
		var ids []string
		for _, d := range l.Data {
			var e stripe.Event
			require.NoError(t, json.Unmarshal(d, &e), "stripe-go reads the event")
			ids = append(ids, e.ID)
		}
		return ids, l.HasMore
	}

	ids, more := fetch("")
	require.Equal(t, []string{"evt_e", "evt_d", "evt_c", "evt_b", "evt_a"}, ids,
		"newest first; of one second, the latest put first")
	require.False(t, more)

	// types[] in every spelling, type exact and with a wildcard.
	ids, _ = fetch("?types[]=invoice.paid&types[]=charge.refunded")
	require.Equal(t, []string{"evt_b", "evt_a"}, ids)
	ids, _ = fetch("?types[0]=invoice.paid&types[1]=charge.dispute.created")
	require.Equal(t, []string{"evt_d", "evt_a"}, ids)
	ids, _ = fetch("?type=customer.created")
	require.Equal(t, []string{"evt_c"}, ids)
	ids, _ = fetch("?type=charge.dispute.*")
	require.Equal(t, []string{"evt_e", "evt_d"}, ids)

	// created bounds, inclusive and exclusive.
	ids, _ = fetch(fmt.Sprintf("?created[gte]=%d&created[lte]=%d", base+20, base+30))
	require.Equal(t, []string{"evt_d", "evt_c", "evt_b"}, ids)
	ids, _ = fetch(fmt.Sprintf("?created[gt]=%d&created[lt]=%d", base+20, base+40))
	require.Equal(t, []string{"evt_d"}, ids)
	ids, _ = fetch(fmt.Sprintf("?created=%d", base+10))
	require.Equal(t, []string{"evt_a"}, ids)
	ids, _ = fetch(fmt.Sprintf("?created[gte]=%d&types[]=charge.refunded&types[]=invoice.paid", base+15))
	require.Equal(t, []string{"evt_b"}, ids, "filters combine")

	// Paging follows the filtered, ordered list.
	ids, more = fetch("?limit=2")
	require.Equal(t, []string{"evt_e", "evt_d"}, ids)
	require.True(t, more)
	ids, more = fetch("?limit=2&starting_after=evt_d")
	require.Equal(t, []string{"evt_c", "evt_b"}, ids)
	require.True(t, more)
	ids, more = fetch("?limit=2&starting_after=evt_b")
	require.Equal(t, []string{"evt_a"}, ids)
	require.False(t, more)
	ids, more = fetch("?limit=2&ending_before=evt_b")
	require.Equal(t, []string{"evt_d", "evt_c"}, ids)
	require.True(t, more)
	f.SetMaxPageSize(1)
	ids, more = fetch("?limit=100&types[]=invoice.paid&types[]=charge.refunded")
	require.Equal(t, []string{"evt_b"}, ids)
	require.True(t, more)
	f.SetMaxPageSize(0)

	// PutEvent replaces an event with the same ID.
	f.PutEvent(rawEvent("evt_a", "invoice.paid", base+50))
	ids, _ = fetch("")
	require.Equal(t, []string{"evt_a", "evt_e", "evt_d", "evt_c", "evt_b"}, ids)
}

func TestEventsListServesEventsByteForByte(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	raw := rawEvent("evt_raw", "charge.refunded", 1_700_000_000)
	f.PutEvent(raw)
	a := get(t, srv, key, "/v1/events")
	require.Equal(t, http.StatusOK, a.status)
	var l eventList
	require.NoError(t, json.Unmarshal(a.body, &l))
	require.Len(t, l.Data, 1)
	require.Equal(t, string(raw), string(l.Data[0]), "whitespace and escaping as put")

	built := f.AddEvent("invoice.paid", []byte(`{"id":"in_1","object":"invoice"}`))
	var e stripe.Event
	require.NoError(t, json.Unmarshal(built, &e))
	require.Regexp(t, `^evt_[0-9a-f]{24}$`, e.ID)
	require.Equal(t, stripe.EventType("invoice.paid"), e.Type)
	require.Equal(t, stripe.APIVersion, e.APIVersion)
	require.Equal(t, "event", e.Object)
	require.NotZero(t, e.Created)
	require.Equal(t, "in_1", e.Data.Object["id"])
	a = get(t, srv, key, "/v1/events?type=invoice.paid")
	require.NoError(t, json.Unmarshal(a.body, &l))
	require.Equal(t, string(built), string(l.Data[0]))
	require.NotEqual(t, e.ID, stripeEventID(t, f.AddEvent("invoice.paid", []byte(`{"id":"in_1"}`))), "IDs are unique")
}

func stripeEventID(t *testing.T, raw []byte) string {
	t.Helper()
	var e stripe.Event
	require.NoError(t, json.Unmarshal(raw, &e))
	return e.ID
}

func TestEventsListRefusesWhatStripeRefuses(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutEvent(rawEvent("evt_1", "invoice.paid", 1_700_000_000))
	tooMany := url.Values{}
	for i := 0; i < 21; i++ {
		tooMany.Add("types[]", fmt.Sprintf("type.%d", i))
	}
	for query, param := range map[string]string{
		"?type=invoice.paid&types[]=invoice.paid": "types",
		"?" + tooMany.Encode():                    "types",
		"?created[gte]=yesterday":                 "created[gte]",
		"?colour=blue":                            "colour",
		"?starting_after=evt_nope":                "starting_after",
		"?limit=101":                              "limit",
	} {
		a := get(t, srv, key, "/v1/events"+query)
		require.Equal(t, http.StatusBadRequest, a.status, query)
		require.Equal(t, param, decodeError(t, a).Error.Param, query)
	}
	a := get(t, srv, "", "/v1/events")
	require.Equal(t, http.StatusUnauthorized, a.status, "the list needs the API key")

	twenty := url.Values{}
	for i := 0; i < 20; i++ {
		twenty.Add("types[]", fmt.Sprintf("type.%d", i))
	}
	require.Equal(t, http.StatusOK, get(t, srv, key, "/v1/events?"+twenty.Encode()).status, "20 types are allowed")

	require.Panics(t, func() { f.PutEvent([]byte(`{"id":"evt_x","type":"invoice.paid"}`)) }, "no created")
	require.Panics(t, func() { f.PutEvent([]byte(`not json`)) })
}
