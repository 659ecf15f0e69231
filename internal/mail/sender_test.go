package mail

import (
	"testing"

	"github.com/stretchr/testify/require"
	gomail "github.com/wneessen/go-mail"
)

// TestSTARTTLSIsRequiredOffThisMachine: keys and links never go in clear to
// a server elsewhere; a relay on this machine may speak plain SMTP.
func TestSTARTTLSIsRequiredOffThisMachine(t *testing.T) {
	for host, want := range map[string]gomail.TLSPolicy{
		"mail.example":   gomail.TLSMandatory,
		"203.0.113.9":    gomail.TLSMandatory,
		"localhost":      gomail.TLSOpportunistic,
		"127.0.0.1":      gomail.TLSOpportunistic,
		"::1":            gomail.TLSOpportunistic,
		"localhost.evil": gomail.TLSMandatory,
	} {
		require.Equal(t, want, SMTPServer{Host: host, Port: 587}.tlsPolicy(), host)
	}
}
