package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	smtpUser     = "shop"
	smtpPassword = "s3cret-smtp-password"
	publicBase   = "https://shop.example"
)

type mailBundle struct {
	*bundle
	smtp *mailtest.Server
}

// setupMail starts the service with keys by email pointed at a real SMTP
// server of the test's own.
func setupMail(t *testing.T, password string) *mailBundle {
	t.Helper()
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL("smtp://" + smtpUser + ":" + password + "@" + srv.Addr)
	require.NoError(t, err)
	b := setup(t, withConfig(func(c *config.Config) {
		c.Mail = mail.Settings{SMTP: server, From: "Shop <keys@shop.example>", PublicBaseURL: publicBase}
	}))
	return &mailBundle{bundle: b, smtp: srv}
}

// waitMessages waits until the SMTP server holds n messages: each is sent
// by a job before the job ends.
func (b *mailBundle) waitMessages(t *testing.T, n int) []mailtest.Message {
	t.Helper()
	b.WaitJobsUntil(t, fmt.Sprintf("%d emails", n), func() bool { return len(b.smtp.Messages()) >= n })
	return b.smtp.Messages()
}

// emailStatus is the status of one delivery of an order's keys email.
func (b *bundle) emailStatus(t *testing.T, sessionID string, delivery int) string {
	t.Helper()
	var status string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		`SELECT status FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1) AND delivery = $2`, sessionID, delivery).Scan(&status))
	return status
}

// waitEmailJob waits until the email job of a delivery is in one of states
// and returns its id and the text of its errors.
func (b *bundle) waitEmailJob(t *testing.T, sessionID string, delivery int, states ...string) (int64, string) {
	t.Helper()
	var id int64
	var errs string
	b.WaitJobsUntil(t, fmt.Sprintf("the email job of delivery %d in %v", delivery, states), func() bool {
		err := b.Pool.QueryRow(context.Background(), `SELECT id, COALESCE(errors::text, '') FROM river_job
			WHERE kind = 'send_order_email' AND (args->>'delivery')::int = $2
			  AND (args->>'order_id')::bigint = (SELECT id FROM orders WHERE checkout_session_id = $1)
			  AND state::text = ANY($3)`, sessionID, delivery, states).Scan(&id, &errs)
		return err == nil
	})
	return id, errs
}

type parsedEmail struct {
	header netmail.Header
	text   string
	html   string
}

// parseEmail reads a multipart/alternative message into its two parts
// (quoted-printable decoded).
func parseEmail(t *testing.T, data []byte) parsedEmail {
	t.Helper()
	msg, err := netmail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mediaType)
	out := parsedEmail{header: msg.Header}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := parts.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(p)
		require.NoError(t, err)
		partType, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		require.NoError(t, err)
		switch partType {
		case "text/plain":
			out.text = string(body)
		case "text/html":
			out.html = string(body)
		default:
			t.Fatalf("unexpected part %s", partType)
		}
	}
	require.NotEmpty(t, out.text, "a plain-text part")
	require.NotEmpty(t, out.html, "an HTML part")
	return out
}

// resendEmail asks for an order's keys email again, as support does.
func (b *bundle) resendEmail(t *testing.T, sessionID, token string) (int, map[string]any) {
	t.Helper()
	return b.admin(t, http.MethodPost, "/v1/admin/orders/"+sessionID+"/resend-email", "", token)
}

func TestFulfilledOrderEmailsItsKeys(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2}, stripefake.Item{PriceID: priceLife, Quantity: 1})
	require.Len(t, o.Keys, 3)

	msgs := b.waitMessages(t, 1)
	require.Len(t, msgs, 1)
	require.Equal(t, []string{defaultMail}, msgs[0].To)
	require.Equal(t, "keys@shop.example", msgs[0].From)
	e := parseEmail(t, msgs[0].Data)
	require.Equal(t, mail.Subject, e.header.Get("Subject"))
	to, err := netmail.ParseAddress(e.header.Get("To"))
	require.NoError(t, err)
	require.Equal(t, defaultMail, to.Address)

	keysEmailLink(t, msgs[0]) // a signed link to the order, never its session ID
	for _, part := range []string{e.text, e.html} {
		for _, k := range o.Keys {
			require.Contains(t, part, k.UserKey)
		}
		require.Contains(t, part, "starts at first use", "a key_days key whose timer has not started")
		require.Contains(t, part, "never", "a lifetime key")
	}
	for _, k := range o.Keys {
		require.Contains(t, e.text, `script_key = "`+k.UserKey+`";`)
		// In HTML the quotes are escaped entities: still the same line once rendered.
		require.Contains(t, e.html, `script_key = &#34;`+k.UserKey+`&#34;;`)
	}
	b.waitEmailJob(t, s.ID, 1, "completed")
	require.Equal(t, "sent", b.emailStatus(t, s.ID, 1))
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID))
}

