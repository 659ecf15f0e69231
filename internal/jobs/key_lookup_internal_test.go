package jobs

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestKeyLookupTokenExpiresOnTheSecondTheClockSays(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	expiresAt := issued.Add(KeyLookupTokenTTL)
	token := signKeyLookupToken(secret, "buyer@example.com", expiresAt)

	for _, now := range []time.Time{issued, expiresAt.Add(-time.Second)} {
		email, until, err := checkKeyLookupToken(secret, token, now)
		require.NoError(t, err, now)
		require.Equal(t, "buyer@example.com", email)
		require.True(t, until.Equal(expiresAt))
	}
	for _, now := range []time.Time{expiresAt, expiresAt.Add(time.Hour)} {
		_, _, err := checkKeyLookupToken(secret, token, now)
		require.Equal(t, order.EUNAUTHORIZED, order.ErrorCode(err), now)
		require.Contains(t, err.Error(), "expired")
	}
	// Issued for longer than the service ever issues (a clock gone wrong).
	_, _, err := checkKeyLookupToken(secret, token, issued.Add(-2*time.Minute))
	require.Equal(t, errTokenInvalid, err)
}

func TestKeyLookupTokenRefusesAnotherKeyAndEveryChangedByte(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	token := signKeyLookupToken(secret, "buyer@example.com", now.Add(KeyLookupTokenTTL))

	_, _, err := checkKeyLookupToken(bytes.Repeat([]byte{8}, 32), token, now)
	require.Equal(t, errTokenInvalid, err, "signed with another key")

	raw, err := base64.RawURLEncoding.DecodeString(token)
	require.NoError(t, err)
	for i := range raw {
		changed := append([]byte(nil), raw...)
		changed[i] ^= 0x20
		_, _, err := checkKeyLookupToken(secret, base64.RawURLEncoding.EncodeToString(changed), now)
		require.Equal(t, errTokenInvalid, err, "byte %d changed", i)
	}
	for name, bad := range map[string]string{
		"empty": "", "not base64": "!!!!", "padded": token + "==", "too short": token[:20],
		"too long": strings.Repeat("A", maxTokenLength+4),
	} {
		_, _, err := checkKeyLookupToken(secret, bad, now)
		require.Equal(t, errTokenInvalid, err, name)
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"buyer@example.com":         "buyer@example.com",
		"  Buyer.One@Example.COM\t": "buyer.one@example.com",
		"a+tag@sub.example.org":     "a+tag@sub.example.org",
	} {
		got, err := NormalizeEmail(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{
		"", "   ", "buyer", "buyer@", "@example.com", "Buyer <buyer@example.com>", "a@example.com, b@example.com",
		"buyer@example.com\nBcc: x@example.com", strings.Repeat("a", 250) + "@example.com",
	} {
		_, err := NormalizeEmail(in)
		require.Equal(t, order.EINVALID, order.ErrorCode(err), "%q", in)
	}
}
