package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// SendOrderEmailArgs emails the buyer the keys of a fulfilled order: one
// delivery of the order's order_emails rows. It names the order by number,
// as FulfilOrderArgs does.
type SendOrderEmailArgs struct {
	OrderID  int64  `json:"order_id" river:"unique"`
	OrderRef string `json:"order_ref,omitempty"` // logging.OrderRef, for people
	Delivery int    `json:"delivery" river:"unique"`
	// CheckoutSessionID is the form of jobs queued before orders had
	// numbers (a rolling deploy). Never set now.
	CheckoutSessionID string `json:"checkout_session_id,omitempty"`
}

func (SendOrderEmailArgs) Kind() string { return "send_order_email" }

func (SendOrderEmailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// orderEmailRow picks the order_emails row of the order whose Checkout
// Session ID is $1 and of delivery $2. The rows name their order by its
// number (migration 0069), found here by orders' primary key.
const orderEmailRow = `order_id = (SELECT id FROM orders WHERE checkout_session_id = $1) AND delivery = $2`

// ErrOrderNotFulfilled refuses a resend for an order whose keys are not
// (or no longer) all delivered.
var ErrOrderNotFulfilled = errors.New("the order is not fulfilled: its keys are emailed once they are all delivered")

// queueFirstOrderEmail queues the keys email of an order that the caller's
// transaction just fulfilled. Delivery 1 is recorded once, so however many
// commits see the order fulfilled (two keys settling, a re-run), one email
// is queued. It does nothing while mail is off, the shop turned the keys
// email off (MAIL_DISABLE=keys) or the order has no address. The caller
// holds the order's lock.
func queueFirstOrderEmail(ctx context.Context, tx pgx.Tx, deps Deps, sessionID string) error {
	if deps.Mail == nil || !deps.Mail.Sends(mail.KindKeys) {
		return nil
	}
	var delivery int
	var orderID int64
	err := tx.QueryRow(ctx, `
		WITH o AS (SELECT id FROM orders
			WHERE checkout_session_id = $1 AND status = 'fulfilled' AND customer_email <> '')
		INSERT INTO order_emails (order_id, delivery, message_id)
		SELECT id, 1, $2 FROM o
		ON CONFLICT (order_id, delivery) DO NOTHING
		RETURNING delivery, (SELECT id FROM o)`, sessionID, deps.Mail.NewMessageID()).Scan(&delivery, &orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // not fulfilled yet, no address, or already queued
	}
	if err != nil {
		return fmt.Errorf("recording the keys email of order %s: %w", logging.OrderRef(sessionID), err)
	}
	return insertMany(ctx, tx, SendOrderEmailArgs{OrderID: orderID, OrderRef: logging.OrderRef(sessionID), Delivery: delivery})
}

// ResendOrderEmail queues a new email (the next delivery number) of a
// fulfilled order's keys and returns its number. An unknown order is
// order.ENOTFOUND; one not fulfilled, ErrOrderNotFulfilled.
func (s *Orders) ResendOrderEmail(ctx context.Context, mailer *mail.Sender, sessionID string) (int, error) {
	var delivery int
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) (err error) {
		_, delivery, err = s.resendOrderEmailTx(ctx, tx, mailer, sessionID)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.Logger.InfoContext(ctx, "keys email queued again", "order_ref", logging.OrderRef(sessionID), "delivery", delivery)
	return delivery, nil
}

// resendOrderEmailTx is ResendOrderEmail in tx, which it locks the order in.
func (s *Orders) resendOrderEmailTx(ctx context.Context, tx pgx.Tx, mailer *mail.Sender, sessionID string) (*order.Order, int, error) {
	o, err := postgres.LockOrder(ctx, tx, sessionID)
	if err != nil {
		return nil, 0, err
	}
	if o.Status != order.StatusFulfilled {
		return nil, 0, fmt.Errorf("%w (it is %s)", ErrOrderNotFulfilled, o.Status)
	}
	if o.CustomerEmail == "" {
		return nil, 0, order.Errorf(order.EINVALID, "the order has no email address to send its keys to")
	}
	delivery, err := postgres.NextOrderEmail(ctx, tx, sessionID, mailer.NewMessageID())
	if err != nil {
		return nil, 0, err
	}
	if _, err := s.River.InsertTx(ctx, tx, SendOrderEmailArgs{OrderID: o.ID, OrderRef: logging.OrderRef(sessionID), Delivery: delivery}, nil); err != nil {
		return nil, 0, err
	}
	return o, delivery, nil
}

// ResendEmail is support's ResendOrderEmail: the order named by ID or
// reference, with the action (and reason, if given) in the audit log.
func (s *Support) ResendEmail(ctx context.Context, mailer *mail.Sender, actor, idOrRef, reason string) (int, error) {
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	id, err := s.SessionOf(ctx, idOrRef)
	if err != nil {
		return 0, err
	}
	var delivery int
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		o, d, err := s.Orders.resendOrderEmailTx(ctx, tx, mailer, id)
		if err != nil {
			return err
		}
		delivery = d
		return auditOrder(ctx, tx, actor, "resend-email", o, "", reason, map[string]any{"delivery": d})
	})
	if err != nil {
		return 0, err
	}
	s.Logger.InfoContext(ctx, "support action queued", "actor", actor, "action", "resend-email", "order_ref", logging.OrderRef(id), "delivery", delivery)
	return delivery, nil
}

