// Package mailcatcher is the mailbox of `fulfiller dev`: an SMTP server
// (go-smtp) on this machine that accepts every message, keeps the newest
// ones in memory and shows them on web pages. The service sends to it
// through its ordinary SMTP path, so the keys email and the find-my-keys
// email can be read locally exactly as they would be sent.
package mailcatcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Limits of what the mailbox accepts and keeps: the service's emails are a
// few kilobytes, and the mailbox lives in the dev process's memory.
const (
	maxMessageBytes = 1 << 20
	maxRecipients   = 50
	smtpTimeout     = 30 * time.Second
	// maxPartDepth bounds the nesting of multipart bodies walked.
	maxPartDepth = 5
)

// Message is one message the mailbox accepted.
type Message struct {
	// ID numbers the messages in arrival order, from 1; it stays the
	// message's number after older ones are dropped.
	ID       int
	Received time.Time
	// Envelope sender and recipients, as the SMTP client gave them.
	EnvelopeFrom string
	To           []string
	// From, Subject and Date are the message's headers, decoded.
	From, Subject, Date string
	// Text and HTML are the plain-text and HTML parts, transfer encoding
	// undone; either may be empty.
	Text, HTML string
	Raw        []byte
}

// Catcher is the mailbox: an SMTP server's backend that keeps the newest
// messages, and the pages that show them (ServeHTTP).
type Catcher struct {
	keep   int
	logger *slog.Logger

	mu       sync.Mutex
	lastID   int
	messages []Message // oldest first, at most keep
}

// New returns a mailbox that keeps the newest keep messages (at least 1);
// logger receives the SMTP server's connection errors (nil discards them).
func New(keep int, logger *slog.Logger) *Catcher {
	if keep < 1 {
		keep = 1
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Catcher{keep: keep, logger: logger}
}

// Keep is how many messages the mailbox holds before dropping the oldest.
func (c *Catcher) Keep() int { return c.keep }

// ServeSMTP accepts mail on l, without authentication or TLS (l is on this
// machine), until ctx ends.
func (c *Catcher) ServeSMTP(ctx context.Context, l net.Listener) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{c: c}, nil }))
	srv.Domain = "localhost"
	srv.MaxMessageBytes = maxMessageBytes
	srv.MaxRecipients = maxRecipients
	srv.ReadTimeout, srv.WriteTimeout = smtpTimeout, smtpTimeout
	srv.ErrorLog = errorLog{c.logger}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			_ = srv.Close()
		case <-stopped:
		}
	}()
	if err := srv.Serve(l); err != nil && ctx.Err() == nil {
		return fmt.Errorf("the mailbox's SMTP server on %s stopped: %w", l.Addr(), err)
	}
	return nil
}

// Messages returns the messages kept, newest first.
func (c *Catcher) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Message, len(c.messages))
	for i, m := range c.messages {
		out[len(out)-1-i] = m
	}
	return out
}

// Message returns the message numbered id, if it is still kept.
func (c *Catcher) Message(id int) (Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.messages {
		if m.ID == id {
			return m, true
		}
	}
	return Message{}, false
}

// add keeps m, dropping the oldest message when the mailbox is full.
func (c *Catcher) add(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastID++
	m.ID = c.lastID
	if len(c.messages) == c.keep {
		copy(c.messages, c.messages[1:])
		c.messages = c.messages[:len(c.messages)-1]
	}
	c.messages = append(c.messages, m)
}

// session is one SMTP conversation: every sender and recipient is accepted.
type session struct {
	c    *Catcher
	from string
	to   []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.to = from, nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := parse(raw)
	m.Received, m.EnvelopeFrom, m.To, m.Raw = time.Now(), s.from, s.to, raw
	s.c.add(m)
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// parse reads a message's headers and its text and HTML parts. A message
// that is not MIME shows as its raw text.
func parse(raw []byte) Message {
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{Text: string(raw)}
	}
	m := Message{
		From:    decodeHeader(msg.Header.Get("From")),
		Subject: decodeHeader(msg.Header.Get("Subject")),
		Date:    msg.Header.Get("Date"),
	}
	m.walk(textproto.MIMEHeader(msg.Header), msg.Body, 0)
	return m
}

// decodeHeader undoes RFC 2047 encoded words (a subject in UTF-8), or
// keeps the header as sent when it cannot.
func decodeHeader(v string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// walk keeps the first text/plain and text/html parts of a body, looking
// into multipart bodies.
func (m *Message) walk(h textproto.MIMEHeader, body io.Reader, depth int) {
	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mediaType = "text/plain" // RFC 2045's default
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		if depth >= maxPartDepth || params["boundary"] == "" {
			return
		}
		parts := multipart.NewReader(body, params["boundary"])
		for {
			p, err := parts.NextPart()
			if err != nil {
				return
			}
			m.walk(p.Header, p, depth+1)
		}
	}
	if mediaType != "text/plain" && mediaType != "text/html" {
		return
	}
	content, err := io.ReadAll(transferDecoded(h.Get("Content-Transfer-Encoding"), body))
	if err != nil {
		content = append(content, fmt.Sprintf("\n[the rest could not be decoded: %v]", err)...)
	}
	switch {
	case mediaType == "text/plain" && m.Text == "":
		m.Text = string(content)
	case mediaType == "text/html" && m.HTML == "":
		m.HTML = string(content)
	}
}

// transferDecoded undoes a Content-Transfer-Encoding. multipart.Reader
// already undoes quoted-printable in parts (and drops the header), so this
// matters for base64 parts and for single-part messages.
func transferDecoded(encoding string, body io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, body) // skips the line breaks
	case "quoted-printable":
		return quotedprintable.NewReader(body)
	}
	return body
}

// errorLog hands the SMTP server's errors (a client that went away, a
// timeout) to the dev process's log.
type errorLog struct{ logger *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.logger.Warn("mailbox SMTP server: " + fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) {
	e.logger.Warn("mailbox SMTP server: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
