-- Keys by email: one row per email of an order's keys. Delivery 1 is queued
-- in the commit that fulfils the order; each resend adds the next number.
-- The row is what makes the send job exactly-once where it can be: it is
-- marked 'sending' (committed) before the SMTP conversation and 'sent' in
-- the commit that completes the job.
CREATE TABLE order_emails (
    checkout_session_id text NOT NULL REFERENCES orders (checkout_session_id) ON DELETE CASCADE,
    delivery            int NOT NULL CHECK (delivery >= 1),
    -- queued: to send; sending: an SMTP conversation was started and its
    -- outcome is not recorded yet; sent; skipped: the order was no longer
    -- fulfilled when its turn came (a revocation); failed: the address
    -- can never receive mail.
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed')),
    -- The Message-ID header, the same for every attempt of this delivery.
    message_id          text NOT NULL,
    attempts            int NOT NULL DEFAULT 0,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    PRIMARY KEY (checkout_session_id, delivery)
);
