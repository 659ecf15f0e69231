-- Lifecycle emails: what happened to an order or a key after its keys
-- email (a key reissued, a renewal unpaid, a subscription cancelled, keys
-- revoked, access ending soon, a trial ending). One row per (order, kind,
-- event): it is inserted in the transaction that records the event, so a
-- repeated webhook or job inserts nothing and queues no second email. Like
-- order_emails, the row makes its send job exactly-once where it can be:
-- 'sending' is committed before the SMTP conversation, 'sent' with the
-- job's completion.
CREATE TABLE lifecycle_emails (
    id            bigserial PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    -- The key the email is about (a reissue's new key, an expiring key);
    -- NULL when it is about the order.
    order_key_id  bigint REFERENCES order_keys (id) ON DELETE CASCADE,
    kind          text NOT NULL
                  CHECK (kind IN ('reissued', 'payment_failed', 'cancelled', 'revoked', 'expiring', 'trial_ending')),
    -- What happened, once per order and kind: 'reissue:<id>',
    -- 'invoice:<id>', 'period:<end>', 'revocation:<id>',
    -- 'key:<id>:expiry:<unix>', 'trial:<end>'.
    event         text NOT NULL,
    -- The moment the email speaks of (access ends, trial ends), if any.
    ends_at       timestamptz,
    -- What the buyer may be told of why (a revocation's ban reason).
    reason        text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed')),
    message_id    text NOT NULL,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    UNIQUE (order_id, kind, event)
);
CREATE INDEX lifecycle_emails_key_idx ON lifecycle_emails (order_key_id) WHERE order_key_id IS NOT NULL;

-- The keys whose absolute expiry comes within days: the periodic expiry
-- notice reads the keys in its window through this index, never every key.
CREATE INDEX order_keys_expiring_idx ON order_keys (auth_expire)
    WHERE status = 'active' AND auth_expire > 0 AND user_key IS NOT NULL;
