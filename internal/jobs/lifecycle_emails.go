package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
)

// Lifecycle emails (internal/mail's Kind): each event that owes the buyer
// an email records it with queueLifecycleEmail in the transaction that
// records the event, as a lifecycle_emails row unique per (order, kind,
// event), and queues one send_lifecycle_email job for it. A repeated
// webhook, a job run twice or two events for one change find the row and
// queue nothing. Nothing is recorded while mail is off or the shop turned
// the kind off (MAIL_DISABLE).

// lifecycleEmail is the email an event owes an order's buyer.
type lifecycleEmail struct {
	kind      mail.Kind
	sessionID string
	// keyID is the key the email is about; 0 for the order.
	keyID int64
	// event names what happened, once per order and kind: a repeat of
	// the same event records nothing.
	event string
	// endsAt is the moment the email speaks of (unix seconds); 0 none.
	endsAt int64
	// reason is what the buyer may be told of why (a ban reason).
	reason string
}

// queueLifecycleEmail records e and queues its send job, in tx, once.
func queueLifecycleEmail(ctx context.Context, tx pgx.Tx, deps Deps, e lifecycleEmail) error {
	if deps.Mail == nil || !deps.Mail.Sends(e.kind) {
		return nil
	}
	row := postgres.LifecycleEmail{OrderKeyID: e.keyID, Kind: string(e.kind), Event: e.event, Reason: e.reason,
		MessageID: deps.Mail.NewLifecycleMessageID(e.kind)}
	if e.endsAt > 0 {
		at := time.Unix(e.endsAt, 0)
		row.EndsAt = &at
	}
	id, err := postgres.RecordLifecycleEmail(ctx, tx, e.sessionID, row)
	if err != nil || id == 0 {
		return err
	}
	ref := logging.OrderRef(e.sessionID)
	deps.Logger.InfoContext(ctx, "email queued", "kind", e.kind, "order_ref", ref, "lifecycle_email_id", id)
	return insertMany(ctx, tx, SendLifecycleEmailArgs{EmailID: id, EmailKind: string(e.kind), OrderRef: ref})
}

// queueReissuedEmail emails the buyer newKey, which reissue r delivered.
func queueReissuedEmail(ctx context.Context, tx pgx.Tx, deps Deps, r *postgres.Reissue, newKey *order.Key) error {
	return queueLifecycleEmail(ctx, tx, deps, lifecycleEmail{kind: mail.KindReissued, sessionID: newKey.CheckoutSessionID,
		keyID: newKey.ID, event: fmt.Sprintf("reissue:%d", r.ID)})
}

// queueRevokedEmail tells the buyer of o, as it was before r revoked it,
// that its keys were revoked, with r's ban reason. An order whose keys were
// not all delivered had none to revoke that the buyer was told of, and an
// inquiry suspends keys rather than revoking them: neither is emailed.
func queueRevokedEmail(ctx context.Context, tx pgx.Tx, deps Deps, o *order.Order, r *order.Revocation) error {
	if r.Inquiry || o.Status != order.StatusFulfilled {
		return nil
	}
	return queueLifecycleEmail(ctx, tx, deps, lifecycleEmail{kind: mail.KindRevoked, sessionID: o.CheckoutSessionID,
		event: fmt.Sprintf("revocation:%d", r.ID), reason: r.Reason})
}

// emailCancellation tells o's buyer, once per period, that sub (read back
// from Stripe) was cancelled or will not renew, with when its keys stop. A
// subscription Stripe ended after its order was revoked is not emailed:
// the revocation said what there is to say.
func emailCancellation(ctx context.Context, tx pgx.Tx, deps Deps, o *order.Order, sub *stripe.Subscription) error {
	ended := sub.Status == stripe.SubscriptionStatusCanceled
	if (!ended && !cancelling(sub)) || o.Status != order.StatusFulfilled {
		return nil
	}
	end, err := postgres.SubscriptionKeysEnd(ctx, tx, o.CheckoutSessionID)
	if err != nil {
		return err
	}
	return queueLifecycleEmail(ctx, tx, deps, lifecycleEmail{kind: mail.KindCancelled, sessionID: o.CheckoutSessionID,
		event: fmt.Sprintf("period:%d", sub.CurrentPeriodEnd), endsAt: end})
}

