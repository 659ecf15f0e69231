package mailcatcher_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailcatcher"
)

// mailbox is a Catcher taking mail on a free loopback port, with its pages
// on a real HTTP server.
type mailbox struct {
	catcher  *mailcatcher.Catcher
	smtpAddr string
	url      string
}

func startMailbox(t *testing.T, keep int) *mailbox {
	t.Helper()
	c := mailcatcher.New(keep, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ServeSMTP(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done, "the SMTP server stops cleanly when its context ends")
	})
	pages := httptest.NewServer(c)
	t.Cleanup(pages.Close)
	return &mailbox{catcher: c, smtpAddr: l.Addr().String(), url: pages.URL}
}

// sender is the service's own mail sender, pointed at the mailbox.
func (m *mailbox) sender(t *testing.T) *mail.Sender {
	t.Helper()
	host, port, err := net.SplitHostPort(m.smtpAddr)
	require.NoError(t, err)
	server, err := mail.ParseSMTPURL("smtp://" + net.JoinHostPort(host, port))
	require.NoError(t, err)
	return mail.NewSender(mail.Settings{SMTP: server, From: "Shop <keys@shop.example>", PublicBaseURL: "http://127.0.0.1:8080"})
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(body)
}

func TestMailboxShowsWhatTheServicesSenderSent(t *testing.T) {
	t.Parallel()
	m := startMailbox(t, 10)
	s := m.sender(t)
	e := s.NewKeyLookupEmail("buyer@example.com", "tok_123", time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC))
	require.NoError(t, s.SendKeyLookup(t.Context(), e))

	got := m.catcher.Messages()
	require.Len(t, got, 1)
	msg := got[0]
	require.Equal(t, []string{"buyer@example.com"}, msg.To)
	require.Equal(t, "keys@shop.example", msg.EnvelopeFrom)
	require.Equal(t, mail.KeyLookupSubject, msg.Subject)
	require.Contains(t, msg.Text, "http://127.0.0.1:8080/my-keys#token=tok_123", "quoted-printable undone")
	require.Contains(t, msg.HTML, "http://127.0.0.1:8080/my-keys#token=tok_123")

	resp, list := get(t, m.url+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, list, "buyer@example.com")
	require.Contains(t, list, fmt.Sprintf(`<a href="/messages/%d">%s</a>`, msg.ID, mail.KeyLookupSubject))

	resp, page := get(t, fmt.Sprintf("%s/messages/%d", m.url, msg.ID))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `<a href="http://127.0.0.1:8080/my-keys#token=tok_123">`, "the text part's link is listed outside the sandbox")
	require.Contains(t, page, fmt.Sprintf(`<iframe sandbox src="/messages/%d/html"`, msg.ID))
	require.Contains(t, page, "You asked for your license keys, bought with this email address")

	resp, text := get(t, fmt.Sprintf("%s/messages/%d/text", m.url, msg.ID))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, msg.Text, text)
	resp, raw := get(t, fmt.Sprintf("%s/messages/%d/raw", m.url, msg.ID))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, raw, "Subject: "+mail.KeyLookupSubject)
}

func TestMailboxKeepsTheNewestMessages(t *testing.T) {
	t.Parallel()
	m := startMailbox(t, 3)
	s := m.sender(t)
	for i := 1; i <= 5; i++ {
		e := s.NewKeyLookupEmail(fmt.Sprintf("buyer%d@example.com", i), "tok", time.Now().Add(time.Hour))
		require.NoError(t, s.SendKeyLookup(t.Context(), e))
	}
	var to []string
	for _, msg := range m.catcher.Messages() {
		to = append(to, msg.To[0])
	}
	require.Equal(t, []string{"buyer5@example.com", "buyer4@example.com", "buyer3@example.com"}, to, "newest first, the oldest dropped")

	resp, page := get(t, m.url+"/messages/1")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, page, "it keeps the newest 3 messages")
	resp, _ = get(t, m.url+"/messages/5")
	require.Equal(t, http.StatusOK, resp.StatusCode, "numbers stay the messages' own after older ones are dropped")
}

// hostileEmail is a message whose HTML part tries to run a script, load
// from elsewhere and reach the page around it.
const hostileEmail = "From: someone@example.com\r\n" +
	"To: buyer@example.com\r\n" +
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_<b>bold</b>?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"cGxhaW4gdGV4dCA8c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+\r\n" + // plain text <script>alert(1)</script>
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	`<html><body><p id="p">hello</p>` +
	`<script>document.documentElement.setAttribute('data-ran', 'script'); try { parent.document.title = 'taken' } catch (e) {}</script>` +
	`<img src="x" onerror="document.documentElement.setAttribute('data-ran', 'onerror')">` +
	"</body></html>\r\n" +
	"--b1--\r\n"

func TestMailboxNeverRunsAScriptFromAnEmail(t *testing.T) {
	t.Parallel()
	m := startMailbox(t, 10)
	require.NoError(t, smtp.SendMail(m.smtpAddr, nil, "someone@example.com", []string{"buyer@example.com"}, []byte(hostileEmail)))
	msg := m.catcher.Messages()[0]
	require.Equal(t, "Grüße <b>bold</b>", msg.Subject, "encoded words undone")
	require.Equal(t, "plain text <script>alert(1)</script>", msg.Text, "base64 undone")

	// The mailbox's pages escape what the email says and carry none of
	// its markup.
	for _, path := range []string{"/", fmt.Sprintf("/messages/%d", msg.ID)} {
		resp, page := get(t, m.url+path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, page, "Grüße &lt;b&gt;bold&lt;/b&gt;", path)
		require.NotContains(t, page, "<script", path)
		require.NotContains(t, page, "onerror", path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", path)
	}
	// The HTML part is served as sent, under a policy that sandboxes it.
	resp, part := get(t, fmt.Sprintf("%s/messages/%d/html", m.url, msg.ID))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, part, "<script>")
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox;"))

	// In a browser: the script and the handler run on a page that serves
	// the HTML part without the mailbox's policy, and not on the mailbox.
	b := newBrowser(t)
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, part)
	}))
	t.Cleanup(bare.Close)
	require.NotEmpty(t, b.attribute(t, bare.URL, "data-ran"), "the email's script runs where nothing stops it: the check can see it run")

	require.Empty(t, b.attribute(t, fmt.Sprintf("%s/messages/%d/html", m.url, msg.ID), "data-ran"),
		"opened on its own, the HTML part runs no script")
	require.Equal(t, "Grüße <b>bold</b> · fulfiller dev mailbox", b.title(t, fmt.Sprintf("%s/messages/%d", m.url, msg.ID)),
		"framed in the message page, it cannot reach the page around it")
	b.Check(t, "message")
	b.Open(t, m.url+"/")
	b.Check(t, "list")
}

func TestMailboxAnswersOnlyRequestsToThisMachine(t *testing.T) {
	t.Parallel()
	m := startMailbox(t, 10)
	for host, want := range map[string]int{
		"localhost:8093":         http.StatusOK,
		"127.0.0.1:8093":         http.StatusOK,
		"[::1]:8093":             http.StatusOK,
		"attacker.example:8093":  http.StatusMisdirectedRequest,
		"localhost.example:8093": http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, m.url+"/", nil)
		require.NoError(t, err)
		// A name rebound to 127.0.0.1 reaches the port with its own Host.
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, want, resp.StatusCode, host)
	}
}
