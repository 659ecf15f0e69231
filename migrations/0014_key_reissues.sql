-- Support: a key replaced by a new one for the same unit. The row is
-- written, with the new unit, in the transaction that accepts the request:
-- a second request for the same key finds it and adds nothing, so a key is
-- reissued once however often the command runs or is cut off. The new
-- unit is created by create_key (its lease, its look-up by reference);
-- the old key is revoked once the new one is delivered.
CREATE TABLE key_reissues (
    id             bigserial PRIMARY KEY,
    old_key_id     bigint NOT NULL UNIQUE REFERENCES order_keys (id),
    new_key_id     bigint NOT NULL UNIQUE REFERENCES order_keys (id),
    -- "cli" or "admin-api": who asked.
    requested_by   text NOT NULL,
    reason         text NOT NULL,
    -- queued: the new key is being made; done: delivered and the old key
    -- revoked; failed: the new key could not be made (message says why),
    -- the old key was left as it was.
    status         text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    message        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
