-- Stripe events by the object they are about.
--
-- An order's events (support's `orders show`) and the moment its first
-- webhook arrived (the start of key_delivery_seconds) are found by the
-- session's ID; without an index both read the whole table, payloads and
-- all, which grows by every event Stripe ever sent.
CREATE INDEX stripe_events_object_id_idx ON stripe_events (object_id);
