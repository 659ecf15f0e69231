package webhook_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/fulfillertest"
)

// A signature dated beyond the tolerance ahead of now verifies with
// stripe-go, which looks at the past only; the endpoint refuses it like an
// old one, and the log says which side of the window it fell.
func TestSignaturesFromTheFutureAreRefusedLikeOldOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	future := unhandledEvent(t)
	header := fulfillertest.Sign(future, secret, time.Now().Add(24*time.Hour))
	require.NoError(t, stripewebhook.ValidatePayload(future, header, secret), "stripe-go alone accepts it: the gap closed here")
	ahead := b.postWithHeader(t, future, header)

	old := unhandledEvent(t)
	behind := b.postWithHeader(t, old, fulfillertest.Sign(old, secret, time.Now().Add(-24*time.Hour)))

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
		a := b.postWithHeader(t, body, fulfillertest.Sign(body, secret, time.Now().Add(skew)))
		require.Equal(t, http.StatusOK, a.status, "skew %s: %s", skew, a.body)
	}
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM stripe_events`))
}
