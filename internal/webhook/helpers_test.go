package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"
)

// The helpers of the internal tests (package webhook), which test what
// the package does not export. These tests cannot import fulfillertest:
// it imports internal/app, which imports this package. So the few helpers
// they need are kept here; export_test.go lends the hostile bodies and the
// database refusal to the external tests (package webhook_test), which
// run on the harness.

const secret = "whsec_webhook_package_tests"

// randomAlnum returns n random letters and digits.
func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// refuseAtDatabase makes PostgreSQL refuse events about an object whose
// ID starts with cs_test_refused: an event that passes every check at the
// door and still fails its transaction, as a genuine database problem
// would.
func refuseAtDatabase(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(),
		`ALTER TABLE stripe_events ADD CONSTRAINT refuse_for_test CHECK (object_id NOT LIKE 'cs\_test\_refused%')`)
	require.NoError(t, err)
}

func sign(body []byte, at time.Time) string {
	return stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}

var seq atomic.Int64

func newID(prefix string) string {
	return fmt.Sprintf("%s%d%07d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// eventBody builds a Stripe event of the service's API version around object.
func eventBody(t testing.TB, id, typ string, object any) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "created": time.Now().Unix(),
		"type": typ, "livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	require.NoError(t, err)
	return body
}

// failedCheckout is an event the workers act on without calling Stripe:
// the order of the session is recorded as failed.
func failedCheckout(t testing.TB, sessionID string) []byte {
	t.Helper()
	return eventBody(t, newID("evt_"), "checkout.session.async_payment_failed", map[string]any{
		"id": sessionID, "object": "checkout.session", "mode": "payment", "payment_status": "unpaid",
		"status": "complete", "customer_details": map[string]any{"email": "buyer@example.com"},
	})
}

// sampleEvents are real-shaped events of the types the service handles
// (and one it does not), from testdata/events.
func sampleEvents(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

// poisonCase is a signed body that once failed every event recorded with it.
type poisonCase struct {
	Name string
	Body []byte
	// Storable: the body holds nothing the service stores or relies on
	// wrongly, so it is recorded (200); otherwise it is refused (400).
	Storable bool
}

// poisonCases builds the hostile bodies: NUL characters and lone
// surrogates where they reach a text column, invalid UTF-8, timestamps
// outside what PostgreSQL holds, IDs longer than an index entry; and the
// same characters where they are harmless.
func poisonCases(t testing.TB) []poisonCase {
	t.Helper()
	session := func(id string) string {
		return `{"id":"` + id + `","object":"checkout.session","mode":"payment","payment_status":"unpaid","status":"complete"}`
	}
	raw := func(id, typ, version, created, object string) []byte {
		return []byte(`{"id":"` + id + `","object":"event","api_version":"` + version + `","created":` + created +
			`,"type":"` + typ + `","livemode":false,"data":{"object":` + object + `}}`)
	}
	now := fmt.Sprint(time.Now().Unix())
	typ := "checkout.session.async_payment_failed"
	v := stripe.APIVersion
	long := strings.Repeat("a", 3000)
	return []poisonCase{
		{"NUL in id", raw(`evt_nul\u0000`+newID(""), typ, v, now, session(newID("cs_test_"))), false},
		{"lone surrogate in id", raw(`evt_\ud800`+newID(""), typ, v, now, session(newID("cs_test_"))), false},
		{"invalid UTF-8 in id", raw("evt_\xff"+newID(""), typ, v, now, session(newID("cs_test_"))), false},
		{"invalid UTF-8 in the object", raw(newID("evt_"), typ, v, now,
			`{"id":"`+newID("cs_test_")+`","object":"checkout.session","metadata":{"note":"caf\xe9"}}`), false},
		{"3000-character id", raw("evt_"+long, typ, v, now, session(newID("cs_test_"))), false},
		{"created 1e15", raw(newID("evt_"), typ, v, "1e15", session(newID("cs_test_"))), false},
		{"created -1e15", raw(newID("evt_"), typ, v, "-1e15", session(newID("cs_test_"))), false},
		{"created 10^15", raw(newID("evt_"), typ, v, "1000000000000000", session(newID("cs_test_"))), false},
		{"created -10^15", raw(newID("evt_"), typ, v, "-1000000000000000", session(newID("cs_test_"))), false},
		{"created 2^63", raw(newID("evt_"), typ, v, "9223372036854775808", session(newID("cs_test_"))), false},
		{"NUL in type", raw(newID("evt_"), typ+`\u0000`, v, now, session(newID("cs_test_"))), false},
		{"NUL in api_version", raw(newID("evt_"), typ, v+`\u0000`, now, session(newID("cs_test_"))), false},
		{"NUL in object id", raw(newID("evt_"), typ, v, now, session(`cs_test_\u0000`+newID(""))), false},
		{"3000-character object id", raw(newID("evt_"), typ, v, now, session("cs_"+long)), false},
		{"NUL in a field nothing stores", raw(newID("evt_"), typ, v, now,
			`{"id":"`+newID("cs_test_")+`","object":"checkout.session","metadata":{"note":"a\u0000b"}}`), true},
		{"lone surrogate in a field nothing stores", raw(newID("evt_"), typ, v, now,
			`{"id":"`+newID("cs_test_")+`","object":"checkout.session","metadata":{"note":"\ud800"}}`), true},
		// Recorded, but PostgreSQL refuses the email when the job stores
		// it: the job skips this event and acts on the others.
		{"NUL in the customer's email", raw(newID("evt_"), typ, v, now,
			`{"id":"`+newID("cs_test_")+`","object":"checkout.session","customer_details":{"email":"a\u0000@example.com"}}`), true},
		{"NUL in an unhandled event's object id", raw(newID("evt_"), "customer.created", v, now,
			`{"id":"cus_\u0000","object":"customer"}`), true},
	}
}
