package logging

// KeyTail names a license key by its last four characters, as support
// operations log it: enough for an operator to match the key a customer
// quotes, never enough to use it.
func KeyTail(s string) string {
	if len(s) <= 8 {
		return "…****"
	}
	return "…" + s[len(s)-4:]
}
