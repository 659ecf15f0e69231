-- resume_orders looks every minute for paid orders that were never
-- expanded into units and have no fulfil_order job (postgres.StalledOrders).
-- It read them through orders_open_idx, which holds every pending order:
-- at a million orders that is thousands of orders awaiting a delayed
-- payment, each fetched from the heap to find the few paid ones, every
-- minute on the leader. This index holds only the paid, complete orders
-- not expanded yet: an order enters it when its payment is recorded and
-- leaves it in the commit that records its units, so it stays a handful of
-- rows however long the shop runs.
CREATE INDEX orders_paid_unloaded_idx ON orders (updated_at)
    WHERE status = 'pending' AND items_loaded_at IS NULL AND session_status = 'complete'
      AND payment_status IN ('paid', 'no_payment_required');
