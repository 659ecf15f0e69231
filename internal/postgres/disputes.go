package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fulfiller/internal/order"

	"github.com/jackc/pgx/v5"
)

// HoldDisputeRevocation records that a dispute, as Stripe has it now, holds
// its payment's keys, and returns the stored revocation. inquiry says the
// dispute is still an inquiry: the flag stays only while every reading
// says so. A lifted revocation stays lifted (a won dispute is final, and a
// stale reading must not undo it), except one lifted when an inquiry
// closed: a chargeback on the same dispute holds the keys again.
func HoldDisputeRevocation(ctx context.Context, tx pgx.Tx, r order.Revocation) (*order.Revocation, error) {
	_, err := tx.Exec(ctx, `
		INSERT INTO revocations AS v (source, source_id, charge_id, payment_intent_id, action, reason, status, inquiry)
		VALUES ('dispute', $1, NULLIF($2, ''), NULLIF($3, ''), $4, $5, 'active', $6)
		ON CONFLICT (source_id) DO UPDATE SET
			charge_id = COALESCE(v.charge_id, EXCLUDED.charge_id),
			payment_intent_id = COALESCE(v.payment_intent_id, EXCLUDED.payment_intent_id),
			inquiry = v.inquiry AND EXCLUDED.inquiry,
			status = CASE WHEN v.status = 'lifted' AND v.inquiry AND NOT EXCLUDED.inquiry THEN 'active' ELSE v.status END,
			lifted_at = CASE WHEN v.status = 'lifted' AND v.inquiry AND NOT EXCLUDED.inquiry THEN NULL ELSE v.lifted_at END`,
		r.SourceID, r.ChargeID, r.PaymentIntentID, r.Action, r.Reason, r.Inquiry)
	if err != nil {
		return nil, fmt.Errorf("recording dispute %s: %w", r.SourceID, err)
	}
	stored, err := scanRevocation(tx.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE source_id = $1`, r.SourceID))
	if err != nil {
		return nil, fmt.Errorf("reading dispute %s: %w", r.SourceID, err)
	}
	return stored, nil
}

// LiftDisputeRevocation records a dispute closed in the shop's favour (won,
// or an inquiry closed), whether or not its hold was recorded yet, and
// reports whether it had been active: only then can it have revoked
// anything that must now be restored. A closed inquiry (inquiry true) lifts
// only a suspension: a reading taken before the inquiry turned into a
// chargeback must not lift the chargeback's hold.
func LiftDisputeRevocation(ctx context.Context, tx pgx.Tx, r order.Revocation) (lifted *order.Revocation, wasActive bool, err error) {
	var existed bool
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO revocations AS v (source, source_id, charge_id, payment_intent_id, action, reason, status, lifted_at, inquiry)
		VALUES ('dispute', $1, NULLIF($2, ''), NULLIF($3, ''), $4, $5, 'lifted', now(), $6)
		ON CONFLICT (source_id) DO UPDATE SET status = 'lifted', lifted_at = now(), inquiry = v.inquiry AND EXCLUDED.inquiry
		WHERE v.status = 'active' AND (v.inquiry OR NOT EXCLUDED.inquiry)
		RETURNING v.id, v.xmax <> 0`,
		r.SourceID, r.ChargeID, r.PaymentIntentID, r.Action, r.Reason, r.Inquiry).Scan(&id, &existed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil // lifted already, or a chargeback holds it
	}
	if err != nil {
		return nil, false, fmt.Errorf("lifting dispute %s: %w", r.SourceID, err)
	}
	lifted, err = GetRevocation(ctx, tx, id)
	return lifted, existed, err
}

// LockCharge serialises, for the rest of the transaction, the decisions
// taken on a charge's refunds, so that they are taken in the order their
// reads of the charge were made.
func LockCharge(ctx context.Context, tx pgx.Tx, chargeID string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('charge:' || $1, 0))`, chargeID); err != nil {
		return fmt.Errorf("locking charge %s: %w", chargeID, err)
	}
	return nil
}

// RevocationOf returns the revocation recorded for a source (a dispute,
// charge or early fraud warning ID), or nil.
func RevocationOf(ctx context.Context, db DB, sourceID string) (*order.Revocation, error) {
	r, err := scanRevocation(db.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE source_id = $1`, sourceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the revocation of %s: %w", sourceID, err)
	}
	return r, nil
}

// HoldRefundRevocation records that a charge's refunds revoke its payment's
// keys and returns the stored revocation, active. Unlike a won dispute, a
// refund revocation lifted because a refund failed is not final: a new
// refund reaching the share holds the keys again, and again reports it.
// The caller holds the charge's lock.
func HoldRefundRevocation(ctx context.Context, tx pgx.Tx, r order.Revocation) (stored *order.Revocation, again bool, err error) {
	tag, err := tx.Exec(ctx, `UPDATE revocations SET status = 'active', lifted_at = NULL
		WHERE source_id = $1 AND source = 'refund' AND status = 'lifted'`, r.SourceID)
	if err != nil {
		return nil, false, fmt.Errorf("holding refund %s again: %w", r.SourceID, err)
	}
	r.Status = order.RevocationActive
	stored, err = RecordRevocation(ctx, tx, r)
	return stored, tag.RowsAffected() == 1, err
}

// SubscriptionCancellation is a subscription the service cancels in Stripe
// after revoking its payment.
type SubscriptionCancellation struct {
	SubscriptionID string
	RevocationID   int64
	CancelledAt    *time.Time
	Outcome        string // "cancelled" or "already_cancelled" once done
}

// RequestSubscriptionCancellation records, once per subscription, that it
// is to be cancelled, and reports whether this call recorded it: only then
// is the cancellation queued.
func RequestSubscriptionCancellation(ctx context.Context, tx pgx.Tx, subscriptionID string, revocationID int64) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO subscription_cancellations (subscription_id, revocation_id) VALUES ($1, $2)
		ON CONFLICT (subscription_id) DO NOTHING`, subscriptionID, revocationID)
	if err != nil {
		return false, fmt.Errorf("recording cancellation of subscription %s: %w", subscriptionID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetSubscriptionCancellation reads the cancellation of a subscription.
func GetSubscriptionCancellation(ctx context.Context, db DB, subscriptionID string) (*SubscriptionCancellation, error) {
	var c SubscriptionCancellation
	err := db.QueryRow(ctx, `SELECT subscription_id, revocation_id, cancelled_at, COALESCE(outcome, '')
		FROM subscription_cancellations WHERE subscription_id = $1`, subscriptionID).
		Scan(&c.SubscriptionID, &c.RevocationID, &c.CancelledAt, &c.Outcome)
	if err != nil {
		return nil, fmt.Errorf("reading cancellation of subscription %s: %w", subscriptionID, err)
	}
	return &c, nil
}

// RecordSubscriptionCancelled records Stripe's confirmation.
func RecordSubscriptionCancelled(ctx context.Context, tx pgx.Tx, subscriptionID, outcome string) error {
	_, err := tx.Exec(ctx, `UPDATE subscription_cancellations SET cancelled_at = COALESCE(cancelled_at, now()),
		outcome = COALESCE(outcome, $2) WHERE subscription_id = $1`, subscriptionID, outcome)
	if err != nil {
		return fmt.Errorf("recording cancellation of subscription %s: %w", subscriptionID, err)
	}
	return nil
}