// invoicePaymentFailed tells a subscriber their renewal was not paid, once
// per invoice (Stripe sends the event again on each failed retry), and
// reads the subscription again so PAST_DUE_ACTION applies without waiting
// for its update event. An invoice of no subscription that bought keys
// here is not the service's.
func invoicePaymentFailed(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	inv, err := decodeObject[stripe.Invoice](event, "an invoice")
	if err != nil {
		return err
	}
	if inv.Subscription == nil || inv.Subscription.ID == "" {
		w.Logger.InfoContext(ctx, "payment of an invoice of no subscription failed; nothing to do", "invoice_id", inv.ID)
		return nil
	}
	o, err := postgres.SubscriptionOrder(ctx, tx, inv.Subscription.ID)
	if err != nil || o == nil {
		return err
	}
	w.Logger.InfoContext(ctx, "a subscription's payment failed", "invoice_id", inv.ID, "subscription_id", inv.Subscription.ID,
		"order_ref", logging.OrderRef(o.CheckoutSessionID), "attempt_count", inv.AttemptCount)
	if err := insertMany(ctx, tx, SyncSubscriptionArgs{SubscriptionID: inv.Subscription.ID}); err != nil {
		return err
	}
	if o.Status != order.StatusFulfilled {
		return nil
	}
	return queueLifecycleEmail(ctx, tx, w.Deps, lifecycleEmail{kind: mail.KindPaymentFailed, sessionID: o.CheckoutSessionID,
		event: "invoice:" + inv.ID})
}

// trialWillEnd tells a subscriber their trial ends (Stripe sends
// customer.subscription.trial_will_end three days before), once per trial
// end. An event read after the trial ended is too late to say anything.
func trialWillEnd(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	sub, err := decodeObject[stripe.Subscription](event, "a subscription")
	if err != nil {
		return err
	}
	if sub.ID == "" {
		return &badObjectError{fmt.Sprintf("event %s: subscription without an id", event.ID)}
	}
	if sub.TrialEnd <= w.Now().Unix() {
		w.Logger.InfoContext(ctx, "trial end announced after it passed; no email", "subscription_id", sub.ID, "trial_end", sub.TrialEnd)
		return nil
	}
	o, err := postgres.SubscriptionOrder(ctx, tx, sub.ID)
	if err != nil || o == nil || o.Status != order.StatusFulfilled {
		return err
	}
	return queueLifecycleEmail(ctx, tx, w.Deps, lifecycleEmail{kind: mail.KindTrialEnding, sessionID: o.CheckoutSessionID,
		event: fmt.Sprintf("trial:%d", sub.TrialEnd), endsAt: sub.TrialEnd})
}

// SendLifecycleEmailArgs sends one lifecycle email: a lifecycle_emails
// row, which says what to send. EmailKind and OrderRef are for people reading
// the job.
type SendLifecycleEmailArgs struct {
	EmailID   int64  `json:"email_id" river:"unique"`
	EmailKind string `json:"email_kind"`
	OrderRef  string `json:"order_ref,omitempty"`
}

func (SendLifecycleEmailArgs) Kind() string { return "send_lifecycle_email" }

