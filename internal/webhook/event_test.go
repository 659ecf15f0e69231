package webhook

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseEventReadsRealShapedEvents(t *testing.T) {
	t.Parallel()
	want := map[string]struct {
		objectID string
		handled  bool
	}{
		"checkout.session.completed":    {"cs_test_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ", true},
		"invoice.paid":                  {"in_1OcDeFgHiJkLmNoPqRsTuVwX", true},
		"charge.dispute.created":        {"dp_1OdEfGhIjKlMnOpQrStUvWxY", true},
		"charge.refunded":               {"ch_3OaBcDEfGhIjKlMn0aBcDeFg", true},
		"charge.refund.updated":         {"re_3OaBcDEfGhIjKlMn0bCdEfGh", true},
		"customer.subscription.deleted": {"sub_1OaBcDEfGhIjKlMn", true},
		"customer.created":              {"cus_PqRsTuVwXyZ012", false},
	}
	samples := sampleEvents(t)
	require.Len(t, samples, len(want))
	for typ, body := range samples {
		ev, err := parseEvent(body, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err, typ)
		require.Equal(t, typ, ev.Type)
		require.True(t, strings.HasPrefix(ev.ID, "evt_"), typ)
		require.Equal(t, want[typ].objectID, ev.ObjectID, typ)
		require.Equal(t, want[typ].handled, ev.Handled, typ)
		require.Equal(t, "2023-10-16", ev.APIVersion, typ)
		require.Equal(t, body, ev.Payload, "%s: the body is kept byte for byte", typ)
	}
}

func TestParseEventRefusesWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	for _, pc := range poisonCases(t) {
		ev, err := ParseEvent(pc.Body)
		if pc.Storable {
			require.NoError(t, err, pc.Name)
			require.Equal(t, pc.Body, ev.Payload, pc.Name)
			continue
		}
		require.Error(t, err, pc.Name)
		// The message goes back to the sender: it names the rule, never
		// the value that broke it.
		require.NotContains(t, err.Error(), "\x00", pc.Name)
		require.NotContains(t, err.Error(), "aaaaaaaa", pc.Name)
		require.NotContains(t, err.Error(), "\uFFFD", pc.Name)
		require.Less(t, len(err.Error()), 120, pc.Name)
	}
}

