-- Orders are found by their buyer's address (find my keys, the console's
-- and the admin API's search by address), newest first. The index of 0012
-- on lower(customer_email) was partial, and PostgreSQL uses the statistics
-- ANALYZE gathers on an index's expression only when the index is not
-- partial: the planner guessed 0.5% of all orders per address, and once
-- orders_created_at_idx (0044) existed it read the orders newest first by
-- created_at, filtering each by address: every order read to find an
-- address's few, or none (0.6 to 1.4 s at a million orders).
--
-- This index is not partial, so the planner knows how few orders an
-- address has, and it holds them in the order they are listed in (newest
-- first, then by session), so a page of an address's orders is read
-- straight from it with no sort, cheaper than any walk of the orders.
-- It replaces 0012's.
--
-- Built in the migration's transaction, not CONCURRENTLY (see 0042):
-- writes to orders wait while it is built, a few seconds per million
-- orders.
CREATE INDEX orders_customer_email_newest_idx ON orders (lower(customer_email), created_at DESC, checkout_session_id);
DROP INDEX orders_customer_email_lower_idx;
