package app_test

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/order"
	"fulfiller/internal/shop"
	"fulfiller/internal/stripeapi/stripefake"
)

// The shop of the lifecycle email tests, and the product its monthly
// price is sold as.
const (
	lifecycleShop    = "Acme Keys"
	lifecycleProduct = "Pro Monthly"
	lifecycleSupport = "help@acme.example.com"
)

// setupLifecycleMail starts a named shop with mail to a test SMTP server;
// change adjusts the mail settings (MAIL_DISABLE, the expiry notice).
func setupLifecycleMail(t *testing.T, change func(*mail.Settings), opts ...func(*options)) *mailBundle {
	t.Helper()
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	opts = append(opts, withConfig(func(c *config.Config) {
		c.Mail = mail.Settings{SMTP: server, From: "Acme <keys@shop.example>", PublicBaseURL: publicBase}
		if change != nil {
			change(&c.Mail)
		}
		c.Shop = shop.Identity{Name: lifecycleShop, URL: "https://acme.example.com", Support: shop.Contact{Email: lifecycleSupport}}
	}))
	b := setup(t, opts...)
	b.Catalog.Put(priceMonth, catalog.Product{ProjectID: project, KeyDays: 30, Name: lifecycleProduct})
	return &mailBundle{bundle: b, smtp: srv}
}

// emailsWithSubject waits until n emails whose subject starts with
// subject were sent, and returns them.
func (b *mailBundle) emailsWithSubject(t *testing.T, subject string, n int) []parsedEmail {
	t.Helper()
	var found []parsedEmail
	b.WaitJobsUntil(t, fmt.Sprintf("%d emails %q", n, subject), func() bool {
		found = b.sentWithSubject(t, subject)
		return len(found) >= n
	})
	return found
}

// sentWithSubject is every email sent so far whose subject starts with
// subject.
func (b *mailBundle) sentWithSubject(t *testing.T, subject string) []parsedEmail {
	t.Helper()
	var found []parsedEmail
	for _, m := range b.smtp.Messages() {
		if e := parseEmail(t, m.Data); strings.HasPrefix(decodedSubject(t, e), subject) {
			found = append(found, e)
		}
	}
	return found
}

// decodedSubject is e's subject, its encoded words (a "·", a shop's name
// in any script) decoded.
func decodedSubject(t *testing.T, e parsedEmail) string {
	t.Helper()
	subject, err := new(mime.WordDecoder).DecodeHeader(e.header.Get("Subject"))
	require.NoError(t, err)
	return subject
}

// requireNamesTheOrder checks that both parts of e name the shop, the
// product, the order's reference, and say what to do.
func requireNamesTheOrder(t *testing.T, e parsedEmail, sessionID string, whatToDo ...string) {
	t.Helper()
	require.True(t, strings.HasSuffix(decodedSubject(t, e), " · "+lifecycleShop), decodedSubject(t, e))
	for name, part := range map[string]string{"text": e.text, "html": e.html} {
		for _, want := range append([]string{lifecycleShop, lifecycleProduct, logging.OrderRef(sessionID), lifecycleSupport,
			publicBase + "/orders/"}, whatToDo...) {
			require.Contains(t, part, want, "the %s part", name)
		}
		require.NotContains(t, part, sessionID, "the %s part: never the Checkout Session ID", name)
	}
}

// renderEmail opens the HTML part of an email in Chromium, as a mail
// client shows it, and keeps its screenshots (with the checks they run).
func renderEmail(t *testing.T, b *mailBundle, state string, e parsedEmail) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, e.html)
	}))
	t.Cleanup(srv.Close)
	p := newPage(t, b.bundle)
	p.baseURL = srv.URL
	p.open(t, "/")
	require.NotEmpty(t, p.text(t, "h1"), "the email says what happened in its heading")
	p.screenshots(t, state)
}

