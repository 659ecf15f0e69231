-- Retention: a Stripe event's body is read once, by the job that handles
-- it right after intake, yet it was most of what the database grew by per
-- order. Bodies of handled events are now dropped after
-- RETENTION_EVENT_PAYLOAD_DAYS (internal/retention); the row, its ID
-- first, stays, so a late duplicate delivery still finds it and is refused.

-- A dropped body is NULL (a catalog-only change, no rewrite).
ALTER TABLE stripe_events ALTER COLUMN payload DROP NOT NULL;

-- Whether the event still waits for its handle_events job: true from
-- intake, false in the commit that completes the job. A body is never
-- dropped while this is true, however old the event. Rows recorded before
-- this migration read false (the added column's default), and a new row
-- reads true (the default set after), also when a replica of the previous
-- version records it during a rolling deploy.
ALTER TABLE stripe_events ADD COLUMN awaiting_handler boolean NOT NULL DEFAULT false;
ALTER TABLE stripe_events ALTER COLUMN awaiting_handler SET DEFAULT true;

-- Earlier events whose job has not completed (waiting, running, or given
-- up for an operator to retry) still wait for it.
UPDATE stripe_events SET awaiting_handler = true
WHERE handled AND id IN (
    SELECT jsonb_array_elements_text(j.args -> 'event_ids') FROM river_job j
    WHERE j.kind = 'handle_events' AND j.state <> 'completed');

-- The bodies still stored, oldest first: the pruning job's batches and
-- doctor's oldest stored body read this, never the whole table.
CREATE INDEX stripe_events_stored_payload_idx ON stripe_events (received_at) WHERE payload IS NOT NULL;

-- Attempts of outbound deliveries by age, for the same job.
CREATE INDEX outbound_delivery_attempts_at_idx ON outbound_delivery_attempts (at);
