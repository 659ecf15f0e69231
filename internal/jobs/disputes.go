package jobs

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// Disputes, refunds (and refunds that failed) and early fraud warnings
// after the sale. The event says only that something changed: the job that
// acts reads the dispute or the refunded charge back from Stripe and
// decides on what Stripe says now, so a stale or replayed event body can
// neither revoke nor restore a key.

// disputeChanged queues the read-back of a dispute that was opened,
// updated (an inquiry turned into a chargeback, evidence submitted) or
// closed. The three events are handled alike: what counts is the
// dispute's status when the job runs.
func disputeChanged(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	d, err := decodeObject[stripe.Dispute](event, "a dispute")
	if err != nil {
		return err
	}
	return insertMany(ctx, tx, ApplyDisputeArgs{DisputeID: d.ID})
}

// chargeRefunded queues the read-back of a refunded charge: whether its
// refunds reach REFUND_REVOKE_PERCENT is decided on the charge as Stripe
// has it, the sum of every refund so far.
func chargeRefunded(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	ch, err := decodeObject[stripe.Charge](event, "a charge")
	if err != nil {
		return err
	}
	return insertMany(ctx, tx, ApplyRefundArgs{ChargeID: ch.ID})
}

// refundUpdated queues the read-back of the charge of a refund that
// changed (charge.refund.updated). In this API version it is how Stripe
// says a refund failed (a closed card, say) after charge.refunded was sent:
// it lowers the charge's amount_refunded, and apply_refund decides again
// from the charge as it is now. The event's status is only logged.
func refundUpdated(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	rf, err := decodeObject[stripe.Refund](event, "a refund")
	if err != nil {
		return err
	}
	ch := chargeID(rf.Charge)
	if ch == "" {
		w.Logger.InfoContext(ctx, "refund of no charge updated; nothing to do", "refund_id", rf.ID, "status", rf.Status)
		return nil
	}
	if rf.Status == stripe.RefundStatusFailed {
		w.Logger.WarnContext(ctx, "a refund failed; reading its charge again", "refund_id", rf.ID, "charge_id", ch,
			"failure_reason", rf.FailureReason)
	}
	return insertMany(ctx, tx, ApplyRefundArgs{ChargeID: ch})
}

// earlyFraudWarning revokes the payment's keys when the card's issuer
// reports fraud and EARLY_FRAUD_WARNING_ACTION=revoke; otherwise it is
// logged for the shop to decide (refund, or wait for a dispute).
func earlyFraudWarning(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	efw, err := decodeObject[stripe.RadarEarlyFraudWarning](event, "an early fraud warning")
	if err != nil {
		return err
	}
	attrs := []any{"early_fraud_warning_id", efw.ID, "charge_id", chargeID(efw.Charge),
		"payment_intent_id", paymentIntentID(efw.PaymentIntent), "fraud_type", efw.FraudType, "actionable", efw.Actionable}
	if !w.policy().RevokeOnEarlyFraudWarning {
		w.Logger.WarnContext(ctx, "early fraud warning; keys untouched (EARLY_FRAUD_WARNING_ACTION=none): refund the payment or wait for its dispute", attrs...)
		return nil
	}
	r, err := postgres.RecordRevocation(ctx, tx, order.Revocation{
		Source: order.SourceEarlyFraudWarning, SourceID: efw.ID, ChargeID: chargeID(efw.Charge),
		PaymentIntentID: paymentIntentID(efw.PaymentIntent), Action: order.ActionBlacklist, Reason: order.FraudWarningBanReason,
	})
	if err != nil || r.Status != order.RevocationActive {
		return err
	}
	w.Logger.WarnContext(ctx, "early fraud warning; revoking the payment's keys", attrs...)
	return insertMany(ctx, tx, ResolveRevocationArgs{RevocationID: r.ID})
}

