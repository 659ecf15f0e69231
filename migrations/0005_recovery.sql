-- Crash recovery, leases on Luarmor creates, fair scheduling between orders.

-- Every running process beats here; jobs left running by a process that
-- stopped beating are handed back to the queue (internal/jobs/rescue.go).
-- name is the River client ID, which River records in river_job.attempted_by.
CREATE TABLE replicas (
    name         text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE order_keys
    -- A create attempt holds the unit until create_lease_until: a second
    -- runner waits it out before it looks the key up by its reference, so a
    -- create still on its way from a runner that was cut off is never
    -- followed by a second create.
    ADD COLUMN create_lease_until timestamptz,
    ADD COLUMN create_lease_owner text,
    -- When the unit's create_key job was queued. An order has at most a few
    -- units queued at a time; each finished unit queues the next, so the
    -- deliver queue serves orders round-robin.
    ADD COLUMN queued_at timestamptz;

-- Units already queued when this migration runs keep their jobs.
UPDATE order_keys SET queued_at = created_at WHERE status = 'pending';

CREATE INDEX order_keys_unqueued_idx ON order_keys (checkout_session_id, id) WHERE status = 'pending';

ALTER TABLE orders
    -- The Checkout Session's own status (open, complete, expired): only a
    -- complete session is fulfilled.
    ADD COLUMN session_status text NOT NULL DEFAULT '';

-- Orders recorded before this column existed came from completed sessions.
UPDATE orders SET session_status = 'complete';
