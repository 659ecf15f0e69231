package stripefake

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxEventTypes is how many types[] one events listing may name, as on
// Stripe.
const maxEventTypes = 20

// storedEvent is an event as PutEvent received it: served byte for byte.
type storedEvent struct {
	id      string
	typ     string
	created int64
	raw     []byte
}

// PutEvent adds the event raw (a whole event object, as a webhook body
// carries it) to what GET /v1/events lists, or replaces the event with its
// ID. The list serves raw exactly as given. It panics if raw is not a JSON
// object with a string id, a string type and an integer created: that is a
// mistake in the test.
func (f *Fake) PutEvent(raw []byte) {
	var head struct {
		ID      string      `json:"id"`
		Type    string      `json:"type"`
		Created json.Number `json:"created"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		panic("stripefake: PutEvent: not an event object: " + err.Error())
	}
	created, err := head.Created.Int64()
	if head.ID == "" || head.Type == "" || err != nil {
		panic("stripefake: PutEvent: an event needs an id, a type and an integer created")
	}
	e := storedEvent{id: head.ID, typ: head.Type, created: created, raw: bytes.Clone(raw)}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.events {
		if f.events[i].id == e.id {
			f.events[i] = e
			return
		}
	}
	f.events = append(f.events, e)
}

// AddEvent builds an event of type typ around object (data.object, as
// JSON), created now, in the shape Stripe gives it in API version
// APIVersion, adds it with PutEvent and returns its JSON.
func (f *Fake) AddEvent(typ string, object []byte) []byte {
	return f.AddEventAt(typ, object, f.now())
}

// AddEventAt is AddEvent of an event created at created: events spread
// over the past, as a reconciliation lists them.
func (f *Fake) AddEventAt(typ string, object []byte, created time.Time) []byte {
	if !json.Valid(object) {
		panic("stripefake: AddEvent: object is not JSON")
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	raw, err := json.Marshal(map[string]any{
		"id":               "evt_" + hex.EncodeToString(b),
		"object":           "event",
		"api_version":      APIVersion,
		"created":          created.Unix(),
		"data":             map[string]any{"object": json.RawMessage(object)},
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"type":             typ,
	})
	if err != nil {
		panic("stripefake: AddEvent: " + err.Error())
	}
	f.PutEvent(raw)
	return raw
}

// listEvents serves GET /v1/events: the events that match type (exact, or
// a prefix ending in "*") or types[], and created, newest first (the
// latest put first among events of one second), paged like every list.
func (f *Fake) listEvents(w http.ResponseWriter, r *http.Request) {
	q, e := parseQueryWith(r, true, isEventFilterKey)
	if e != nil {
		e.write(w)
		return
	}
	match, e := eventFilter(q)
	if e != nil {
		e.write(w)
		return
	}
	f.mu.Lock()
	var events []storedEvent
	for i := len(f.events) - 1; i >= 0; i-- {
		if match(f.events[i]) {
			events = append(events, f.events[i])
		}
	}
	maxPage := f.maxPageSize
	f.mu.Unlock()
	slices.SortStableFunc(events, func(a, b storedEvent) int { return cmp.Compare(b.created, a.created) })

	data, hasMore, e := page(events, func(e storedEvent) string { return e.id }, q, maxPage)
	if e != nil {
		e.write(w)
		return
	}
	// The envelope is written by hand so each event goes out exactly as
	// it was put (json.Marshal would compact and re-escape it).
	var b bytes.Buffer
	b.WriteString(`{"object":"list","data":[`)
	for i, e := range data {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e.raw)
	}
	fmt.Fprintf(&b, `],"has_more":%t,"url":"/v1/events"}`, hasMore)
	writeRaw(w, http.StatusOK, b.Bytes())
}

// isEventFilterKey accepts the filters of GET /v1/events, with types in
// every spelling clients use (types[], types[0] from stripe-go, types).
func isEventFilterKey(k string) bool {
	switch k {
	case "type", "types", "types[]", "created", "created[gte]", "created[gt]", "created[lte]", "created[lt]":
		return true
	}
	rest, ok := strings.CutPrefix(k, "types[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return false
	}
	_, err := strconv.Atoi(strings.TrimSuffix(rest, "]"))
	return err == nil
}

// eventFilter builds the predicate of the query's type and created filters.
func eventFilter(q url.Values) (func(storedEvent) bool, *apiError) {
	var types []string
	for k, vs := range q {
		if k == "types" || strings.HasPrefix(k, "types[") {
			types = append(types, vs...)
		}
	}
	typ := q.Get("type")
	if typ != "" && len(types) > 0 {
		return nil, badParam("types", "You may pass either `type` or `types`, but not both.")
	}
	if len(types) > maxEventTypes {
		return nil, badParam("types",
			fmt.Sprintf("You may pass at most %d types (you passed %d).", maxEventTypes, len(types)))
	}
	comparisons := map[string]func(created, bound int64) bool{
		"created":      func(c, b int64) bool { return c == b },
		"created[gte]": func(c, b int64) bool { return c >= b },
		"created[gt]":  func(c, b int64) bool { return c > b },
		"created[lte]": func(c, b int64) bool { return c <= b },
		"created[lt]":  func(c, b int64) bool { return c < b },
	}
	type bound struct {
		cmp   func(created, bound int64) bool
		value int64
	}
	var created []bound
	for k, compare := range comparisons {
		v := q.Get(k)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badParam(k, "Invalid integer: "+v)
		}
		created = append(created, bound{compare, n})
	}
	return func(e storedEvent) bool {
		switch {
		case typ != "" && strings.HasSuffix(typ, "*"):
			if !strings.HasPrefix(e.typ, strings.TrimSuffix(typ, "*")) {
				return false
			}
		case typ != "":
			if e.typ != typ {
				return false
			}
		case len(types) > 0:
			if !slices.Contains(types, e.typ) {
				return false
			}
		}
		for _, b := range created {
			if !b.cmp(e.created, b.value) {
				return false
			}
		}
		return true
	}, nil
}
