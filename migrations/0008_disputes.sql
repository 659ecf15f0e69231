-- Disputes by kind, early fraud warnings, and cancelling a revoked
-- subscription in Stripe.

-- An early fraud warning can revoke a payment like a dispute.
ALTER TABLE revocations DROP CONSTRAINT revocations_source_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_source_check
    CHECK (source IN ('dispute', 'refund', 'early_fraud_warning'));

-- The revocation suspends keys for a dispute inquiry (no money withdrawn
-- yet): closing the inquiry lifts it whatever DISPUTE_WON_ACTION says, and
-- the inquiry turning into a chargeback clears the flag.
ALTER TABLE revocations ADD COLUMN inquiry boolean NOT NULL DEFAULT false;

-- One row per subscription the service cancelled in Stripe after revoking
-- its payment: the cancellation is asked for once, whatever repeats.
CREATE TABLE subscription_cancellations (
    subscription_id text PRIMARY KEY,
    revocation_id   bigint NOT NULL REFERENCES revocations (id),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    cancelled_at    timestamptz,      -- Stripe confirmed it (or had it cancelled already)
    outcome         text              -- 'cancelled' or 'already_cancelled'
);
