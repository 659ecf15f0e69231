package webhook

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSignatureTimeReadsTheHeaderAsStripeGoDoes(t *testing.T) {
	at, ok := signatureTime("t=1700000000,v1=ab,t=1700000060,v0=cd")
	require.True(t, ok)
	require.Equal(t, int64(1700000060), at.Unix(), "the last t= wins, as in stripe-go")
	for _, header := range []string{"", "v1=ab", "t=abc,v1=ab", "t=1,v1", "t=1=2,v1=ab", "t=9999999999999999999,v1=ab"} {
		_, ok := signatureTime(header)
		require.False(t, ok, "%q", header)
	}
}
