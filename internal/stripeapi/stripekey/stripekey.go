// Package stripekey masks Stripe API keys. It depends on the standard
// library only, so the client (stripeapi) and its stand-in (stripefake,
// which does not depend on stripe-go) share one definition.
package stripekey

import "strings"

// Mask renders a Stripe API key (sk_test_..., rk_live_...) as Stripe's own
// messages do: its kind prefix and last four characters, enough to tell
// which key was used and too little to use it. It is for Stripe
// credentials only; a Luarmor license key is shown by logging.MaskKey.
func Mask(key string) string {
	prefix := ""
	if i := strings.Index(key, "_"); i >= 0 {
		if j := strings.Index(key[i+1:], "_"); j >= 0 {
			prefix = key[:i+1+j+1]
		}
	}
	if len(key)-len(prefix) <= 8 {
		return prefix + "****"
	}
	return prefix + "****" + key[len(key)-4:]
}