// ApplyDisputeArgs reads a dispute back from Stripe and holds or lifts its
// payment's keys accordingly.
type ApplyDisputeArgs struct {
	DisputeID string `json:"dispute_id"`
}

func (ApplyDisputeArgs) Kind() string { return "apply_dispute" }

// InsertOpts: not unique. A copy queued while another runs must read
// Stripe again: the running one may have read the dispute before the
// change its event announces.
func (ApplyDisputeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, Priority: 1}
}

// ApplyDisputeWorker works ApplyDisputeArgs.
type ApplyDisputeWorker struct {
	river.WorkerDefaults[ApplyDisputeArgs]
	Deps
}

func (w *ApplyDisputeWorker) Work(ctx context.Context, job *river.Job[ApplyDisputeArgs]) error {
	id := job.Args.DisputeID
	d, err := w.Stripe.Dispute(ctx, id)
	if stripeapi.IsNotFound(err) {
		w.Logger.ErrorContext(ctx, "an event named a dispute this Stripe account does not know; nothing revoked or restored",
			"dispute_id", id, "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	r := order.Revocation{
		Source: order.SourceDispute, SourceID: d.ID, ChargeID: chargeID(d.Charge), PaymentIntentID: paymentIntentID(d.PaymentIntent),
		Action: order.ActionBlacklist, Reason: w.Policy.DisputeBanReason,
	}
	switch d.Status {
	case stripe.DisputeStatusWarningNeedsResponse, stripe.DisputeStatusWarningUnderReview:
		if !w.Policy.SuspendOnInquiry {
			w.Logger.InfoContext(ctx, "dispute inquiry; keys untouched (DISPUTE_INQUIRY_ACTION=none)",
				"dispute_id", d.ID, "status", d.Status, "charge_id", r.ChargeID, "reason", d.Reason)
			return nil
		}
		r.Inquiry = true
		return w.hold(ctx, job, r, d.Status)
	case stripe.DisputeStatusNeedsResponse, stripe.DisputeStatusUnderReview, stripe.DisputeStatusLost:
		return w.hold(ctx, job, r, d.Status)
	case stripe.DisputeStatusWarningClosed:
		r.Inquiry = true
		return w.lift(ctx, job, r, d.Status)
	case stripe.DisputeStatusWon:
		return w.lift(ctx, job, r, d.Status)
	}
	w.Logger.ErrorContext(ctx, "dispute has a status this service does not know; nothing done, decide in the dashboard",
		"dispute_id", d.ID, "status", d.Status)
	return nil
}

// hold records that the dispute holds its payment's keys and queues their
// revocation (which changes nothing for keys already revoked).
func (w *ApplyDisputeWorker) hold(ctx context.Context, job *river.Job[ApplyDisputeArgs], r order.Revocation, status stripe.DisputeStatus) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		stored, err := postgres.HoldDisputeRevocation(ctx, tx, r)
		if err != nil {
			return err
		}
		if stored.Status != order.RevocationActive {
			w.Logger.InfoContext(ctx, "dispute already closed in the shop's favour; nothing revoked", "dispute_id", r.SourceID, "status", status)
			return nil
		}
		w.Logger.InfoContext(ctx, "dispute holds the payment's keys", "dispute_id", r.SourceID, "status", status,
			"inquiry", stored.Inquiry, "charge_id", r.ChargeID)
		return insertMany(ctx, tx, ResolveRevocationArgs{RevocationID: stored.ID})
	})
}

// lift records the dispute closed in the shop's favour and queues the
// lifting of its bans.
func (w *ApplyDisputeWorker) lift(ctx context.Context, job *river.Job[ApplyDisputeArgs], r order.Revocation, status stripe.DisputeStatus) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		lifted, wasActive, err := postgres.LiftDisputeRevocation(ctx, tx, r)
		if err != nil || !wasActive {
			// Closed twice, before it held anything, or (an inquiry's
			// close read late) a chargeback holds the keys now.
			return err
		}
		if !w.Policy.UnbanOnLift(r.Inquiry) {
			w.Logger.InfoContext(ctx, "dispute won; bans kept (DISPUTE_WON_ACTION=keep)", "dispute_id", r.SourceID)
			return nil
		}
		w.Logger.InfoContext(ctx, "dispute closed in the shop's favour; lifting its bans", "dispute_id", r.SourceID, "status", status)
		return insertMany(ctx, tx, LiftRevocationArgs{RevocationID: lifted.ID})
	})
}