// lifecycleEmailJob is the send job of the only email of kind of the
// order.
func (b *bundle) lifecycleEmailJob(t *testing.T, sessionID string, kind mail.Kind) int64 {
	t.Helper()
	var id int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT j.id FROM river_job j
		JOIN lifecycle_emails e ON e.id = (j.args->>'email_id')::bigint
		JOIN orders o ON o.id = e.order_id
		WHERE j.kind = 'send_lifecycle_email' AND o.checkout_session_id = $1 AND e.kind = $2`, sessionID, string(kind)).Scan(&id))
	return id
}

// runAgain runs a finished job once more (an operator's retry, a rescued
// job) and waits until it completes.
func (b *bundle) runAgain(t *testing.T, jobID int64) {
	t.Helper()
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err := b.Main.River.JobRetry(context.Background(), jobID)
	require.NoError(t, err)
	again := waitJobEnded(t, watch, jobID, 2)
	require.Equal(t, river.EventKindJobCompleted, again.Kind)
}

// lifecycleEmails counts the recorded emails of kind.
func (b *bundle) lifecycleEmails(t *testing.T, kind mail.Kind) int {
	t.Helper()
	return b.Count(t, `SELECT count(*) FROM lifecycle_emails WHERE kind = $1`, string(kind))
}

func TestReissuedKeyIsEmailedOnceWithTheNewKey(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, nil)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.emailsWithSubject(t, mail.Subject, 1)
	old := o.Keys[0].UserKey
	require.Equal(t, "completed", string(b.keyAction(t, "reissue", keyBody(old))))
	b.waitIdle(t)
	var fresh string
	for _, k := range b.WaitOrder(t, s.ID, "fulfilled").Keys {
		if k.UserKey != old && k.Status == "active" {
			fresh = k.UserKey
		}
	}
	require.NotEmpty(t, fresh)

	e := b.emailsWithSubject(t, "Your new license key", 1)[0]
	requireNamesTheOrder(t, e, s.ID, "in place of the old one", logging.MaskKey(old))
	for _, part := range []string{e.text, e.html} {
		require.Contains(t, part, fresh, "the new key, as the keys email shows it")
		require.NotContains(t, part, old, "the old key only by its last characters")
	}
	require.Contains(t, e.text, `script_key = "`+fresh+`";`)
	require.Contains(t, e.html, `script_key = &#34;`+fresh+`&#34;;`)
	renderEmail(t, b, "email-reissued", e)

	b.runAgain(t, b.lifecycleEmailJob(t, s.ID, mail.KindReissued))
	require.Len(t, b.sentWithSubject(t, "Your new license key"), 1, "one email per reissue")
}

func TestPaymentFailedEmailsOncePerInvoiceWhatToDo(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, nil, pastDuePolicy(true))
	sub, _ := b.lapsedSubscription(t)
	sub.Status = "past_due"
	b.Stripe.PutSubscription(sub)
	s := b.orderOf(t, sub.ID)
	invoice := map[string]any{"id": fulfillertest.NewID("in_"), "object": "invoice", "subscription": sub.ID,
		"billing_reason": "subscription_cycle", "status": "open", "attempt_count": 1}
	failed := fulfillertest.Event(t, "invoice.payment_failed", mustJSON(t, invoice))
	b.Deliver(t, failed)
	b.Deliver(t, failed) // the same delivery again
	invoice["attempt_count"] = 2
	b.Deliver(t, fulfillertest.Event(t, "invoice.payment_failed", mustJSON(t, invoice))) // Stripe's retry failed too
	b.waitIdle(t)

	e := b.emailsWithSubject(t, "Payment failed: your subscription is suspended", 1)[0]
	requireNamesTheOrder(t, e, s, "update your payment method", "Manage subscription", publicBase+"/orders/", "/manage-subscription")
	require.Contains(t, e.text, "Your keys are suspended until it is paid")
	renderEmail(t, b, "email-payment-failed", e)
	require.Len(t, b.sentWithSubject(t, "Payment failed"), 1, "one email per unpaid invoice")
	require.Equal(t, 1, b.lifecycleEmails(t, mail.KindPaymentFailed))
	_, got := b.GetOrder(t, s)
	require.True(t, got.Keys[0].Suspended, "the event also read the subscription again: PAST_DUE_ACTION applied")
}

