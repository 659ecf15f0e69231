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

func TestOrderLinkExpiresOnTheSecondTheClockSays(t *testing.T) {
	t.Parallel()
	links := &OrderLinks{secret: bytes.Repeat([]byte{7}, 32)}
	o := &order.Order{ID: 41, AccessGeneration: 3}
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	expiresAt := issued.Add(OrderEmailLinkTTL)
	token := links.Sign(o, expiresAt)
	require.True(t, IsOrderLink(token))
	require.Len(t, token, orderLinkLength)

	for _, now := range []time.Time{issued, expiresAt.Add(-time.Second)} {
		access, until, err := links.Verify(token, now)
		require.NoError(t, err, now)
		require.Equal(t, order.Access{OrderID: 41, Generation: 3}, access)
		require.True(t, until.Equal(expiresAt))
		require.True(t, access.Grants(o))
	}
	for _, now := range []time.Time{expiresAt, expiresAt.Add(time.Hour)} {
		_, _, err := links.Verify(token, now)
		require.ErrorIs(t, err, ErrOrderLinkInvalid, now)
	}
	_, _, err := links.Verify(token, issued.Add(-25*time.Hour))
	require.ErrorIs(t, err, ErrOrderLinkInvalid, "a link valid longer than the service issues is refused")
}

func TestOrderLinkRefusesEveryChangedByte(t *testing.T) {
	t.Parallel()
	links := &OrderLinks{secret: bytes.Repeat([]byte{9}, 32)}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	token := links.Sign(&order.Order{ID: 7, AccessGeneration: 1}, now.Add(time.Hour))
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, OrderLinkPrefix))
	require.NoError(t, err)
	for i := range raw {
		changed := append([]byte(nil), raw...)
		changed[i] ^= 0x01
		_, _, err := links.Verify(OrderLinkPrefix+base64.RawURLEncoding.EncodeToString(changed), now)
		require.ErrorIs(t, err, ErrOrderLinkInvalid, "byte %d", i)
	}
	other := &OrderLinks{secret: bytes.Repeat([]byte{10}, 32)}
	_, _, err = other.Verify(token, now)
	require.ErrorIs(t, err, ErrOrderLinkInvalid, "signed with another key")
	_, _, err = links.Verify("cs_test_"+strings.TrimPrefix(token, OrderLinkPrefix), now)
	require.ErrorIs(t, err, ErrOrderLinkInvalid, "without its prefix")
}
