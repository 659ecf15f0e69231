-- Events out: what the service tells the shop's own tools (signed webhooks
-- to its backend, a Discord channel). An event is recorded once, in the
-- transaction that records what happened, unique per (type, subject): a
-- repeated Stripe webhook or a job run twice records nothing more. Its
-- body's data is kept as recorded, so every attempt and replay sends the
-- same event with the same ID.
CREATE TABLE outbound_events (
    id          bigserial PRIMARY KEY,
    -- 'evt_...': the Idempotency-Key of every delivery of the event.
    event_id    text NOT NULL UNIQUE,
    type        text NOT NULL,
    -- What happened, once per type: 'order:<id>', 'revocation:<id>',
    -- 'reissue:<id>', 'key:<id>:expiry:<unix>', 'subscription:<id>', ...
    subject     text NOT NULL,
    order_id    bigint REFERENCES orders (id) ON DELETE SET NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (type, subject)
);

-- One delivery per event and destination: a webhook endpoint (by its URL)
-- or the Discord channel ('discord': its URL holds Discord's token and is
-- read from the settings when sent).
CREATE TABLE outbound_deliveries (
    id            bigserial PRIMARY KEY,
    event_id      bigint NOT NULL REFERENCES outbound_events (id) ON DELETE CASCADE,
    destination   text NOT NULL CHECK (destination IN ('webhook', 'discord')),
    endpoint      text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      int NOT NULL DEFAULT 0,
    -- Replays by an operator: each queues one more job.
    replays       int NOT NULL DEFAULT 0,
    last_status   int,
    last_error    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    UNIQUE (event_id, destination, endpoint)
);

CREATE INDEX outbound_deliveries_recent ON outbound_deliveries (id DESC);

-- Every attempt of a delivery: the answer's status (NULL without one), how
-- long it took and what went wrong.
CREATE TABLE outbound_delivery_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES outbound_deliveries (id) ON DELETE CASCADE,
    replay       int NOT NULL DEFAULT 0,
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  int,
    duration_ms  int NOT NULL,
    error        text NOT NULL DEFAULT ''
);

CREATE INDEX outbound_delivery_attempts_delivery ON outbound_delivery_attempts (delivery_id, id);
