package webhook

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"
)

// postWithHeader sends body with the Stripe-Signature header given.
func (b *bundle) postWithHeader(t *testing.T, body []byte, header string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", header)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, string(out)}
}

// A signature dated beyond the tolerance ahead of now verifies with
// stripe-go, which looks at the past only; the endpoint refuses it like an
// old one, and the log says which side of the window it fell.
func TestSignaturesFromTheFutureAreRefusedLikeOldOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	future := unhandledEvent(t)
	header := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
		Payload: future, Secret: secret, Timestamp: time.Now().Add(24 * time.Hour)}).Header
	require.NoError(t, stripewebhook.ValidatePayload(future, header, secret), "stripe-go alone accepts it: the gap closed here")
	ahead := b.postWithHeader(t, future, header)

	old := unhandledEvent(t)
	behind := b.postWithHeader(t, old, sign(old, time.Now().Add(-24*time.Hour)))

	require.Equal(t, http.StatusBadRequest, ahead.status, ahead.body)
	require.Equal(t, http.StatusBadRequest, behind.status, behind.body)
	require.JSONEq(t, behind.body, ahead.body, "the same answer on either side of the window")
	require.JSONEq(t, `{"error":"signature timestamp outside the tolerance"}`, ahead.body)
	require.Zero(t, b.count(t, `SELECT count(*) FROM stripe_events`), "neither is recorded")

	// Each sender is logged once a while; these two came from one address,
	// so the second waits its turn: the first line carries the reason.
	logs := b.logs.String()
	require.Contains(t, logs, "webhook rejected")
	require.Contains(t, logs, "in the future, beyond the 5m0s tolerance")
	require.Contains(t, logs, "clock is behind")

	// Within the tolerance, a sender's clock a little ahead of ours is
	// fine, as it is a little behind.
	for _, skew := range []time.Duration{2 * time.Minute, -2 * time.Minute} {
		body := unhandledEvent(t)
		a := b.postWithHeader(t, body, sign(body, time.Now().Add(skew)))
		require.Equal(t, http.StatusOK, a.status, "skew %s: %s", skew, a.body)
	}
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM stripe_events`))
}

func TestSignatureTimeReadsTheHeaderAsStripeGoDoes(t *testing.T) {
	at, ok := signatureTime("t=1700000000,v1=ab,t=1700000060,v0=cd")
	require.True(t, ok)
	require.Equal(t, int64(1700000060), at.Unix(), "the last t= wins, as in stripe-go")
	for _, header := range []string{"", "v1=ab", "t=abc,v1=ab", "t=1,v1", "t=1=2,v1=ab", "t=9999999999999999999,v1=ab"} {
		_, ok := signatureTime(header)
		require.False(t, ok, "%q", header)
	}
}

func unhandledEvent(t *testing.T) []byte {
	return eventBody(t, newID("evt_"), "customer.created", map[string]any{"id": "cus_" + randomAlnum(14), "object": "customer"})
}
