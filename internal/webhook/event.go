package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// Bounds of what an event may hold. Stripe's own values are far inside
// them; anything outside could not be stored or acted on, and is refused
// before it reaches the database, where it would fail its batch.
const (
	maxIDLen         = 255 // event and object IDs (also keeps them inside a btree index entry)
	maxTypeLen       = 128
	maxAPIVersionLen = 64
	// maxCreatedAhead tolerates clocks that disagree; an event is signed
	// within minutes of its creation.
	maxCreatedAhead = 24 * time.Hour
)

// earliestCreated predates every Stripe event.
var earliestCreated = time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)

// wireEvent is the part of an event the endpoint reads, decoded in one
// pass over the body: its envelope, and data.object as the handlers read
// it (jobs.EventData).
type wireEvent struct {
	wireEnvelope
	Data jobs.EventData `json:"data"`
}

// wireEnvelope is the event without its data.
type wireEnvelope struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	APIVersion string `json:"api_version"`
	Created    int64  `json:"created"`
	Livemode   bool   `json:"livemode"`
}

// decodeEvent decodes the body once. A data member that is not an object
// (a type the service does not act on may carry anything there) leaves
// the event without data.object rather than refusing it; its envelope is
// then read again on its own, strictly, since a type error stops
// encoding/json from reporting any later one.
func decodeEvent(body []byte) (wireEvent, error) {
	var w wireEvent
	err := json.Unmarshal(body, &w)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && (typeErr.Field == "data" || strings.HasPrefix(typeErr.Field, "data.")) {
		w = wireEvent{}
		err = json.Unmarshal(body, &w.wireEnvelope)
	}
	if err != nil {
		return wireEvent{}, errors.New("body is not a JSON Stripe event")
	}
	return w, nil
}

// ParseEvent reads and checks a verified event body: everything the
// service stores or relies on, so that an accepted event can always be
// recorded. Its errors are safe to show to the sender: they never repeat
// the body's values.
func ParseEvent(body []byte) (postgres.Event, error) {
	return parseEvent(body, time.Now())
}

func parseEvent(body []byte, now time.Time) (postgres.Event, error) {
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD, so the
	// event recorded would not be the one read.
	if !utf8.Valid(body) {
		return postgres.Event{}, errors.New("body is not valid UTF-8")
	}
	w, err := decodeEvent(body)
	if err != nil {
		return postgres.Event{}, err
	}
	if len(w.ID) <= len("evt_") || len(w.ID) > maxIDLen || w.ID[:4] != "evt_" || !onlyBytes(w.ID, isIDByte) {
		return postgres.Event{}, fmt.Errorf("event id must be evt_ followed by letters, digits or underscores, at most %d characters", maxIDLen)
	}
	if w.Type == "" || len(w.Type) > maxTypeLen || !onlyBytes(w.Type, isTypeByte) {
		return postgres.Event{}, fmt.Errorf("event type must be 1 to %d characters of a-z, 0-9, '_' and '.'", maxTypeLen)
	}
	if len(w.APIVersion) > maxAPIVersionLen || !onlyBytes(w.APIVersion, isVersionByte) {
		return postgres.Event{}, fmt.Errorf("event api_version must be at most %d characters of letters, digits, '.', '_' and '-'", maxAPIVersionLen)
	}
	latest := now.Add(maxCreatedAhead)
	if w.Created < earliestCreated.Unix() || w.Created > latest.Unix() {
		return postgres.Event{}, errors.New("event created time is not between 2010-01-01 and a day from now")
	}

	want, handled := jobs.HandledObject(w.Type)
	objectID, objectType, err := readObject(w.Data)
	switch {
	case handled && err != nil:
		return postgres.Event{}, err
	case handled && objectType != want:
		return postgres.Event{}, fmt.Errorf("%s event whose data.object is not a %s", w.Type, want)
	case err != nil:
		// The service does not act on this type: record it whatever its
		// object holds.
		objectID = ""
	}
	return postgres.Event{
		ID: w.ID, Type: w.Type, APIVersion: w.APIVersion, Livemode: w.Livemode, ObjectID: objectID,
		CreatedAt: time.Unix(w.Created, 0), Handled: handled, Payload: body,
	}, nil
}

// readObject returns the id and the object type of data.object.
func readObject(data jobs.EventData) (id, objectType string, err error) {
	raw, err := data.ObjectOf()
	if err != nil {
		return "", "", err
	}
	var object struct {
		ID     string `json:"id"`
		Object string `json:"object"`
	}
	if err := json.Unmarshal(raw, &object); err != nil {
		return "", "", errors.New("event data.object is not a Stripe object")
	}
	if object.ID == "" {
		return "", "", errors.New("event data.object has no id")
	}
	if len(object.ID) > maxIDLen || !onlyBytes(object.ID, isIDByte) {
		return "", "", fmt.Errorf("event data.object id must be letters, digits or underscores, at most %d characters", maxIDLen)
	}
	return object.ID, object.Object, nil
}

func onlyBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isTypeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

func isVersionByte(c byte) bool {
	return isIDByte(c) || c == '.' || c == '-'
}