func TestKeysEmailShowsAStartedExpiry(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	b.waitMessages(t, 1)

	// The buyer ran the script before a resend: the email shows the date.
	expire := time.Date(2031, time.March, 4, 5, 6, 0, 0, time.UTC).Unix()
	_, err := b.Pool.Exec(context.Background(), `UPDATE order_keys SET auth_expire = $2 WHERE checkout_session_id = $1`, s.ID, expire)
	require.NoError(t, err)
	status, _ := b.resendEmail(t, s.ID, adminToken)
	require.Equal(t, http.StatusAccepted, status)
	e := parseEmail(t, b.waitMessages(t, 2)[1].Data)
	require.Contains(t, e.text, "4 March 2031 05:06 UTC")
	require.Contains(t, e.text, o.Keys[0].UserKey)
	require.NotContains(t, e.text, "starts at first use")
}

func TestKeysEmailIsSentOncePerDeliveryEvenWhenItsJobRunsTwice(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.waitMessages(t, 1)
	jobID, _ := b.waitEmailJob(t, s.ID, 1, "completed")

	// The same job again (an operator's retry, a rescued job): the delivery
	// is recorded sent, so nothing leaves.
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err := b.Main.River.JobRetry(context.Background(), jobID)
	require.NoError(t, err)
	again := waitJobEnded(t, watch, jobID, 2)
	require.Equal(t, river.EventKindJobCompleted, again.Kind)
	require.Equal(t, 2, again.Job.Attempt, "the job ran a second time")
	require.Len(t, b.smtp.Messages(), 1, "one email per delivery")

	// A second key delivered for another order of the same buyer queues
	// that order's own email only.
	s2, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	b.waitMessages(t, 2)
	b.waitEmailJob(t, s2.ID, 1, "completed")
	require.Len(t, b.smtp.Messages(), 2)
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID))
}

func TestCutOffSendIsSentAgainWithTheSameMessageID(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	first := parseEmail(t, b.waitMessages(t, 1)[0].Data)
	jobID, _ := b.waitEmailJob(t, s.ID, 1, "completed")

	// A run cut off after 'sending' committed: its outcome is unknown, so
	// the documented at-least-once window applies, under the same Message-ID.
	_, err := b.Pool.Exec(context.Background(), `UPDATE order_emails SET status = 'sending' WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID)
	require.NoError(t, err)
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err = b.Main.River.JobRetry(context.Background(), jobID)
	require.NoError(t, err)
	second := parseEmail(t, b.waitMessages(t, 2)[1].Data)
	require.NotEmpty(t, first.header.Get("Message-Id"))
	require.Equal(t, first.header.Get("Message-Id"), second.header.Get("Message-Id"))
	require.Equal(t, river.EventKindJobCompleted, waitJobEnded(t, watch, jobID, 2).Kind)
	require.Equal(t, "sent", b.emailStatus(t, s.ID, 1))
}

func TestResendEmailQueuesANewDelivery(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.waitMessages(t, 1)

	status, _ := b.resendEmail(t, s.ID, "")
	require.Equal(t, http.StatusUnauthorized, status, "the shop token is required")
	status, body := b.resendEmail(t, s.ID, adminToken)
	require.Equal(t, http.StatusAccepted, status, body)
	require.EqualValues(t, 2, body["delivery"])
	msgs := b.waitMessages(t, 2)
	require.Contains(t, parseEmail(t, msgs[1].Data).text, o.Keys[0].UserKey)
	b.waitEmailJob(t, s.ID, 2, "completed")
	require.Equal(t, "sent", b.emailStatus(t, s.ID, 2))

	status, body = b.resendEmail(t, "cs_test_NeverSeenByThisService", adminToken)
	require.Equal(t, http.StatusNotFound, status, body)

	pending := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", pending.ID))
	b.WaitOrder(t, pending.ID, "pending")
	status, body = b.resendEmail(t, pending.ID, adminToken)
	require.Equal(t, http.StatusConflict, status, body)
	require.Equal(t, "not_fulfilled", body["code"])
	require.Zero(t, b.Count(t, `SELECT count(*) FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, pending.ID))
	require.Len(t, b.smtp.Messages(), 2)
}

func TestNoEmailWithoutMailSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Zero(t, b.Count(t, `SELECT count(*) FROM order_emails`))
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.SendOrderEmailArgs{}, nil)

	status, body := b.resendEmail(t, s.ID, adminToken)
	require.Equal(t, http.StatusNotImplemented, status)
	require.Equal(t, "mail_off", body["code"])
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.SendOrderEmailArgs{}, nil)
}

func TestFailingSMTPServerIsRetriedAndTheOrderStaysFulfilled(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	b.smtp.Refuse(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"})
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})

	jobID, errs := b.waitEmailJob(t, s.ID, 1, "retryable")
	require.Contains(t, errs, "try again later")
	require.Equal(t, "queued", b.emailStatus(t, s.ID, 1), "a refused send is known not to have left")
	_, o := b.GetOrder(t, s.ID)
	require.Equal(t, "fulfilled", o.Status, "a mail failure never fails the order")
	require.Len(t, o.Keys, 1)
	require.Empty(t, b.smtp.Messages())

	// The server recovers; the retry delivers the one email.
	b.smtp.Refuse(nil)
	_, err := b.Main.River.JobRetry(context.Background(), jobID)
	require.NoError(t, err)
	b.waitMessages(t, 1)
	b.waitEmailJob(t, s.ID, 1, "completed")
	require.Equal(t, "sent", b.emailStatus(t, s.ID, 1))
	require.Len(t, b.smtp.Messages(), 1)
}

func TestSMTPPasswordIsInNoError(t *testing.T) {
	t.Parallel()
	const wrong = "wrong-smtp-password-xyz"
	b := setupMail(t, wrong)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})

	_, errs := b.waitEmailJob(t, s.ID, 1, "retryable")
	require.NotEmpty(t, errs)
	require.Contains(t, errs, "127.0.0.1", "the error names the server")
	require.NotContains(t, errs, wrong)
	var lastError string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		`SELECT COALESCE(last_error, '') FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID).Scan(&lastError))
	require.NotEmpty(t, lastError)
	require.NotContains(t, lastError, wrong)
	require.False(t, strings.Contains(b.Main.Config.Mail.SMTP.String(), wrong))
	_, o := b.GetOrder(t, s.ID)
	require.Equal(t, "fulfilled", o.Status)
	require.Equal(t, luarmor.NeverExpires, *o.Keys[0].AuthExpire)
}

// A purchase that extends the buyer's key is emailed with the key as its
// ledger makes it: the extended expiry, not the unit's own key_days.
func TestKeysEmailOfAnExtensionShowsTheKeysNewExpiry(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	first := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	first.DiscordID = discordA
	b.Stripe.PutSession(first)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", first.ID))
	o1 := b.WaitOrder(t, first.ID, "fulfilled")
	key := o1.Keys[0].UserKey
	b.waitMessages(t, 1)
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	paidUntil := b.user(t, key).AuthExpire

	second := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	second.DiscordID, second.Customer = discordA, first.Customer
	b.Stripe.PutSession(second)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", second.ID))
	e := parseEmail(t, b.waitMessages(t, 2)[1].Data)
	require.Contains(t, e.text, key, "the buyer's own key, extended")
	require.Contains(t, e.text, time.Unix(paidUntil+30*day, 0).UTC().Format("2 January 2006 15:04 UTC"), "with both purchases' days")
	require.NotContains(t, e.text, "starts at first use")
}