func (SendLifecycleEmailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// SendLifecycleEmailWorker works SendLifecycleEmailArgs, exactly once where
// it can be, as SendOrderEmailWorker does: 'sending' commits before the
// SMTP conversation, 'sent' with the job's completion, and only a run cut
// off between the two sends again, with the same Message-ID. The email is
// built when it is sent, from the order as it is then; one that no longer
// holds (the order revoked since, the key's expiry moved, the shop turned
// the kind off) is recorded 'skipped' and not sent.
type SendLifecycleEmailWorker struct {
	river.WorkerDefaults[SendLifecycleEmailArgs]
	Deps
}

// Timeout covers one SMTP conversation (bounded by the sender) and the
// database steps around it.
func (w *SendLifecycleEmailWorker) Timeout(*river.Job[SendLifecycleEmailArgs]) time.Duration {
	return 2 * time.Minute
}

func (w *SendLifecycleEmailWorker) Work(ctx context.Context, job *river.Job[SendLifecycleEmailArgs]) error {
	if w.Mail == nil {
		return waitForMailReplica(w.Now().Sub(job.CreatedAt), job.Args.EmailKind+" email",
			"the buyer finds what it said on the order page")
	}
	log := w.Logger.With("kind", job.Args.EmailKind, "order_ref", job.Args.OrderRef, "lifecycle_email_id", job.Args.EmailID)
	links, err := LoadOrderLinks(ctx, w.Pool)
	if err != nil {
		return err
	}
	msg, err := w.startSending(ctx, job, links, log)
	if err != nil || msg == nil {
		return err
	}
	if err := w.Mail.SendLifecycle(ctx, msg); err != nil {
		status := failedSendStatus(ctx, err)
		dbErr := postgres.SetLifecycleEmailStatus(context.WithoutCancel(ctx), w.Pool, job.Args.EmailID, "sending", status, err.Error())
		if status == "failed" {
			log.ErrorContext(ctx, "the order's email address cannot receive mail; the email is not sent", "error", err)
			return river.JobCancel(err)
		}
		return errors.Join(err, dbErr)
	}
	err = complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return postgres.SetLifecycleEmailStatus(ctx, tx, job.Args.EmailID, "", "sent", "")
	})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "email sent")
	return nil
}

// startSending marks the email 'sending' in its own commit and returns the
// message to send; nil when there is nothing to send (sent already, or it
// no longer holds), and the job is then complete.
func (w *SendLifecycleEmailWorker) startSending(ctx context.Context, job *river.Job[SendLifecycleEmailArgs], links *OrderLinks, log *slog.Logger) (mail.Message, error) {
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	e, err := postgres.LockLifecycleEmail(ctx, tx, job.Args.EmailID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return nil, river.JobCancel(err)
	}
	if err != nil {
		return nil, err
	}
	// The job completes in this transaction, under the row's lock, only
	// when there is nothing to send.
	finish := func() (mail.Message, error) {
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return nil, err
		}
		return nil, tx.Commit(ctx)
	}
	switch e.Status {
	case "sent", "skipped", "failed":
		return finish()
	case "sending":
		log.WarnContext(ctx, "an earlier attempt was cut off during the SMTP conversation; sending again with the same Message-ID")
	}
	sessionID, err := postgres.SessionIDOfOrder(ctx, tx, e.OrderID)
	if err != nil {
		return nil, err
	}
	o, err := postgres.GetOrder(ctx, tx, sessionID)
	if err != nil {
		return nil, err
	}
	msg, skip, err := w.message(ctx, tx, e, o, links)
	if err != nil {
		return nil, err
	}
	if skip != "" {
		if err := postgres.SetLifecycleEmailStatus(ctx, tx, e.ID, "", "skipped", skip); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "email not sent: it no longer holds", "why", skip)
		return finish()
	}
	if err := postgres.SetLifecycleEmailStatus(ctx, tx, e.ID, "", "sending", ""); err != nil {
		return nil, err
	}
	return msg, tx.Commit(ctx)
}