func TestCancelledSubscriptionIsEmailedOnceWithItsEnd(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, nil)
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	until := mail.FormatDate(time.Unix(*o.Keys[0].AuthExpire, 0))

	// Cancelled in the customer portal: it runs to the end of the period.
	sub.CancelAtPeriodEnd = true
	b.changeSubscription(t, sub)
	b.changeSubscription(t, sub) // the update delivered again
	e := b.emailsWithSubject(t, "Your subscription is cancelled", 1)[0]
	requireNamesTheOrder(t, e, s.ID, "will not renew", until, "resume it through", "/manage-subscription")
	renderEmail(t, b, "email-cancelled", e)

	// Stripe ends it at the period's end: the same cancellation, no
	// second email.
	sub.Status, sub.CanceledAt, sub.EndedAt = "canceled", time.Now().Unix(), time.Now().Unix()
	b.Stripe.PutSubscription(sub)
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.deleted", mustJSON(t, map[string]any{
		"id": sub.ID, "object": "subscription", "status": "canceled", "current_period_end": sub.CurrentPeriodEnd})))
	b.waitIdle(t)
	require.Len(t, b.sentWithSubject(t, "Your subscription is cancelled"), 1)
	b.runAgain(t, b.lifecycleEmailJob(t, s.ID, mail.KindCancelled))
	require.Len(t, b.sentWithSubject(t, "Your subscription is cancelled"), 1, "the job run twice sends one email")
}

func TestRevokedKeysAreEmailedOnceWithTheReasonABuyerMaySee(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, nil)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.emailsWithSubject(t, mail.Subject, 1)
	ch := b.charge(t, s.PaymentIntent, "")
	refunded := b.refund(t, ch, s.PaymentIntent, "", 1000)
	b.Deliver(t, refunded)
	b.Deliver(t, refunded)
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "revoked", "blacklisted")

	e := b.emailsWithSubject(t, "Your license keys were revoked", 1)[0]
	requireNamesTheOrder(t, e, s.ID, "Reason: Payment refunded.", "think this is a mistake, contact "+lifecycleShop)
	for _, part := range []string{e.text, e.html} {
		for _, internal := range []string{ch, s.PaymentIntent, "REFUND_ACTION", "revocation"} {
			require.NotContains(t, part, internal)
		}
	}
	renderEmail(t, b, "email-revoked", e)
	b.runAgain(t, b.lifecycleEmailJob(t, s.ID, mail.KindRevoked))
	require.Len(t, b.sentWithSubject(t, "Your license keys were revoked"), 1)
}

func TestTrialEndingIsEmailedOncePerTrial(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, nil)
	now := time.Now().Unix()
	trialEnd := now + 3*day
	sub := stripefake.Subscription{ID: fulfillertest.NewID("sub_"), Status: "trialing", CurrentPeriodStart: now, CurrentPeriodEnd: trialEnd,
		TrialStart: now, TrialEnd: trialEnd, Items: []stripefake.SubscriptionItem{{PriceID: priceMonth, Quantity: 1}}}
	s, _ := b.subscribe(t, sub, "no_payment_required", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	object := mustJSON(t, map[string]any{"id": sub.ID, "object": "subscription", "status": "trialing", "trial_end": trialEnd})
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.trial_will_end", object))
	b.Deliver(t, fulfillertest.Event(t, "customer.subscription.trial_will_end", object)) // a second event for the same trial
	b.waitIdle(t)

	e := b.emailsWithSubject(t, "Your trial ends soon", 1)[0]
	requireNamesTheOrder(t, e, s.ID, mail.FormatDate(time.Unix(trialEnd, 0)), "payment method is charged", "/manage-subscription")
	renderEmail(t, b, "email-trial-ending", e)
	require.Len(t, b.sentWithSubject(t, "Your trial ends soon"), 1)
}

