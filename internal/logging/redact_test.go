package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
)

// Shapes of what must never reach a log line, as the service meets them:
// Stripe's Checkout Session IDs and secrets, and Luarmor's 32-character
// keys (internal/luarmor/sandbox generates the same shape).
const (
	sessionID  = "cs_test_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123456789abcdefGHIJ"
	liveID     = "cs_live_b1UnpyADB8Mg8GkD1jZnBqg4k0QfPwTb"
	licenseKey = "kQzR7bXwYtPnLm2sVcHdJf8gAe4uNo1i"
	stripeKey  = "sk_live_51NbZfQ2eZvKYlo2CabcdefghijklmnOPQRSTUV"
	restricted = "rk_test_51NbZfQ2eZvKYlo2Cxyz"
	whsec      = "whsec_0123456789abcdefABCDEF0123456789"
	bearer     = "Bearer 9f3c2a7e1b4d6f8a0c2e4b6d8f0a1c3e"
)

var secrets = []string{sessionID, liveID, licenseKey, stripeKey, restricted, whsec, "9f3c2a7e1b4d6f8a0c2e4b6d8f0a1c3e"}

func requireNoSecret(t *testing.T, out string) {
	t.Helper()
	for _, s := range secrets {
		require.NotContains(t, out, s)
	}
}

func TestRedactReplacesEachKindOfCredential(t *testing.T) {
	got := logging.Redact("order " + sessionID + " (" + liveID + ") key=" + licenseKey + "; stripe " + stripeKey +
		", restricted " + restricted + ", secret " + whsec + ", header Authorization: " + bearer)
	requireNoSecret(t, got)
	require.Contains(t, got, "order "+logging.OrderRef(sessionID)+" ("+logging.OrderRef(liveID)+")")
	require.Contains(t, got, "key="+logging.MaskKey(licenseKey)+";")
	require.Contains(t, got, "stripe sk_live_[REDACTED], restricted rk_test_[REDACTED], secret whsec_[REDACTED]")
	require.Contains(t, got, "Authorization: Bearer [REDACTED]")

	require.Equal(t, "user_key="+logging.MaskKey(licenseKey), logging.Redact("user_key="+licenseKey), "in a query string")
	require.Equal(t, `{"user_key":"`+logging.MaskKey(licenseKey)+`"}`, logging.Redact(`{"user_key":"`+licenseKey+`"}`), "in JSON")
	require.Equal(t, "authorization: bearer [REDACTED]", logging.Redact("authorization: bearer abcdefghijklmnopqrstuvwxyz"))
}

func TestRedactLeavesReferencesAndIDsAlone(t *testing.T) {
	for _, text := range []string{
		"order ord_1a2b3c4d5e6f sent to eml_0a1b2c3d4e5f",
		"job 123456789012 of kind create_key, attempt 3",
		"payment pi_3NabcdefghijklmnopqrstuvWXYZ012345 event evt_1NG8Du2eZvKYlo2CabcdefghijklmnOP price_1NxYzAbCdEfGhIjKlMnOpQrS",
		"customer cus_QaBcDeFgHiJkLm subscription sub_1NabcdefghijklmnopqrstuVW",
		// Digests: sha256 (64 hex), md5 (32 hex) in either case, all digits.
		"sum e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"md5 d41d8cd98f00b204e9800998ecf8427e and D41D8CD98F00B204E9800998ECF8427E",
		"number 12345678901234567890123456789012",
		"a lowercase word of thirty-two: abcdefghijklmnopqrstuvwxyzabcdef",
		"missing or wrong bearer token (SHOP_API_TOKEN); shop API bearer token refused",
		"", "short", "The key …WXYZ of order ord_000000000000",
	} {
		require.Equal(t, text, logging.Redact(text))
	}
}

// Redacting twice changes nothing more: references and masks are not
// taken for what they replaced.
func TestRedactIsStable(t *testing.T) {
	once := logging.Redact(sessionID + " " + licenseKey + " " + stripeKey + " " + bearer)
	require.Equal(t, once, logging.Redact(once))
	require.Equal(t, "set STRIPE_WEBHOOK_SECRET to whsec_ and 32 characters", logging.Redact("set STRIPE_WEBHOOK_SECRET to whsec_ and 32 characters"))
}

