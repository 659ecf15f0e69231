package config_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestOrderAPISettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{
		"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,fd00::/32",
		"ALLOWED_ORIGINS": "https://shop.example.com, http://localhost:3000",
	}))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/32")}, c.TrustedProxies)
	require.Equal(t, []string{"https://shop.example.com", "http://localhost:3000"}, c.AllowedOrigins)

	c, err = config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Empty(t, c.TrustedProxies)
	require.Empty(t, c.AllowedOrigins)

	for name, values := range map[string][]string{
		"TRUSTED_PROXIES": {"10.0.0.0/33", "proxy.internal", "10.0.0.0/8;11.0.0.0/8"},
		"ALLOWED_ORIGINS": {"*", "shop.example.com", "https://shop.example.com/", "https://shop.example.com/page", "ftp://shop.example.com", "https://user@shop.example.com"},
	} {
		for _, v := range values {
			_, err := config.FromEnv(env(map[string]string{name: v}))
			var cerr *config.Error
			require.ErrorAs(t, err, &cerr, "%s=%q", name, v)
			require.Equal(t, name, cerr.Name)
		}
	}
}