// The expiry notice: a periodic job finds the keys that will not renew
// and run out within MAIL_EXPIRY_NOTICE_DAYS. Each key is announced once
// per expiry, again once a renewal moved it, and never while it renews.
func TestExpiryNoticeIsSentOncePerKeyAndExpiry(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, func(m *mail.Settings) { m.ExpiryNoticeDays = 90 })
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	key := o.Keys[0].UserKey
	notices := func() []parsedEmail { return b.sentWithSubject(t, "Your access ends in") }

	b.queueExpiryNotices(t)
	require.Zero(t, b.lifecycleEmails(t, mail.KindExpiring), "a key that renews is not announced")

	sub.CancelAtPeriodEnd = true
	b.changeSubscription(t, sub)
	b.queueExpiryNotices(t)
	b.queueExpiryNotices(t) // the job run twice
	first := b.emailsWithSubject(t, "Your access ends in", 1)[0]
	ends := mail.FormatDate(time.Unix(b.user(t, key).AuthExpire, 0))
	requireNamesTheOrder(t, first, s.ID, "stops working on "+ends, "keep your access, buy again at", "https://acme.example.com", logging.MaskKey(key))
	require.Contains(t, decodedSubject(t, first), "Your access ends in 31 days")
	renderEmail(t, b, "email-expiring", first)
	require.Len(t, notices(), 1, "one notice per key and expiry")

	// Resumed and renewed: the key renews again, and is not announced.
	sub.CancelAtPeriodEnd = false
	b.changeSubscription(t, sub)
	renewed := sub.CurrentPeriodEnd + 30*day
	_, paid := b.invoice(t, sub.ID, "subscription_cycle", renewed)
	b.Deliver(t, paid)
	b.waitIdle(t)
	require.Equal(t, renewed+day, b.user(t, key).AuthExpire)
	b.queueExpiryNotices(t)
	require.Len(t, notices(), 1)

	// Cancelled again: the moved expiry is announced once more.
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd, sub.CancelAtPeriodEnd = sub.CurrentPeriodEnd, renewed, true
	b.changeSubscription(t, sub)
	b.queueExpiryNotices(t)
	second := b.emailsWithSubject(t, "Your access ends in", 2)
	require.Len(t, second, 2)
	require.Contains(t, second[1].text, "stops working on "+mail.FormatDate(time.Unix(renewed+day, 0)))
	require.Equal(t, 2, b.lifecycleEmails(t, mail.KindExpiring))
}

// queueExpiryNotices runs the periodic expiry notice job now and waits
// for what it queued.
func (b *bundle) queueExpiryNotices(t *testing.T) {
	t.Helper()
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err := b.Main.River.Insert(context.Background(), jobs.QueueExpiryNoticesArgs{}, nil)
	require.NoError(t, err)
	watch.WaitCompleted(t, jobs.QueueExpiryNoticesArgs{}.Kind(), 1)
	b.waitIdle(t)
}

// A kind the shop turned off (MAIL_DISABLE) is neither recorded nor sent;
// the others are.
func TestADisabledEmailKindSendsNothing(t *testing.T) {
	t.Parallel()
	b := setupLifecycleMail(t, func(m *mail.Settings) { m.Disabled = m.Disabled.With(mail.KindKeys).With(mail.KindRevoked) })
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	old := b.WaitOrder(t, s.ID, "fulfilled").Keys[0].UserKey
	require.Equal(t, "completed", string(b.keyAction(t, "reissue", keyBody(old))))
	b.emailsWithSubject(t, "Your new license key", 1)
	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "revoked", "blacklisted")

	require.Len(t, b.smtp.Messages(), 1, "the reissued key's email only")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM order_emails`), "no keys email recorded")
	require.Zero(t, b.lifecycleEmails(t, mail.KindRevoked), "no revoked email recorded")
}

// With mail off (the default) nothing is recorded or queued.
func TestNoLifecycleEmailIsRecordedWithMailOff(t *testing.T) {
	t.Parallel()
	p := order.DefaultPolicy()
	b := setup(t, func(o *options) { o.policy = &p })
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
	b.waitIdle(t)
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM lifecycle_emails`))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'send_lifecycle_email'`))
}
