package stripekey_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripekey"
)

func TestMask(t *testing.T) {
	t.Parallel()
	require.Equal(t, "sk_test_****wxyz", stripekey.Mask("sk_test_0123456789wxyz"))
	require.Equal(t, "rk_live_****", stripekey.Mask("rk_live_short"))
	require.Equal(t, "****", stripekey.Mask("opaque"))
}
