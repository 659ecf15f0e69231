// Package mailtest runs a real SMTP server (go-smtp) on 127.0.0.1 for tests,
// keeping every accepted message in memory.
package mailtest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is an SMTP server that requires CRAM-MD5 authentication with its
// Username and Password, and can be told to refuse messages.
type Server struct {
	Addr     string // host:port
	Username string
	Password string

	mu       sync.Mutex
	messages []Message
	refuse   error
}

// Start runs a server until the test ends.
func Start(t testing.TB, username, password string) *Server {
	t.Helper()
	s := &Server{Username: username, Password: password}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true // loopback only
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for the test SMTP server: %v", err)
	}
	s.Addr = l.Addr().String()
	go srv.Serve(l) //nolint:errcheck // returns only once Cleanup closes the server
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// URL is the server's SMTP_URL.
func (s *Server) URL() string { return "smtp://" + s.Username + ":" + s.Password + "@" + s.Addr }

// Refuse makes the server answer every message with err (an
// *smtp.SMTPError for a status code); nil accepts them again.
func (s *Server) Refuse(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = err
}

// Messages returns a copy of the accepted messages, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s      *Server
	authed bool
	msg    Message
}

// AuthMechanisms offers CRAM-MD5: a mechanism a client may use on a
// connection without TLS, since the password never crosses the wire.
func (ss *session) AuthMechanisms() []string { return []string{"CRAM-MD5"} }

func (ss *session) Auth(string) (sasl.Server, error) {
	return &cramMD5{s: ss.s, onSuccess: func() { ss.authed = true }}, nil
}

// cramMD5 is the server side of RFC 2195.
type cramMD5 struct {
	s         *Server
	challenge []byte
	onSuccess func()
}

func (c *cramMD5) Next(response []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		c.challenge = []byte("<" + rand.Text() + "@localhost>")
		return c.challenge, false, nil
	}
	user, digest, ok := strings.Cut(string(response), " ")
	mac := hmac.New(md5.New, []byte(c.s.Password))
	mac.Write(c.challenge)
	want := hex.EncodeToString(mac.Sum(nil))
	if !ok || user != c.s.Username || !hmac.Equal([]byte(digest), []byte(want)) {
		return nil, true, errors.New("invalid credentials")
	}
	c.onSuccess()
	return nil, true, nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.msg = Message{From: from}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.msg.To = append(ss.msg.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.refuse != nil {
		return ss.s.refuse
	}
	ss.msg.Data = data
	ss.s.messages = append(ss.s.messages, ss.msg)
	return nil
}

func (ss *session) Reset()        { ss.msg = Message{} }
func (ss *session) Logout() error { return nil }
