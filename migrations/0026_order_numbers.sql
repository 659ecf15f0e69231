-- Every order gets a number: what job arguments, signed links and audit
-- rows name it by. A Checkout Session ID is a bearer credential for the
-- order's keys, so it stays out of anything an operator tool shows or a
-- proxy logs; the number grants nothing by itself.
ALTER TABLE orders ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE orders ADD CONSTRAINT orders_id_key UNIQUE (id);
