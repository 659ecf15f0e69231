-- Three indexes of tables kept for good are there for a uniqueness alone:
-- no look-up reads them (the plan test's look-ups and every statement of
-- the service find these rows by other columns). Each now guards the same
-- rule in fewer bytes; what stays of an order after retention is about 110
-- bytes smaller.
--
-- A grant's number (key_grants.id) is referenced by nothing: grants are
-- found by their unit, and the number only orders them. Their primary key
-- becomes (order_key_id, source), the unique pair every writer already
-- names in ON CONFLICT, and the index of the numbers goes: one index of
-- grants instead of two.
--
-- A unit's reference (order_keys.reference, "fk_" and 20 random hex
-- digits, written into its Luarmor key's note, by which a create cut off
-- finds its key again) and an outbound event's ID (outbound_events.event_id,
-- "evt_" and 24 random hex digits, by which the shop drops a repeated
-- event) must each be unique. They are unique now by a 64-bit hash of the
-- value (hashtextextended) instead of the value itself: equal values have
-- equal hashes, so two units can never share a reference nor two events
-- an ID, as before. Two different values whose hashes are equal (about
-- three chances in a million over ten million rows) are refused as a
-- repeat would be: the transaction that records the second rolls back,
-- and its job runs again with a fresh value, as after any failed commit.
--
-- The indexes are built in this transaction: writes to the three tables
-- wait meanwhile, a few seconds per million orders.
ALTER TABLE key_grants
    DROP CONSTRAINT key_grants_pkey,
    DROP CONSTRAINT key_grants_order_key_id_source_key,
    ADD CONSTRAINT key_grants_pkey PRIMARY KEY (order_key_id, source);

CREATE UNIQUE INDEX order_keys_reference_hash_key ON order_keys (hashtextextended(reference, 0));
ALTER TABLE order_keys DROP CONSTRAINT order_keys_reference_key;

CREATE UNIQUE INDEX outbound_events_event_id_hash_key ON outbound_events (hashtextextended(event_id, 0));
ALTER TABLE outbound_events DROP CONSTRAINT outbound_events_event_id_key;
