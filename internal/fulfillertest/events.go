package fulfillertest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// Event builds a Stripe event of the service's API version, of type typ,
// around object (a Stripe object's JSON), with a fresh event ID.
func Event(t testing.TB, typ string, object []byte) []byte {
	t.Helper()
	ev := map[string]any{
		"id": NewID("evt_"), "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": typ, "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": json.RawMessage(object)},
	}
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	return body
}

// Sign returns the Stripe-Signature header Stripe would send with body,
// signed with secret at the given time.
func Sign(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}
