package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/stripeapi/stripefake"
)

// Placeholders in the event template. Each is unique in the rendered JSON;
// createdMark is a number because "created" is a JSON number.
const (
	sessionMark  = "cs_test_BENCHSESSIONMARK"
	customerMark = "cus_BENCHCUSTOMERMARK"
	intentMark   = "pi_BENCHINTENTMARK"
	eventMark    = "evt_BENCHEVENTMARK"
	createdMark  = 1111111111
)

// eventMaker produces distinct checkout.session.completed events, each
// carrying a Checkout Session exactly as the Stripe fake serves it (the
// shape stripe-go v76 decodes), with fresh event, session, customer and
// payment intent IDs.
//
// The JSON is rendered from a template split at the placeholders, so making
// an event costs a few string copies rather than a JSON encoding: the load
// generator shares the two cores with the handler being measured, and
// every microsecond it spends is one the handler does not get.
type eventMaker struct {
	paymentStatus string // "unpaid" or "paid"
	items         []stripefake.Item
	prefix        string // distinguishes this maker's IDs from any other's
	seq           atomic.Int64

	lits []string // literal text around the placeholders
	keys []string // placeholder between lits[i] and lits[i+1]
	size int      // a rendered event's approximate length
}

// newEventMaker builds the template from a session rendered by the fake.
func newEventMaker(paymentStatus string, items []stripefake.Item) (*eventMaker, error) {
	fake := stripefake.New("")
	fake.PutSession(stripefake.Session{
		ID: sessionMark, Mode: "payment", PaymentStatus: paymentStatus, Status: "complete",
		CustomerEmail: benchEmail, Customer: customerMark, PaymentIntent: intentMark, Items: items,
	})
	session, ok := fake.SessionJSON(sessionMark)
	if !ok {
		return nil, fmt.Errorf("building the event template: the Stripe fake lost session %s", sessionMark)
	}
	envelope, err := json.Marshal(map[string]any{
		"id": eventMark, "object": "event", "api_version": stripe.APIVersion,
		"created": createdMark, "type": "checkout.session.completed", "livemode": false,
		"pending_webhooks": 1, "request": map[string]any{"id": nil, "idempotency_key": nil},
		"data": map[string]any{"object": json.RawMessage(session)},
	})
	if err != nil {
		return nil, fmt.Errorf("building the event template: %w", err)
	}
	m := &eventMaker{paymentStatus: paymentStatus, items: items, prefix: randomHex(4)}
	m.lits, m.keys, err = splitTemplate(string(envelope),
		sessionMark, customerMark, intentMark, eventMark, strconv.Itoa(createdMark))
	if err != nil {
		return nil, err
	}
	m.size = len(envelope) + 64 // the IDs are a little longer than the marks
	return m, nil
}

// splitTemplate cuts s at every occurrence of the marks.
func splitTemplate(s string, marks ...string) (lits, keys []string, err error) {
	seen := map[string]int{}
	for {
		at, mark := -1, ""
		for _, m := range marks {
			if i := strings.Index(s, m); i >= 0 && (at < 0 || i < at) {
				at, mark = i, m
			}
		}
		if at < 0 {
			lits = append(lits, s)
			break
		}
		lits = append(lits, s[:at])
		keys = append(keys, mark)
		seen[mark]++
		s = s[at+len(mark):]
	}
	for _, m := range marks {
		if seen[m] != 1 {
			return nil, nil, fmt.Errorf("building the event template: placeholder %s occurs %d times, want once", m, seen[m])
		}
	}
	return lits, keys, nil
}

// purchase is one generated checkout.
type purchase struct {
	SessionID string
	Body      []byte
	session   stripefake.Session
}

// next renders a new event. The session's ID differs from every earlier
// one, so the service records a new order each time.
func (m *eventMaker) next(now time.Time) purchase {
	n := m.seq.Add(1)
	suffix := fmt.Sprintf("%s%08d", m.prefix, n)
	s := stripefake.Session{
		ID: "cs_test_" + suffix, Mode: "payment", PaymentStatus: m.paymentStatus, Status: "complete",
		CustomerEmail: benchEmail, Customer: "cus_" + suffix, PaymentIntent: "pi_" + suffix, Items: m.items,
	}
	vals := map[string]string{
		sessionMark: s.ID, customerMark: s.Customer, intentMark: s.PaymentIntent,
		eventMark: "evt_" + suffix, strconv.Itoa(createdMark): strconv.FormatInt(now.Unix(), 10),
	}
	var b bytes.Buffer
	b.Grow(m.size)
	for i, lit := range m.lits {
		b.WriteString(lit)
		if i < len(m.keys) {
			b.WriteString(vals[m.keys[i]])
		}
	}
	return purchase{SessionID: s.ID, Body: b.Bytes(), session: s}
}

// sign returns the Stripe-Signature header Stripe would send with body at
// time at. Stripe signs every delivery when it sends it, so the load
// generator signs just before each request rather than ahead of time.
func sign(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}
