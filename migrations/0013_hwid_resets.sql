-- Self-service HWID resets: one row per key that was ever asked for one,
-- holding its latest request. The row is the service's cooldown: a request
-- is accepted by one statement that moves next_reset_at forward only when
-- it has passed, so of two concurrent requests for one key exactly one is
-- accepted, whichever replica serves them.
CREATE TABLE hwid_resets (
    order_key_id  bigint PRIMARY KEY REFERENCES order_keys (id) ON DELETE CASCADE,
    -- Numbers the accepted requests of the key; a reset_hwid job acts only
    -- on the request it was queued for.
    request       int NOT NULL CHECK (request >= 1),
    -- queued: a job will reset the HWID; done: Luarmor cleared it;
    -- failed: Luarmor refused for good (message says why) and the
    -- cooldown was given back.
    status        text NOT NULL CHECK (status IN ('queued', 'done', 'failed')),
    requested_at  timestamptz NOT NULL,
    -- When the next request is accepted; NULL: now.
    next_reset_at timestamptz,
    -- The latest reset Luarmor applied, and how many it applied in all.
    last_reset_at timestamptz,
    resets        int NOT NULL DEFAULT 0,
    message       text
);
