-- Orders, the keys delivered for them, and every Stripe event received.

-- Every verified Stripe event, stored once by its ID: a repeated delivery
-- finds its row and enqueues nothing.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    api_version  text NOT NULL,
    livemode     boolean NOT NULL,
    object_id    text NOT NULL,
    created_at   timestamptz NOT NULL,          -- when Stripe created the event
    received_at  timestamptz NOT NULL DEFAULT now(),
    handled      boolean NOT NULL,              -- whether the service acts on its type
    payload      jsonb NOT NULL
);

-- One row per Checkout Session.
CREATE TABLE orders (
    checkout_session_id text PRIMARY KEY,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'fulfilled', 'revoked', 'failed')),
    mode                text NOT NULL DEFAULT '',
    payment_status      text NOT NULL DEFAULT '',
    customer_email      text NOT NULL DEFAULT '',
    customer_id         text NOT NULL DEFAULT '',
    payment_intent_id   text,
    subscription_id     text,
    invoice_id          text,
    discord_id          text NOT NULL DEFAULT '',
    -- Set once the session's line items were turned into order_keys rows.
    items_loaded_at     timestamptz,
    -- Why the order failed, for the operator; failure_code is stable
    -- ('unknown_price', 'payment_failed', 'luarmor_refused').
    failure_code        text,
    failure_reason      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_payment_intent_id_idx ON orders (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX orders_subscription_id_idx ON orders (subscription_id) WHERE subscription_id IS NOT NULL;
CREATE INDEX orders_failed_idx ON orders (failure_code) WHERE status = 'failed';

-- One row per purchased unit: quantity 3 gives three rows and three keys.
CREATE TABLE order_keys (
    id                  bigserial PRIMARY KEY,
    checkout_session_id text NOT NULL REFERENCES orders (checkout_session_id),
    line_item_id        text NOT NULL,
    unit                int  NOT NULL CHECK (unit >= 1),
    price_id            text NOT NULL,
    project_id          text NOT NULL,
    key_days            int  NOT NULL CHECK (key_days >= 0),
    -- Unique tag written into the Luarmor note, so a key whose creation
    -- answer was lost can be found again instead of minted twice.
    reference           text NOT NULL UNIQUE,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'active', 'failed', 'blacklisted', 'deleted')),
    user_key            text,
    -- Unix seconds; NULL while the key_days timer has not started; -1 never.
    auth_expire         bigint,
    -- Incremented (and committed) before every Luarmor create, so a retry
    -- knows an earlier attempt may have created the key.
    create_attempts     int NOT NULL DEFAULT 0,
    last_error          text,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (checkout_session_id, line_item_id, unit)
);
CREATE UNIQUE INDEX order_keys_user_key_idx ON order_keys (project_id, user_key) WHERE user_key IS NOT NULL;