// ApplyRefundArgs reads a refunded charge back from Stripe and revokes its
// keys once its refunds reach REFUND_REVOKE_PERCENT of its captured amount,
// or lifts that revocation once they fall below it again (a refund failed).
type ApplyRefundArgs struct {
	ChargeID string `json:"charge_id"`
}

func (ApplyRefundArgs) Kind() string { return "apply_refund" }

// InsertOpts: not unique, for the reason ApplyDisputeArgs is not: a later
// partial refund must be counted even while an earlier one is applied.
func (ApplyRefundArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, Priority: 1}
}

// ApplyRefundWorker works ApplyRefundArgs. Runs for one charge take turns:
// each holds the charge's lock from before its read of Stripe until its
// commit, so the run that read Stripe last decides last. Without it a run
// that read a refund before it failed could commit after the run that saw
// the failure, and revoke the keys again for a refund that never happened.
type ApplyRefundWorker struct {
	river.WorkerDefaults[ApplyRefundArgs]
	Deps
}

func (w *ApplyRefundWorker) Work(ctx context.Context, job *river.Job[ApplyRefundArgs]) error {
	id := job.Args.ChargeID
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if err := postgres.LockCharge(ctx, tx, id); err != nil {
			return err
		}
		ch, err := w.Stripe.Charge(ctx, id)
		if stripeapi.IsNotFound(err) {
			w.Logger.ErrorContext(ctx, "an event named a refunded charge this Stripe account does not know; nothing revoked or restored",
				"charge_id", id, "error", err)
			return nil
		}
		if err != nil {
			return err
		}
		// The share is of what was captured: an uncaptured charge (or the
		// uncaptured part of a partial capture) took no money to give back.
		// A failed refund no longer counts: Stripe takes it out of
		// amount_refunded.
		if w.Policy.RefundRevokes(ch.AmountRefunded, ch.AmountCaptured) {
			return w.hold(ctx, tx, ch)
		}
		return w.lift(ctx, tx, ch)
	})
}

// hold records that the charge's refunds revoke its payment's keys, again
// if a failed refund had lifted that, and queues their revocation (which
// changes nothing for keys already revoked).
func (w *ApplyRefundWorker) hold(ctx context.Context, tx pgx.Tx, ch *stripe.Charge) error {
	p := w.Policy
	r, again, err := postgres.HoldRefundRevocation(ctx, tx, order.Revocation{
		Source: order.SourceRefund, SourceID: ch.ID, ChargeID: ch.ID, PaymentIntentID: paymentIntentID(ch.PaymentIntent),
		Action: p.RefundAction, Reason: p.RefundBanReason,
	})
	if err != nil || r.Action == order.ActionNone {
		return err
	}
	msg := "payment refunded; revoking its keys"
	if again {
		msg = "payment refunded again after a refund failed; revoking its keys"
	}
	w.Logger.InfoContext(ctx, msg, "charge_id", ch.ID, "action", r.Action,
		"amount_captured", ch.AmountCaptured, "amount_refunded", ch.AmountRefunded)
	return insertMany(ctx, tx, ResolveRevocationArgs{RevocationID: r.ID})
}

