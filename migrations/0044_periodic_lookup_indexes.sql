-- Look-ups made by a person or by periodic jobs that read rows among every
-- order ever placed, each measured at a million orders before:
--
-- * the admin search by Discord ID read all orders (200 ms);
-- * resume_orders, every minute on the leader, looks for pending orders
--   never expanded, and the console lists the pending and failed orders,
--   newest first: both read all orders (322 ms a run). A partial index
--   holds only the orders in those two states, few at any time;
-- * the console's figures of the day and of the week count the orders
--   placed and the keys delivered since a moment, and doctor counts the
--   keys delivered in the last 24 hours, and per stocked price the units
--   sold and made to order (425 and 861 ms): indexes by time read only
--   that window;
-- * watch_subscriptions, every 15 minutes, looks for subscription keys
--   whose expiry comes soon: it now compares expire_target as the bigint it
--   is (postgres.SubscriptionsLapsingSoon), so an index on it serves;
-- * the stock check counts a price's keys ready or being made, its sales
--   and its refills since a moment: they counted every stock key ever sold
--   (120 ms);
-- * a paid invoice finds the revocations of that invoice (renewal grants).
--
-- Built in the migration's transaction, not CONCURRENTLY (see 0042):
-- writes to each table wait while its indexes are built, a few seconds per
-- million orders in all.
CREATE INDEX orders_discord_id_idx ON orders (discord_id) WHERE discord_id <> '';
CREATE INDEX orders_open_idx ON orders (status, created_at) WHERE status IN ('pending', 'failed');
CREATE INDEX orders_created_at_idx ON orders (created_at);
CREATE INDEX order_keys_delivered_at_idx ON order_keys (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX order_keys_subscription_expiry_idx ON order_keys (expire_target)
    WHERE recurring AND NOT ending AND status = 'active' AND expire_target IS NOT NULL;
CREATE INDEX stock_keys_unsold_terms_idx ON stock_keys (project_id, key_days) WHERE status <> 'sold';
CREATE INDEX stock_keys_sold_at_idx ON stock_keys (price_id, sold_at) WHERE sold_at IS NOT NULL;
CREATE INDEX stock_keys_made_at_idx ON stock_keys (price_id, made_at) WHERE made_at IS NOT NULL;
CREATE INDEX revocations_invoice_idx ON revocations (invoice_id) WHERE invoice_id IS NOT NULL;