// message builds the email e of o as o is now, or says why it no longer
// holds.
func (w *SendLifecycleEmailWorker) message(ctx context.Context, db postgres.DB, e *postgres.LifecycleEmail, o *order.Order, links *OrderLinks) (mail.Message, string, error) {
	kind := mail.Kind(e.Kind)
	if !w.Mail.Sends(kind) {
		return nil, "the shop turned these emails off (MAIL_DISABLE)", nil
	}
	switch {
	case kind == mail.KindRevoked && o.Status != order.StatusRevoked:
		return nil, "the revocation was lifted: the order is " + string(o.Status), nil
	case kind != mail.KindRevoked && o.Status != order.StatusFulfilled:
		return nil, "the order is " + string(o.Status), nil
	}
	var key *order.Key
	if e.OrderKeyID != 0 {
		for i := range o.Keys {
			if o.Keys[i].ID == e.OrderKeyID {
				key = &o.Keys[i]
			}
		}
		if key == nil || key.Status != order.KeyActive {
			return nil, "the key no longer works", nil
		}
	}
	l := w.Mail.NewLifecycle(o, key, links.Sign(o, w.Now().Add(OrderEmailLinkTTL)), e.MessageID)
	switch kind {
	case mail.KindReissued:
		reissues, err := postgres.ReissuesOfOrder(ctx, db, o.CheckoutSessionID)
		if err != nil {
			return nil, "", err
		}
		for _, r := range reissues {
			if r.NewKeyID != key.ID {
				continue
			}
			for _, old := range o.Keys {
				if old.ID == r.OldKeyID {
					return mail.NewReissuedEmail(l, o, *key, old), "", nil
				}
			}
		}
		return nil, "", fmt.Errorf("no reissue of order %s made key %d", logging.OrderRef(o.CheckoutSessionID), key.ID)
	case mail.KindPaymentFailed:
		return mail.PaymentFailedEmail{Lifecycle: l, Suspended: w.policy().SuspendWhenPastDue}, "", nil
	case mail.KindCancelled:
		m := mail.CancelledEmail{Lifecycle: l, Ended: o.SubscriptionStatus == string(stripe.SubscriptionStatusCanceled)}
		if e.EndsAt != nil {
			m.Until = mail.FormatDate(*e.EndsAt)
		}
		return m, "", nil
	case mail.KindRevoked:
		return mail.RevokedEmail{Lifecycle: l, Reason: e.Reason}, "", nil
	case mail.KindExpiring:
		if e.EndsAt == nil || key.AuthExpire == nil || *key.AuthExpire != e.EndsAt.Unix() {
			return nil, "the key's expiry moved since", nil
		}
		return mail.NewExpiringEmail(l, *key, *e.EndsAt, w.Now()), "", nil
	case mail.KindTrialEnding:
		if o.SubscriptionStatus == string(stripe.SubscriptionStatusCanceled) || e.EndsAt == nil {
			return nil, "the subscription was cancelled", nil
		}
		return mail.TrialEndingEmail{Lifecycle: l, Ends: mail.FormatDate(*e.EndsAt)}, "", nil
	}
	return nil, "", river.JobCancel(fmt.Errorf("lifecycle email %d has a kind this service does not send: %q", e.ID, e.Kind))
}

// QueueExpiryNoticesArgs queues the expiry notices of keys that will not
// renew and run out within MAIL_EXPIRY_NOTICE_DAYS: one email per key and
// expiry, again once a purchase or a renewal moved the expiry. It records
// the key.expiring events of the shop's backend on its own terms
// (outbound.Settings.Expiring), mail on or off.
type QueueExpiryNoticesArgs struct{}

func (QueueExpiryNoticesArgs) Kind() string { return "queue_expiry_notices" }