// SendOrderEmailWorker works SendOrderEmailArgs.
//
// Exactly once where it can be: the delivery is marked 'sending' in its own
// commit before the SMTP conversation starts, and 'sent' in the commit that
// completes the job, so a finished delivery is never sent again and a
// refused send (connection, authentication, a refused recipient) is simply
// retried. The residual at-least-once window: when the run is cut off (a
// crash, the database lost) after the SMTP server accepted the message and
// before 'sent' commits, the next run finds 'sending', cannot know whether
// the message left, and sends it again, with the same Message-ID, so the
// buyer's mail client can tell the two apart as one message. A mail failure
// never touches the order: it stays fulfilled whatever happens here.
type SendOrderEmailWorker struct {
	river.WorkerDefaults[SendOrderEmailArgs]
	Deps
}

// Timeout covers one SMTP conversation (bounded by the sender) and the
// database steps around it.
func (w *SendOrderEmailWorker) Timeout(*river.Job[SendOrderEmailArgs]) time.Duration {
	return 2 * time.Minute
}

// keysEmailWaitsForWriters bounds how long the keys email waits for its
// keys' writers (see Work): past it, Luarmor is slow or down, and the
// buyer gets the keys with the expiry known then.
const keysEmailWaitsForWriters = 2 * time.Minute

// A replica without mail puts a keys email back for keysEmailMailWait, for
// a replica with mail to send (a rolling deploy turning mail on, or off),
// and gives up after keysEmailMailWaitLimit: a buyer waiting that long has
// the keys from the order page, and an operator can resend the email.
const (
	keysEmailMailWait      = 30 * time.Second
	keysEmailMailWaitLimit = 24 * time.Hour
)

