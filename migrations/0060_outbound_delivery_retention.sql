-- Retention of what the shop's own tools were told: a delivery of an
-- outbound event finished (delivered, or failed for good) more than
-- RETENTION_DELIVERY_LOG_DAYS ago is deleted with its attempts
-- (internal/retention), and so, with its event's last delivery, is the
-- event's body: only a delivery sends it. An event recorded with no
-- destination is now stored without a body (postgres.RecordOutboundEvent).
-- A delivery's row was bigger than its event's, and none is read again
-- once the shop's developers stopped looking back.
--
-- The event's row (its ID, type, subject, order and time) stays for good:
-- it is the once-per-(type, subject) guard that keeps a repeated webhook or
-- a job run twice from telling the shop again, and the expiry notices
-- read it (postgres.KeysExpiringUnannounced). A delivery that is gone can
-- no longer be replayed; its event is never sent again without its body.

-- A dropped body is NULL (a catalog-only change, no rewrite).
ALTER TABLE outbound_events ALTER COLUMN data DROP NOT NULL;

-- Bodies of events that never had a delivery were never read.
UPDATE outbound_events e SET data = NULL
WHERE NOT EXISTS (SELECT 1 FROM outbound_deliveries d WHERE d.event_id = e.id);

-- The finished deliveries, by when they last changed: the pruning job's
-- batches read the oldest of them, never the whole table. Pending ones,
-- which a job still works on, are not in it.
CREATE INDEX outbound_deliveries_finished_idx ON outbound_deliveries (updated_at) WHERE status <> 'pending';
