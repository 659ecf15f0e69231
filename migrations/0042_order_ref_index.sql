-- Support finds an order by the reference its logs name it by (ord_ and
-- the first 6 bytes of the SHA-256 of the Checkout Session ID, in hex:
-- logging.OrderRef). The reference was computed per row in the look-up
-- itself, so every `orders show ord_…` and admin search read the whole
-- orders table (over a second at a million orders) and could not use an
-- index: convert_to, which it calls, is only STABLE (it depends on the
-- database's encoding, fixed when the database is created).
--
-- order_ref is that one definition, declared IMMUTABLE (true for a given
-- database, whose encoding never changes), so an expression index can
-- serve it; postgres.SessionOfRef looks references up through it, and a
-- test holds it equal to logging.OrderRef. Nothing is stored: new orders
-- are indexed as they are inserted, by whatever path inserts them.
--
-- Migrations run in a transaction (internal/postgres/migrate.go), so the
-- index cannot be built CONCURRENTLY: the build holds a SHARE lock on
-- orders, which lets reads through but makes new orders and order updates
-- wait until it ends (a few seconds per million orders). Apply it in a
-- quiet moment on a large shop.
CREATE FUNCTION order_ref(checkout_session_id text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT 'ord_' || encode(substr(sha256(convert_to(checkout_session_id, 'UTF8')), 1, 6), 'hex') $$;

CREATE INDEX orders_ref_idx ON orders (order_ref(checkout_session_id));
