// Package mail sends the buyer their license keys by email: an SMTP
// server's settings from the environment, the message rendered from
// embedded templates (plain text and HTML, every value escaped) and sent
// with go-mail.
package mail

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"fulfiller/internal/shop"
)

// Settings are what keys by email need. The zero value means mail is off.
type Settings struct {
	SMTP SMTPServer
	// From is the sender, "Shop <keys@shop.example>" or a bare address.
	From string
	// PublicBaseURL is where the hosted order page lives, without a
	// trailing slash: the email links to PublicBaseURL/orders/{id}.
	PublicBaseURL string
	// Shop is who the emails speak for (SHOP_*); zero means an unnamed
	// shop.
	Shop shop.Identity
	// Disabled are the kinds of email the shop turned off (MAIL_DISABLE):
	// none is recorded or queued.
	Disabled KindSet
	// ExpiryNoticeDays is how many days before a key that will not renew
	// runs out its buyer is told (MAIL_EXPIRY_NOTICE_DAYS); 0 is off.
	ExpiryNoticeDays int
}

// Sends reports whether mail is on and the shop sends emails of kind k.
func (s Settings) Sends(k Kind) bool { return s.Enabled() && !s.Disabled.Has(k) }

// Enabled reports whether mail is configured.
func (s Settings) Enabled() bool { return s.SMTP.Host != "" }

// SMTPServer is a parsed SMTP_URL. Its password is never printed: String
// leaves it out, and no error of this package contains it.
type SMTPServer struct {
	Host     string
	Port     int
	Username string
	Password string
	// ImplicitTLS is smtps://: TLS from the first byte. smtp:// must
	// upgrade with STARTTLS, except to a relay on this machine, which is
	// used as it is.
	ImplicitTLS bool
}

// String is the server's address for logs, without credentials.
func (s SMTPServer) String() string {
	scheme := "smtp"
	if s.ImplicitTLS {
		scheme = "smtps"
	}
	return scheme + "://" + net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// ParseSMTPURL reads smtp://user:pass@host:port or smtps://user:pass@host:port.
// The port defaults to 587 (smtp) or 465 (smtps). Errors never quote the
// URL, which holds the password.
func ParseSMTPURL(raw string) (SMTPServer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password included: say only
		// what was expected.
		return SMTPServer{}, errors.New("is not a valid URL; expected smtp://user:pass@host:port or smtps://user:pass@host:port (percent-encode special characters of the password)")
	}
	var s SMTPServer
	switch u.Scheme {
	case "smtp":
		s.Port = 587
	case "smtps":
		s.Port, s.ImplicitTLS = 465, true
	default:
		return SMTPServer{}, errors.New("must start with smtp:// or smtps://")
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return SMTPServer{}, errors.New("must be smtp://user:pass@host:port with no path, query or fragment")
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return SMTPServer{}, errors.New("has no host; expected smtp://user:pass@host:port")
	}
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return SMTPServer{}, errors.New("has a port outside 1-65535")
		}
		s.Port = port
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
		if s.Username == "" {
			return SMTPServer{}, errors.New("has a password but no user name")
		}
	}
	return s, nil
}

// ParseFrom checks a MAIL_FROM value: one address, optionally with a name.
func ParseFrom(raw string) (string, error) {
	a, err := mail.ParseAddress(raw)
	if err != nil {
		return "", fmt.Errorf("is not an email address (%w); expected keys@shop.example or \"Shop <keys@shop.example>\"", err)
	}
	return a.String(), nil
}

// ParsePublicBaseURL checks PUBLIC_BASE_URL: an absolute https URL (http
// only for this machine, when trying the service locally: the links it
// makes carry find-my-keys tokens and lead to pages with keys), returned
// without a trailing slash.
func ParsePublicBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("must be an absolute http(s) URL such as https://shop.example, without credentials, query or fragment")
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return "", errors.New("must be https (http only for localhost): its links lead to buyers' keys")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// IsLoopback is whether host names this machine.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