// lift restores what the charge's refunds revoked once they fall below the
// share (Stripe lowered amount_refunded: a refund failed or was cancelled),
// through the path a won dispute takes. Below the share with nothing
// revoked, nothing changes.
func (w *ApplyRefundWorker) lift(ctx context.Context, tx pgx.Tx, ch *stripe.Charge) error {
	attrs := []any{"charge_id", ch.ID, "amount_captured", ch.AmountCaptured, "amount_refunded", ch.AmountRefunded,
		"revoke_percent", w.Policy.RefundRevokePercent}
	held, err := postgres.RevocationOf(ctx, tx, ch.ID)
	if err != nil {
		return err
	}
	if held == nil || held.Source != order.SourceRefund || held.Status != order.RevocationActive {
		w.Logger.InfoContext(ctx, "refund below REFUND_REVOKE_PERCENT of the captured amount; keys unchanged", attrs...)
		return nil
	}
	lifted, wasActive, err := postgres.LiftRevocation(ctx, tx, *held)
	if err != nil || !wasActive || lifted.Action == order.ActionNone {
		return err
	}
	w.Logger.WarnContext(ctx, "refunds fell below REFUND_REVOKE_PERCENT (a refund failed); restoring the payment's keys", attrs...)
	return insertMany(ctx, tx, LiftRevocationArgs{RevocationID: lifted.ID})
}

// unbansOnLift reports whether lifting r lifts the bans it made: a
// dispute's as DISPUTE_WON_ACTION says (an inquiry's suspension always); a
// refund that failed, or a fraud warning support lifted, always, since the
// payment stands.
func unbansOnLift(p order.Policy, r *order.Revocation) bool {
	return r.Source != order.SourceDispute || p.UnbanOnLift(r.Inquiry)
}

// cancelsSubscription reports whether revoking r cancels the subscription
// its payment belongs to: a chargeback or a refund, not an inquiry (no
// money taken back yet) nor a fraud warning (a refund or dispute follows).
func cancelsSubscription(p order.Policy, r *order.Revocation) bool {
	return p.CancelSubscriptionOnRevoke && r.SubscriptionID != "" && !r.Inquiry &&
		(r.Source == order.SourceDispute || r.Source == order.SourceRefund)
}

// CancelSubscriptionArgs cancels in Stripe a subscription whose payment was
// revoked, so the customer is not charged again for a banned key.
type CancelSubscriptionArgs struct {
	SubscriptionID string `json:"subscription_id"`
}

func (CancelSubscriptionArgs) Kind() string { return "cancel_subscription" }

func (CancelSubscriptionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, Priority: 1, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// CancelSubscriptionWorker works CancelSubscriptionArgs. The cancellation
// is recorded with the job's completion; a run that finds it recorded calls
// nothing, and a run cut off after Stripe cancelled finds Stripe answering
// the repeat as an unknown subscription, which is success.
type CancelSubscriptionWorker struct {
	river.WorkerDefaults[CancelSubscriptionArgs]
	Deps
}

func (w *CancelSubscriptionWorker) Work(ctx context.Context, job *river.Job[CancelSubscriptionArgs]) error {
	id := job.Args.SubscriptionID
	c, err := postgres.GetSubscriptionCancellation(ctx, w.Pool, id)
	if err != nil {
		return err
	}
	if c.CancelledAt != nil {
		return nil
	}
	outcome := "cancelled"
	if _, err := w.Stripe.CancelSubscription(ctx, id); err != nil {
		if !stripeapi.IsNotFound(err) {
			if stripeapi.IsUnauthorized(err) {
				return fmt.Errorf("cancelling subscription %s after its payment was revoked: the Stripe key may not write subscriptions "+
					"(CANCEL_SUBSCRIPTION_ON_REVOKE needs a secret key or a restricted key with write access to subscriptions): %w", id, err)
			}
			return err
		}
		outcome = "already_cancelled"
	}
	w.Logger.InfoContext(ctx, "subscription of a revoked payment cancelled in Stripe", "subscription_id", id,
		"outcome", outcome, "revocation_id", c.RevocationID)
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		return postgres.RecordSubscriptionCancelled(ctx, tx, id, outcome)
	})
}