func (QueueExpiryNoticesArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// expiryNoticeEvery is how often the keys crossing the notice's threshold
// are looked for; expiryNoticeBatch how many are checked per transaction.
const (
	expiryNoticeEvery      = time.Hour
	expiryNoticeBatch      = 500
	expiryNoticeMaxBatches = 20
)

// QueueExpiryNoticesWorker works QueueExpiryNoticesArgs. It reads only the
// keys in the window still queued for a check (postgres.ExpiringKeys), and
// each key's notice is recorded once, so a run repeated, or two at once,
// queue one email per key and expiry.
type QueueExpiryNoticesWorker struct {
	river.WorkerDefaults[QueueExpiryNoticesArgs]
	Deps
}

func (w *QueueExpiryNoticesWorker) Work(ctx context.Context, job *river.Job[QueueExpiryNoticesArgs]) error {
	if err := w.queueNotices(ctx); err != nil {
		return err
	}
	return w.queueExpiringEvents(ctx)
}

// queueNotices queues the buyers' expiry notices, while mail and the
// notice are on.
func (w *QueueExpiryNoticesWorker) queueNotices(ctx context.Context) error {
	if w.Mail == nil || w.Mail.ExpiryNoticeDays() == 0 || !w.Mail.Sends(mail.KindExpiring) {
		_, err := w.inBatches(ctx, checkOff, postgres.ExpiringKeys, nil)
		return err
	}
	within := time.Duration(w.Mail.ExpiryNoticeDays()) * 24 * time.Hour
	queued, err := w.inBatches(ctx, within, postgres.ExpiringKeys, func(tx pgx.Tx, k postgres.ExpiringKey) error {
		return queueLifecycleEmail(ctx, tx, w.Deps, lifecycleEmail{kind: mail.KindExpiring, sessionID: k.SessionID,
			keyID: k.OrderKeyID, event: postgres.ExpiryNoticeEvent(k.OrderKeyID, k.Expire), endsAt: k.Expire})
	})
	if queued > 0 {
		w.Logger.InfoContext(ctx, "expiry notices queued", "keys", queued, "days_ahead", w.Mail.ExpiryNoticeDays())
	}
	return err
}

// queueExpiringEvents records key.expiring for the shop's backend, once
// per key and expiry, with its own record (the event itself), so that it
// is sent whether or not the buyer is emailed.
func (w *QueueExpiryNoticesWorker) queueExpiringEvents(ctx context.Context) error {
	if len(w.Outbound.Destinations(outbound.KeyExpiring)) == 0 {
		_, err := w.inBatches(ctx, checkOff, postgres.KeysExpiringUnannounced, nil)
		return err
	}
	recorded, err := w.inBatches(ctx, w.Outbound.Expiring(), postgres.KeysExpiringUnannounced, func(tx pgx.Tx, k postgres.ExpiringKey) error {
		return eventKeyExpiring(ctx, tx, w.Deps, k.SessionID, k.OrderKeyID, k.Expire)
	})
	if recorded > 0 {
		w.Logger.InfoContext(ctx, "key.expiring events recorded", "keys", recorded, "within", w.Outbound.Expiring().String())
	}
	return err
}

// checkOff is the window of a check that is off: it checks no key, and
// drops the keys queued for it whose expiry has passed, so its queue
// holds only the keys still running to an expiry while it is off.
const checkOff = time.Duration(0)

// inBatches checks, with check, the keys expiring within the window still
// queued for the check and records each that owes its notice with record,
// in the transaction that takes them off the queue: a batch per
// transaction and a bounded number of batches per run (the next run takes
// the rest). A key checked is not read again until its expiry, the key or
// its order changes, so a run repeated, or two at once, record it once, and
// a run reads the keys that entered the window since the last one, however
// many sit in it.
func (w *QueueExpiryNoticesWorker) inBatches(ctx context.Context, within time.Duration,
	check func(context.Context, pgx.Tx, time.Time, time.Duration, int) (int, []postgres.ExpiringKey, error),
	record func(pgx.Tx, postgres.ExpiringKey) error,
) (int, error) {
	done := 0
	for range expiryNoticeMaxBatches {
		checked, owed := 0, 0
		err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
			n, keys, err := check(ctx, tx, w.Now(), within, expiryNoticeBatch)
			if err != nil {
				return err
			}
			checked = n
			for _, k := range keys {
				if err := record(tx, k); err != nil {
					return err
				}
			}
			owed = len(keys)
			return nil
		})
		if err != nil {
			return done, err
		}
		done += owed
		if checked < expiryNoticeBatch {
			return done, nil
		}
	}
	return done, nil
}
