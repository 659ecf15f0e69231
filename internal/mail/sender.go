package mail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"fulfiller/internal/order"
)

// ErrBadRecipient says the order's email address cannot receive mail: no
// retry will help.
var ErrBadRecipient = errors.New("the order's email address is not a valid address")

// sendTimeout bounds one SMTP conversation.
const sendTimeout = 30 * time.Second

// Sender sends keys emails through one SMTP server.
type Sender struct {
	settings Settings
}

// NewSender returns a Sender for settings (which must be Enabled).
func NewSender(settings Settings) *Sender { return &Sender{settings: settings} }

// SendKeys renders e and sends it. Errors name the server, never its
// password.
func (s *Sender) SendKeys(ctx context.Context, e KeysEmail) error {
	text, html, err := e.Render()
	if err != nil {
		return fmt.Errorf("rendering the keys email: %w", err)
	}
	return s.send(ctx, "keys email", e.To, e.Subject(), e.MessageID, text, html)
}

// SendKeyLookup renders e and sends it. Errors name the server, never its
// password, nor the link.
func (s *Sender) SendKeyLookup(ctx context.Context, e KeyLookupEmail) error {
	text, html, err := e.Render()
	if err != nil {
		return fmt.Errorf("rendering the find-my-keys email: %w", err)
	}
	return s.send(ctx, "find-my-keys email", e.To, KeyLookupSubject, e.MessageID, text, html)
}

// SendLifecycle renders a lifecycle email and sends it. Errors name the
// server, never its password, nor a link or a key.
func (s *Sender) SendLifecycle(ctx context.Context, m Message) error {
	text, html, err := m.Render()
	if err != nil {
		return fmt.Errorf("rendering the %s email: %w", m.Kind(), err)
	}
	env := m.envelope()
	return s.send(ctx, string(m.Kind())+" email", env.To, m.Subject(), env.MessageID, text, html)
}

// Sends reports whether the shop sends emails of kind k (MAIL_DISABLE).
func (s *Sender) Sends(k Kind) bool { return s.settings.Sends(k) }

// ExpiryNoticeDays is MAIL_EXPIRY_NOTICE_DAYS: 0 sends no expiry notice.
func (s *Sender) ExpiryNoticeDays() int {
	if !s.Sends(KindExpiring) {
		return 0
	}
	return s.settings.ExpiryNoticeDays
}

// NewLifecycleMessageID returns a fresh Message-ID for an email of kind k.
func (s *Sender) NewLifecycleMessageID(k Kind) string {
	return s.newMessageID(strings.ReplaceAll(string(k), "_", "-"))
}

// NewLifecycle is the part every lifecycle email of o shares, with this
// sender's shop and order page link (see NewLifecycle).
func (s *Sender) NewLifecycle(o *order.Order, key *order.Key, linkToken, messageID string) Lifecycle {
	l := NewLifecycle(o, key, s.settings.PublicBaseURL, linkToken, messageID)
	l.Shop = s.settings.Shop
	return l
}

// send sends one message (what names it in errors) to the address to.
func (s *Sender) send(ctx context.Context, what, to, subject, messageID, text, html string) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.settings.From); err != nil {
		return fmt.Errorf("MAIL_FROM: %w", err)
	}
	if err := msg.To(to); err != nil {
		return ErrBadRecipient
	}
	msg.Subject(subject)
	msg.SetDate()
	if messageID != "" {
		msg.SetMessageIDWithValue(messageID)
	}
	msg.SetBodyString(gomail.TypeTextPlain, text)
	msg.AddAlternativeString(gomail.TypeTextHTML, html)

	client, err := gomail.NewClient(s.settings.SMTP.Host, s.clientOptions()...)
	if err != nil {
		return s.scrub(fmt.Errorf("configuring SMTP client for %s: %w", s.settings.SMTP, err))
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return s.scrub(fmt.Errorf("sending the %s through %s (check SMTP_URL and the server): %w", what, s.settings.SMTP, err))
	}
	return nil
}

func (s *Sender) clientOptions() []gomail.Option {
	smtp := s.settings.SMTP
	opts := []gomail.Option{gomail.WithPort(smtp.Port), gomail.WithTimeout(sendTimeout)}
	if smtp.ImplicitTLS {
		opts = append(opts, gomail.WithSSL())
	} else {
		opts = append(opts, gomail.WithTLSPolicy(smtp.tlsPolicy()))
	}
	if smtp.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(smtp.Username), gomail.WithPassword(smtp.Password))
	}
	return opts
}

// scrub removes the password from an error's text, should a server or a
// library ever echo it back.
func (s *Sender) scrub(err error) error {
	p := s.settings.SMTP.Password
	if p == "" || !strings.Contains(err.Error(), p) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p, "***"))
}

// NewMessageID returns a fresh Message-ID (without brackets) in the
// sender's domain: random, so it says nothing about the order.
func (s *Sender) NewMessageID() string { return s.newMessageID("keys") }

// newMessageID returns a random Message-ID whose local part starts with kind.
func (s *Sender) newMessageID(kind string) string {
	domain := "localhost"
	if a, err := netmail.ParseAddress(s.settings.From); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			domain = d
		}
	}
	return kind + "." + rand.Text() + "@" + domain
}

// NewKeyLookupEmail builds a find-my-keys email with this sender's link.
func (s *Sender) NewKeyLookupEmail(to, token string, expiresAt time.Time) KeyLookupEmail {
	e := NewKeyLookupEmail(to, s.settings.PublicBaseURL, token, s.newMessageID("lookup"), expiresAt)
	e.Shop = s.settings.Shop
	return e
}

// NewKeysEmail builds the email of an order's keys with this sender's
// order page link.
func (s *Sender) NewKeysEmail(o *order.Order, linkToken, messageID string) KeysEmail {
	e := NewKeysEmail(o, s.settings.PublicBaseURL, linkToken, messageID)
	e.Shop = s.settings.Shop
	return e
}

// tlsPolicy of smtp://: the emails carry keys and find-my-keys links, so
// a server elsewhere must take STARTTLS (a connection whose STARTTLS was
// stripped fails instead of sending in clear); a relay on this machine
// (a local MTA, a test server) is used as it is.
func (s SMTPServer) tlsPolicy() gomail.TLSPolicy {
	if IsLoopback(s.Host) {
		return gomail.TLSOpportunistic
	}
	return gomail.TLSMandatory
}
