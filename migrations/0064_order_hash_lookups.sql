-- Three look-ups of orders compare a long ID for equality only, never a
-- range or an order: the ord_ reference (`orders show ord_…`, the console's
-- search), the payment intent of a refund or a dispute, and a customer's
-- orders (the shop's listings, the standing of a buyer, whose few orders
-- are sorted as they are read). As in 0059, a hash index stores a 4-byte
-- hash of the key instead of the key, for every order kept for good.
--
-- Built in the migration's transaction (see 0042): writes to orders wait
-- while they are built, a few seconds per million orders.
CREATE INDEX orders_ref_hash_idx ON orders USING hash (order_ref(checkout_session_id));
DROP INDEX orders_ref_idx;

CREATE INDEX orders_payment_intent_hash_idx ON orders USING hash (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
DROP INDEX orders_payment_intent_id_idx;

CREATE INDEX orders_customer_hash_idx ON orders USING hash (customer_id) WHERE customer_id <> '';
DROP INDEX orders_customer_id_idx;
