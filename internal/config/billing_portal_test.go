package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestBillingPortalReturnURL(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Empty(t, c.BillingPortalReturnURL, "unset: the portal returns to the buyer's order page")
	require.Empty(t, c.PublicBaseURL)

	for _, value := range []string{"https://shop.example/account?tab=billing", "http://localhost:8080/back", "https://shop.example"} {
		c, err := config.FromEnv(env(map[string]string{"BILLING_PORTAL_RETURN_URL": value}))
		require.NoError(t, err, value)
		require.Equal(t, value, c.BillingPortalReturnURL)
	}
	for _, value := range []string{"shop.example/account", "/account", "ftp://shop.example", "http://shop.example/account",
		"https://user:pw@shop.example", "https://shop.example/account#billing", "https://"} {
		_, err := config.FromEnv(env(map[string]string{"BILLING_PORTAL_RETURN_URL": value}))
		var ce *config.Error
		require.ErrorAs(t, err, &ce, value)
		require.Equal(t, "BILLING_PORTAL_RETURN_URL", ce.Name, value)
		require.NotContains(t, err.Error(), "pw", "the value is not repeated")
	}
}

// PUBLIC_BASE_URL names the order page the portal returns to even with
// mail off, so it is read (and checked) whether mail is on or not.
func TestPublicBaseURLIsReadWithoutMail(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{"PUBLIC_BASE_URL": "https://keys.shop.example/"}))
	require.NoError(t, err)
	require.False(t, c.Mail.Enabled())
	require.Equal(t, "https://keys.shop.example", c.PublicBaseURL)

	_, err = config.FromEnv(env(map[string]string{"PUBLIC_BASE_URL": "http://keys.shop.example"}))
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "PUBLIC_BASE_URL", ce.Name)
}
