-- The key lifecycle after the sale: renewals, revocations, Discord merges.

ALTER TABLE orders
    ADD COLUMN paid_through        bigint,   -- unix seconds: end of the latest paid subscription period
    ADD COLUMN subscription_status text;     -- 'canceled' once customer.subscription.deleted arrived

-- A key shared with another order (a Discord ID already had a key in the
-- project, and the purchase extended it) appears on both orders.
DROP INDEX order_keys_user_key_idx;
CREATE INDEX order_keys_user_key_idx ON order_keys (project_id, user_key) WHERE user_key IS NOT NULL;

ALTER TABLE order_keys
    -- The purchase extended this existing key instead of creating one.
    ADD COLUMN extended_existing boolean NOT NULL DEFAULT false,
    -- Absolute expiry computed once for that extension, kept so that a
    -- retry sends the same value.
    ADD COLUMN extend_target bigint;

-- One row per paid subscription invoice; the new expiry is computed once.
CREATE TABLE renewals (
    invoice_id      text PRIMARY KEY,
    subscription_id text NOT NULL,
    billing_reason  text NOT NULL,
    period_end      bigint NOT NULL,   -- unix seconds, the invoice line's period.end
    expires_at      bigint NOT NULL,   -- period_end + RENEWAL_GRACE
    extends         boolean NOT NULL,  -- false for subscription_create: the checkout key already covers it
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX renewals_subscription_idx ON renewals (subscription_id, expires_at DESC);

-- Each renewal applied to each key.
CREATE TABLE key_renewals (
    order_key_id   bigint NOT NULL REFERENCES order_keys (id),
    invoice_id     text NOT NULL REFERENCES renewals (invoice_id),
    applied_expire bigint NOT NULL,   -- the key's auth_expire afterwards
    changed        boolean NOT NULL,  -- false when the key already had at least that
    applied_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_key_id, invoice_id)
);

-- A payment taken back: a dispute (by dispute ID) or a full refund (by
-- charge ID). It applies to every order paid by the payment, including
-- orders that arrive later.
CREATE TABLE revocations (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('dispute', 'refund')),
    source_id         text NOT NULL UNIQUE,
    charge_id         text,
    payment_intent_id text,
    subscription_id   text,             -- filled once the payment is traced to a subscription
    action            text NOT NULL CHECK (action IN ('blacklist', 'delete', 'none')),
    reason            text NOT NULL,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lifted')),
    resolved_at       timestamptz,      -- payment traced to its orders
    created_at        timestamptz NOT NULL DEFAULT now(),
    lifted_at         timestamptz
);
CREATE INDEX revocations_payment_intent_idx ON revocations (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX revocations_subscription_idx ON revocations (subscription_id) WHERE subscription_id IS NOT NULL;

ALTER TABLE orders ADD COLUMN revocation_id bigint REFERENCES revocations (id);

-- When Luarmor was last asked about a delivered key whose key_days timer
-- had not started, to learn its expiry once the buyer first uses it.
ALTER TABLE order_keys ADD COLUMN checked_at timestamptz;
CREATE INDEX order_keys_unstarted_idx ON order_keys (checked_at NULLS FIRST)
    WHERE status = 'active' AND user_key IS NOT NULL AND auth_expire IS NULL;
