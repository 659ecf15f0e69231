-- The delivery log's look-ups, in the console: an order's page lists the
-- events sent about it (by outbound_events.order_id, which had no index:
-- every event of every order was read), and the delivery log is filtered
-- by status, most often to find the few failed or pending deliveries among
-- the delivered ones, newest first. Deleting an order also sets its
-- events' order_id to NULL through the first index.
--
-- Built in the migration's transaction, not CONCURRENTLY (see 0042): the
-- tables are small beside the orders', a second or so per million events.
CREATE INDEX outbound_events_order_idx ON outbound_events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX outbound_deliveries_status_idx ON outbound_deliveries (status, id DESC);
