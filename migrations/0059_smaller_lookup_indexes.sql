-- What a year of orders costs on disk, after retention, is mostly rows
-- kept on purpose and their indexes. Indexes that hold long text keys
-- only ever compared for equality are rebuilt as hash indexes, which store
-- a 4-byte hash of the key instead of the key itself; indexes nothing
-- reads are dropped.
--
-- Built in the migration's transaction, not CONCURRENTLY (see 0042): writes
-- to the tables wait while each is built, a few seconds per million rows.

-- The events about an object (the console's timeline of an order, when an
-- order's first event came, whether a checkout's event still waits for its
-- job): always object_id = one value or = ANY of a few, never a range or
-- an order. A Checkout Session ID is 66 characters; the B-tree held it in
-- full for every event, more than the rest of an event's row once its
-- body is pruned.
CREATE INDEX stripe_events_object_hash_idx ON stripe_events USING hash (object_id);
DROP INDEX stripe_events_object_id_idx;

-- The units of a Luarmor key, by the key (every `fulfiller keys …` action,
-- the admin and console search by key, the ledger's writer joining a key
-- to its units): always user_key = a value, with project_id compared
-- beside it, which the hash leaves to the row (a key lives in one project,
-- or a few). The key itself is no longer stored a second time in the
-- index. ledger_keys' unique (project_id, user_key) stays a B-tree: only a
-- B-tree can enforce uniqueness.
CREATE INDEX order_keys_user_key_hash_idx ON order_keys USING hash (user_key) WHERE user_key IS NOT NULL;
DROP INDEX order_keys_user_key_idx;

-- The delivery log's newest-first listing walks outbound_deliveries'
-- primary key backwards, as a B-tree can: outbound_deliveries_recent
-- (id DESC) held the same ids a second time.
DROP INDEX outbound_deliveries_recent;

-- The delivery log filtered by status looks for the few failed or pending
-- deliveries among the delivered ones; a listing of the delivered, nearly
-- all of them, is the newest-first walk of the primary key that stops at a
-- page. Only the others are indexed.
CREATE INDEX outbound_deliveries_undelivered_idx ON outbound_deliveries (status, id DESC) WHERE status <> 'delivered';
DROP INDEX outbound_deliveries_status_idx;

-- An address's orders, newest first: the session ID that broke ties
-- between orders placed in the same microsecond was held in full for every
-- order; those few ties are now sorted as they are read (an incremental
-- sort of rows with one created_at), the listing's order unchanged.
CREATE INDEX orders_customer_email_created_idx ON orders (lower(customer_email), created_at DESC);
DROP INDEX orders_customer_email_newest_idx;