func (w *SendOrderEmailWorker) Work(ctx context.Context, job *river.Job[SendOrderEmailArgs]) error {
	if w.Mail == nil {
		return waitForMailReplica(w.Now().Sub(job.CreatedAt), "keys email",
			"once mail is on, send it with POST /v1/orders/{checkout_session_id}/resend-email")
	}
	sessionID, err := sessionOf(ctx, w.Pool, job.Args.OrderID, job.Args.CheckoutSessionID)
	if err != nil {
		return err
	}
	log := w.Logger.With("order_ref", logging.OrderRef(sessionID), "delivery", job.Args.Delivery)
	// The email shows each key as its ledger says: a purchase that extended
	// a key the buyer had, or a renewal paid before the key, is applied by
	// the key's writer right after the delivery. Wait for it, a while.
	writing, err := postgres.KeysBeingWritten(ctx, w.Pool, sessionID)
	if err != nil {
		return err
	}
	if writing && time.Since(job.CreatedAt) < keysEmailWaitsForWriters {
		return river.JobSnooze(time.Second)
	}
	// The email links to the order with a signed link of its current
	// access generation: support's rotation can revoke it, unlike the
	// Checkout Session ID. The key is read before the delivery is marked
	// 'sending', so a failed read leaves nothing in doubt.
	links, err := LoadOrderLinks(ctx, w.Pool)
	if err != nil {
		return err
	}
	o, messageID, proceed, err := w.startSending(ctx, job, sessionID, log)
	if err != nil || !proceed {
		return err
	}
	link := links.Sign(o, w.Now().Add(OrderEmailLinkTTL))
	err = w.Mail.SendKeys(ctx, w.Mail.NewKeysEmail(o, link, messageID))
	if err != nil {
		// An answered refusal, or a server never reached, means the
		// message did not leave: back to 'queued'. A conversation cut off
		// (a timeout, the job stopped) may have delivered it: it stays
		// 'sending', the outcome unknown, and the retry sends it again.
		status := failedSendStatus(ctx, err)
		_, dbErr := w.Pool.Exec(context.WithoutCancel(ctx), `UPDATE order_emails SET status = $3, last_error = $4
			WHERE `+orderEmailRow+` AND status = 'sending'`,
			sessionID, job.Args.Delivery, status, err.Error())
		if status == "failed" {
			log.ErrorContext(ctx, "the order's email address cannot receive mail; the keys stay on the order page", "error", err)
			return river.JobCancel(err)
		}
		return errors.Join(err, dbErr)
	}
	err = complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE order_emails SET status = 'sent', sent_at = now(), last_error = NULL
			WHERE `+orderEmailRow, sessionID, job.Args.Delivery)
		if err != nil {
			return fmt.Errorf("recording the keys email as sent: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "keys email sent", "keys", len(o.Keys))
	return nil
}

// waitForMailReplica is the outcome of an email job on a replica without
// mail, age after it was queued: another replica may send it (a rolling
// deploy that turns mail on, or off), so the job is put back, using no
// attempt; past keysEmailMailWaitLimit nobody is coming, and the job is
// cancelled saying what (what) was not sent and what to do (then).
func waitForMailReplica(age time.Duration, what, then string) error {
	if age > keysEmailMailWaitLimit {
		return river.JobCancel(fmt.Errorf("no replica with mail (SMTP_URL) took this %s in %s: it is not sent; %s",
			what, age.Round(time.Minute), then))
	}
	return river.JobSnooze(keysEmailMailWait)
}

// failedSendStatus is the status an email whose send failed with err goes
// back to: 'queued' when the message surely did not leave (an answered
// refusal, a server never reached), to be retried; 'sending' when the
// conversation was cut off (a timeout, the job stopped) and the message
// may have left; 'failed' when the address can never receive mail.
func failedSendStatus(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, mail.ErrBadRecipient):
		return "failed"
	case ctx.Err() != nil || isTimeout(err):
		return "sending"
	}
	return "queued"
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// startSending marks the delivery 'sending' in its own commit and returns
// the order to render. proceed is false when there is nothing to send (sent
// already, or the order is no longer fulfilled); the job is then complete.
func (w *SendOrderEmailWorker) startSending(ctx context.Context, job *river.Job[SendOrderEmailArgs], sessionID string, log *slog.Logger) (o *order.Order, messageID string, proceed bool, err error) {
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return nil, "", false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	var status string
	err = tx.QueryRow(ctx, `SELECT status, message_id FROM order_emails
		WHERE `+orderEmailRow+` FOR UPDATE`,
		sessionID, job.Args.Delivery).Scan(&status, &messageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", false, river.JobCancel(fmt.Errorf("no keys email %d recorded for this order", job.Args.Delivery))
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("reading the keys email: %w", err)
	}
	// Not complete(): the job completes in this transaction, under the row
	// lock the status was read with, and only when there is nothing to
	// send; otherwise the transaction commits 'sending' without it.
	finish := func() error {
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	switch status {
	case "sent", "skipped", "failed":
		return nil, "", false, finish()
	case "sending":
		log.WarnContext(ctx, "an earlier attempt was cut off during the SMTP conversation; sending again with the same Message-ID")
	}
	o, err = postgres.GetOrder(ctx, tx, sessionID)
	if err != nil {
		return nil, "", false, err
	}
	if o.Status != order.StatusFulfilled {
		// Revoked (a chargeback, a refund) before its email's turn: its
		// keys are no longer the buyer's to use.
		if _, err := tx.Exec(ctx, `UPDATE order_emails SET status = 'skipped' WHERE `+orderEmailRow,
			sessionID, job.Args.Delivery); err != nil {
			return nil, "", false, err
		}
		log.WarnContext(ctx, "keys email not sent: the order is no longer fulfilled", "status", o.Status)
		return nil, "", false, finish()
	}
	_, err = tx.Exec(ctx, `UPDATE order_emails SET status = 'sending', attempts = attempts + 1
		WHERE `+orderEmailRow, sessionID, job.Args.Delivery)
	if err != nil {
		return nil, "", false, fmt.Errorf("marking the keys email as sending: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, "", false, err
	}
	return o, messageID, true, nil
}
