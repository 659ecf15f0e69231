package discord_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/discord"
)

func TestSignInCookieAndStateAreBoundToEachOther(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 5, 1, 12, 0, 0, 0, time.UTC)
	flows := discord.NewFlows([]byte("the fleet's signing key, for this test only"))
	f := discord.Begin(42, 3, now)
	require.Len(t, f.Verifier, 43, "a PKCE verifier of 32 random bytes")
	cookie, state, ok := flows.Seal(f)
	require.True(t, ok)

	got, err := flows.Open(cookie, now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, f, got, "the cookie carries the order, its access generation, the nonce and the verifier")
	require.True(t, flows.StateMatches(got, state))

	other := discord.Begin(42, 3, now)
	_, otherState, _ := flows.Seal(other)
	require.False(t, flows.StateMatches(got, otherState), "the state of another sign-in of the same order")
	require.False(t, flows.StateMatches(got, ""), "no state")
	require.False(t, flows.StateMatches(got, state+"A"), "a state with a character more")

	_, err = flows.Open(cookie, now.Add(discord.FlowTTL))
	require.ErrorIs(t, err, discord.ErrFlowInvalid, "expired after FlowTTL")

	raw, err := base64.RawURLEncoding.DecodeString(cookie)
	require.NoError(t, err)
	raw[8]++ // the order number's last byte: another order
	_, err = flows.Open(base64.RawURLEncoding.EncodeToString(raw), now)
	require.ErrorIs(t, err, discord.ErrFlowInvalid, "a cookie moved to another order")

	forger := discord.NewFlows([]byte("a key that is not the fleet's"))
	forged, forgedState, _ := forger.Seal(discord.Begin(7, 1, now))
	_, err = flows.Open(forged, now)
	require.ErrorIs(t, err, discord.ErrFlowInvalid, "a cookie sealed with another key")
	require.False(t, flows.StateMatches(got, forgedState))

	for _, junk := range []string{"", "x", cookie[:len(cookie)-1], cookie + "=="} {
		_, err := flows.Open(junk, now)
		require.ErrorIs(t, err, discord.ErrFlowInvalid, "%q", junk)
	}
}
