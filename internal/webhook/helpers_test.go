package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/catalog"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"

	"fulfiller/internal/logging/logtest"
)

const secret = "whsec_webhook_package_tests"

type bundle struct {
	pool  *pgxpool.Pool
	river *river.Client[pgx.Tx]
	url   string
	logs  *logtest.Buffer
}

// setup runs the endpoint with the service's real workers on a database of
// its own; Stripe's API and Luarmor are the project's stand-ins.
func setup(t *testing.T) *bundle {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Limit: 100000})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	sf := stripefake.New("sk_test_webhook")
	sfSrv := httptest.NewServer(sf)
	t.Cleanup(sfSrv.Close)
	pool := postgrestest.NewPool(t)
	logs := &logtest.Buffer{}
	logger := slogTo(logs)
	rc, err := jobs.NewClient(jobs.Deps{
		Pool:    pool,
		Stripe:  stripeapi.New("sk_test_webhook", sfSrv.URL, nil),
		Luarmor: luarmor.NewClient(sandbox.DefaultAPIKey, luarmor.WithBaseURL(sbSrv.URL)),
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{}},
		Logger:  logger,
	}, jobs.Config{})
	require.NoError(t, err)
	require.NoError(t, rc.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(ctx)
	})
	h := New(Config{Secrets: []string{secret}, Pool: pool, River: rc, Logger: logger})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close)
	return &bundle{pool: pool, river: rc, url: srv.URL, logs: logs}
}

// slogTo logs warnings and errors to w.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// randomAlnum returns n random letters and digits.
func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

type answer struct {
	status int
	body   string
}

// post sends body signed with the endpoint's secret.
func (b *bundle) post(t *testing.T, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", sign(body, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, string(out)}
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// waitForEventJobs waits until every handle_events job has finished.
func (b *bundle) waitForEventJobs(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events' AND finalized_at IS NULL`) == 0
	}, 30*time.Second, 20*time.Millisecond, "handle_events jobs never finished")
	require.Zero(t, b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'handle_events' AND state <> 'completed'`),
		"every handle_events job completed")
}

// refuseAtDatabase makes PostgreSQL refuse events whose ID starts with
// evt_refused: an event that passes every check at the door and still
// fails its transaction, as a genuine database problem would.
func refuseAtDatabase(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(),
		`ALTER TABLE stripe_events ADD CONSTRAINT refuse_for_test CHECK (id NOT LIKE 'evt\_refused%')`)
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
	name string
	body []byte
	// storable: the body holds nothing the service stores or relies on
	// wrongly, so it is recorded (200); otherwise it is refused (400).
	storable bool
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