func TestParseEventChecks(t *testing.T) {
	t.Parallel()
	now := time.Now()
	session := map[string]any{"id": "cs_test_checks", "object": "checkout.session"}
	cases := []struct {
		name  string
		body  []byte
		error string // empty: accepted
	}{
		{"valid", eventBody(t, "evt_ok", "checkout.session.completed", session), ""},
		{"id without evt_", eventBody(t, "ch_123", "checkout.session.completed", session), "evt_"},
		{"id evt_ alone", eventBody(t, "evt_", "checkout.session.completed", session), "evt_"},
		{"id with a dash", eventBody(t, "evt_a-b", "checkout.session.completed", session), "evt_"},
		{"id of 255", eventBody(t, "evt_"+strings.Repeat("x", 251), "checkout.session.completed", session), ""},
		{"id of 256", eventBody(t, "evt_"+strings.Repeat("x", 252), "checkout.session.completed", session), "at most 255"},
		{"type in capitals", eventBody(t, "evt_ok", "Checkout.Session.Completed", session), "event type"},
		{"type empty", eventBody(t, "evt_ok", "", session), "event type"},
		{"type too long", eventBody(t, "evt_ok", strings.Repeat("a.", 65), session), "event type"},
		{"handled, no object id", eventBody(t, "evt_ok", "checkout.session.completed", map[string]any{"object": "checkout.session"}), "no id"},
		{"handled, object id with a dash", eventBody(t, "evt_ok", "checkout.session.completed", map[string]any{"id": "cs-1", "object": "checkout.session"}), "data.object id"},
		{"handled, wrong object", eventBody(t, "evt_ok", "checkout.session.completed", map[string]any{"id": "in_1", "object": "invoice"}), "not a checkout.session"},
		{"handled, object is a string", eventBody(t, "evt_ok", "invoice.paid", "in_1"), "not a Stripe object"},
		{"handled, no data", []byte(`{"id":"evt_ok","type":"invoice.paid","created":` + itoa(now.Unix()) + `}`), "no data.object"},
		{"unhandled, no data", []byte(`{"id":"evt_ok","type":"customer.created","created":` + itoa(now.Unix()) + `}`), ""},
		{"unhandled, object without id", eventBody(t, "evt_ok", "customer.updated", map[string]any{"object": "customer"}), ""},
		{"unhandled, object is a list", eventBody(t, "evt_ok", "customer.updated", []int{1, 2}), ""},
		{"unhandled, free-form object id", eventBody(t, "evt_ok", "plan.created", map[string]any{"id": "gold plan/€", "object": "plan"}), ""},
		{"api_version of a later release", bytes.Replace(eventBody(t, "evt_ok", "checkout.session.completed", session),
			[]byte(`"2023-10-16"`), []byte(`"2024-09-30.acacia"`), 1), ""},
		{"api_version with a space", bytes.Replace(eventBody(t, "evt_ok", "checkout.session.completed", session),
			[]byte(`"2023-10-16"`), []byte(`"2023 10 16"`), 1), "api_version"},
		{"not an object", []byte(`["evt_ok"]`), "not a JSON Stripe event"},
		{"null", []byte(`null`), "event id"},
		{"trailing garbage", append(eventBody(t, "evt_ok", "checkout.session.completed", session), '}'), "not a JSON Stripe event"},
		{"livemode not a bool", []byte(`{"id":"evt_ok","type":"customer.created","livemode":"yes"}`), "not a JSON Stripe event"},
		// The body is decoded once: data that is not an object leaves an
		// unhandled event without one, and never hides a later field's
		// type error (encoding/json reports only the first).
		{"unhandled, data is a string", []byte(`{"id":"evt_ok","type":"customer.created","created":` + itoa(now.Unix()) + `,"data":"x"}`), ""},
		{"handled, data is a number", []byte(`{"id":"evt_ok","type":"invoice.paid","created":` + itoa(now.Unix()) + `,"data":5}`), "no data.object"},
		{"data is a string, then livemode not a bool", []byte(`{"id":"evt_ok","type":"customer.created","created":` + itoa(now.Unix()) + `,"data":"x","livemode":"yes"}`), "not a JSON Stripe event"},
		{"data is a list, then api_version a number", []byte(`{"id":"evt_ok","type":"customer.created","created":` + itoa(now.Unix()) + `,"data":[1],"api_version":5}`), "not a JSON Stripe event"},
		{"data is an object, then id a number", []byte(`{"data":{"object":{"id":"cus_1","object":"customer"}},"id":5,"type":"customer.created","created":` + itoa(now.Unix()) + `}`), "not a JSON Stripe event"},
	}
	for _, tc := range cases {
		ev, err := parseEvent(tc.body, now)
		if tc.error == "" {
			require.NoError(t, err, tc.name)
			require.Equal(t, tc.body, ev.Payload, tc.name)
			continue
		}
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.error, tc.name)
	}
}

func TestParseEventCreatedRange(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(created int64) error {
		body := []byte(`{"id":"evt_ok","type":"customer.created","created":` + itoa(created) + `}`)
		_, err := parseEvent(body, now)
		return err
	}
	require.NoError(t, at(earliestCreated.Unix()), "the first second of 2010")
	require.Error(t, at(earliestCreated.Unix()-1), "before 2010")
	require.NoError(t, at(now.Add(24*time.Hour).Unix()), "a day ahead: clocks disagree")
	require.Error(t, at(now.Add(24*time.Hour).Unix()+1), "more than a day ahead")
	require.Error(t, at(0))
	require.Error(t, at(-1))
	require.NoError(t, at(now.Add(-30*24*time.Hour).Unix()), "a month old: a late retry")
}

func TestUnhandledEventKeepsOnlyAStorableObjectID(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent(eventBody(t, "evt_ok", "customer.created", map[string]any{"id": "cus_123", "object": "customer"}))
	require.NoError(t, err)
	require.Equal(t, "cus_123", ev.ObjectID)
	require.False(t, ev.Handled)
	ev, err = ParseEvent(eventBody(t, "evt_ok", "plan.created", map[string]any{"id": "gold plan", "object": "plan"}))
	require.NoError(t, err)
	require.Empty(t, ev.ObjectID, "an ID outside the charset is not stored; the body still holds it")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
