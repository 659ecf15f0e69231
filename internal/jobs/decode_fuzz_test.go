package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/postgres"
)

// FuzzDecodeEvent feeds a stored payload to the decoding the handlers do
// before they write anything: the object from the body, then each object
// type and the fields read from it. Nothing may panic, and a body that
// cannot be read must be a *badObjectError, which the job skips instead of
// retrying.
func FuzzDecodeEvent(f *testing.F) {
	// Real-shaped events, shared with the webhook package's tests.
	files, err := filepath.Glob(filepath.Join("..", "webhook", "testdata", "events", "*.json"))
	require.NoError(f, err)
	require.NotEmpty(f, files)
	for _, name := range files {
		body, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(body)
	}
	for _, body := range []string{
		`{"data":{"object":"cs_test_1"}}`,
		`{"data":{"object":null}}`,
		`{"data":{"object":[]}}`,
		`{"data":null}`,
		`{"data":{"object":{"id":"cs_1","object":"checkout.session","customer":{"id":null},"custom_fields":[null,{"key":"discord_id","text":null}]}}}`,
		`{"data":{"object":{"id":"cs_1","customer_details":{"email":"a\u0000b"},"custom_fields":[{"key":"discord_id","text":{"value":"\ud800"}}]}}}`,
		`{"data":{"object":{"id":"dp_1","charge":{"id":"ch_1","payment_intent":{}},"payment_intent":"pi_1","status":"won"}}}`,
		`{"data":{"object":{"id":"ch_1","refunded":true,"amount":1e400,"payment_intent":7}}}`,
		`{"data":{"object":{"id":"re_1","object":"refund","charge":{"id":null},"status":"failed","failure_reason":7}}}`,
		`{"data":{"object":{"id":"in_1","lines":{"data":[{"period":{"end":-1e15}}]},"subscription":{"items":null}}}}`,
		`{"data":{"object":{"id":"sub_1","items":{"data":[null]},"current_period_end":"soon"}}}`,
		`{"DATA":{"OBJECT":{"ID":"cs_1"}},"data":{"object":{"id":"cs_2"}}}`,
		"{\"data\":{\"object\":{\"id\":\"\xff\"}}}",
	} {
		f.Add([]byte(body))
	}

	f.Fuzz(func(t *testing.T, payload []byte) {
		event, err := storedEvent(postgres.Event{ID: "evt_fuzz", Type: "checkout.session.completed", CreatedAt: time.Unix(1705312800, 0), Payload: payload})
		if err != nil {
			return
		}
		require.Equal(t, "evt_fuzz", event.ID)
		require.Equal(t, stripe.EventType("checkout.session.completed"), event.Type, "the recorded type, not the body's")

		if s, err := decodeObject[stripe.CheckoutSession](event, "a checkout session"); requireReadable(t, err) {
			_ = SessionDetails(s)
		}
		_, err = decodeObject[stripe.Invoice](event, "an invoice")
		requireReadable(t, err)
		if d, err := decodeObject[stripe.Dispute](event, "a dispute"); requireReadable(t, err) {
			_, _ = chargeID(d.Charge), paymentIntentID(d.PaymentIntent)
		}
		if ch, err := decodeObject[stripe.Charge](event, "a charge"); requireReadable(t, err) {
			_ = paymentIntentID(ch.PaymentIntent)
		}
		if rf, err := decodeObject[stripe.Refund](event, "a refund"); requireReadable(t, err) {
			_ = chargeID(rf.Charge)
		}
		_, err = decodeObject[stripe.Subscription](event, "a subscription")
		requireReadable(t, err)
	})
}

// requireReadable reports whether the object was decoded; a failure must be
// one the job skips.
func requireReadable(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	var bad *badObjectError
	require.True(t, errors.As(err, &bad), "%v is not a *badObjectError", err)
	return false
}
