package stripeapi

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSlogLoggerKeepsOnlyWarnings(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := slogLogger{logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}

	l.Debugf("Response: %s", `{"customer_details":{"email":"a@b.c"}}`)
	l.Infof("Requesting %v", "GET")
	l.Errorf("Request error from Stripe (status %v)", 404)
	require.Empty(t, buf.String())

	l.Warnf("Initiating retry %v for request %v", 1, "GET /v1/charges/ch_1")
	require.Contains(t, buf.String(), "level=WARN")
	require.Contains(t, buf.String(), `msg="Initiating retry 1 for request GET /v1/charges/ch_1"`)
	require.Contains(t, buf.String(), "component=stripe-go")
}