type credentialStringer struct{}

func (credentialStringer) String() string { return "session " + sessionID }

type credentialValuer struct{}

func (credentialValuer) LogValue() slog.Value { return slog.StringValue("key " + licenseKey) }

type withSecretField struct {
	Name string
	Key  string
}

func TestRedactingFiltersEveryPartOfARecord(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		logger := logging.New(&buf, format, slog.LevelInfo).With("preset", "shop "+stripeKey)
		ctx := logging.WithAttrs(context.Background(), slog.String("order", sessionID))
		logger.InfoContext(ctx, "could not read order "+sessionID+" for key "+licenseKey,
			"string", "Authorization: "+bearer,
			"error", fmt.Errorf("reading order %s: %w", liveID, errors.New("connection refused")),
			slog.Group("request", slog.String("body", `{"user_key":"`+licenseKey+`"}`), slog.Group("inner", slog.String("secret", whsec))),
			"stringer", credentialStringer{},
			"valuer", credentialValuer{},
			"bytes", []byte("restricted "+restricted),
			"struct", withSecretField{Name: "a", Key: licenseKey},
			"count", 3,
		)
		out := buf.String()
		requireNoSecret(t, out)
		for _, want := range []string{logging.OrderRef(sessionID), logging.OrderRef(liveID), logging.MaskKey(licenseKey),
			"sk_live_[REDACTED]", "whsec_[REDACTED]", "rk_test_[REDACTED]", "Bearer [REDACTED]", "connection refused"} {
			require.Contains(t, out, want, "%s: %s", format, out)
		}
		if format == "json" {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
			require.Equal(t, "could not read order "+logging.OrderRef(sessionID)+" for key "+logging.MaskKey(licenseKey), rec["msg"])
			require.Equal(t, logging.OrderRef(sessionID), rec["order"], "a context's attributes are filtered too")
			require.Equal(t, float64(3), rec["count"], "numbers stay numbers")
			inner := rec["request"].(map[string]any)["inner"].(map[string]any)
			require.Equal(t, "whsec_[REDACTED]", inner["secret"])
			require.Equal(t, "reading order "+logging.OrderRef(liveID)+": connection refused", rec["error"])
		}
	}
}

// A logger the service is handed (tests', a library's) gets the same
// filter through ServiceHandler, once however often it is wrapped.
func TestServiceHandlerWrapsOnce(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(logging.ServiceHandler(slog.NewJSONHandler(&buf, nil)))
	l = slog.New(logging.ServiceHandler(logging.ServiceHandler(l.Handler())))
	ctx := logging.WithAttrs(context.Background(), slog.Int64("job_id", 7))
	l.InfoContext(ctx, "key "+licenseKey)
	requireNoSecret(t, buf.String())
	require.Equal(t, 1, strings.Count(buf.String(), `"job_id"`))

	// An error whose Error method panics (a nil pointer) does not take
	// the line down.
	buf.Reset()
	var nilErr *panickyError
	l.Info("odd", "error", error(nilErr))
	require.Contains(t, buf.String(), `"msg":"odd"`)
}

type panickyError struct{ msg string }

func (e *panickyError) Error() string { return e.msg }

func BenchmarkRedactingHandler(b *testing.B) {
	var buf bytes.Buffer
	plain := slog.New(slog.NewJSONHandler(&buf, nil))
	redacted := slog.New(logging.ServiceHandler(slog.NewJSONHandler(&buf, nil)))
	for _, bc := range []struct {
		name   string
		logger *slog.Logger
		secret bool
	}{{"plain/clean", plain, false}, {"redacting/clean", redacted, false}, {"redacting/secret", redacted, true}} {
		b.Run(bc.name, func(b *testing.B) {
			msg, id := "key delivered", "ord_1a2b3c4d5e6f"
			if bc.secret {
				msg, id = "reading order "+sessionID+" failed", licenseKey
			}
			err := errors.New("luarmor: 429 too many requests")
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				bc.logger.Info(msg, "order", id, "job_id", 123456, "error", err, "project_id", "3f98888f9999c9999e99a2")
			}
		})
	}
}
