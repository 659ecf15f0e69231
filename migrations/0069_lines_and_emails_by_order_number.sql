-- An order's line items and its keys emails name their order by its number
-- (orders.id, 8 bytes) instead of its Checkout Session ID (66 characters).
-- Both are kept for good, one or two rows an order, and each row held the
-- session ID twice: in the row and in its primary key's index. By number,
-- what stays of an order after retention is about 200 bytes smaller.
--
-- Nothing is lost: an order's number is unique, never changes and is never
-- reused (orders are kept for good), so (order number, line item) and
-- (order number, delivery) guard exactly what (session, line item) and
-- (session, delivery) guarded: a line recorded once per order, a keys
-- email sent once per delivery. Readers that know the session ID find the
-- number by orders' primary key, in the same statement.
--
-- The tables are rebuilt rather than altered in place, so the session IDs'
-- bytes go at once (a dropped column's bytes stay in each row until it is
-- rewritten), and their fixed-width columns come first, so no row pays for
-- alignment. Writes to the two tables wait while this runs, a few seconds
-- per million orders. A replica of an earlier version writes these tables
-- by session ID, which fails until it is replaced: migrate, then roll out.

ALTER TABLE order_lines RENAME TO order_lines_by_session;
ALTER TABLE order_lines_by_session RENAME CONSTRAINT order_lines_pkey TO order_lines_by_session_pkey;
ALTER TABLE order_emails RENAME TO order_emails_by_session;
ALTER TABLE order_emails_by_session RENAME CONSTRAINT order_emails_pkey TO order_emails_by_session_pkey;
ALTER TABLE order_emails_by_session RENAME CONSTRAINT order_emails_delivery_check TO order_emails_by_session_delivery_check;
ALTER TABLE order_emails_by_session RENAME CONSTRAINT order_emails_status_check TO order_emails_by_session_status_check;

-- What the shop sold in an order (see 0032).
CREATE TABLE order_lines (
    order_id     bigint NOT NULL REFERENCES orders (id),
    position     int    NOT NULL,
    quantity     int    NOT NULL,
    -- The price's unit_amount (NULL for a tiered or pay-what-you-want
    -- price) and the line's amount_total after discounts and taxes.
    unit_amount  bigint,
    amount_total bigint,
    line_item_id text   NOT NULL,
    price_id     text   NOT NULL,
    product_name text   NOT NULL DEFAULT '',
    description  text   NOT NULL DEFAULT '',
    currency     text,
    PRIMARY KEY (order_id, line_item_id)
);
INSERT INTO order_lines (order_id, position, quantity, unit_amount, amount_total, line_item_id, price_id,
                         product_name, description, currency)
SELECT o.id, l.position, l.quantity, l.unit_amount, l.amount_total, l.line_item_id, l.price_id,
       l.product_name, l.description, l.currency
FROM order_lines_by_session l JOIN orders o USING (checkout_session_id);
DROP TABLE order_lines_by_session;

-- Keys by email (see 0011): one row per email of an order's keys, what
-- makes its send job exactly-once where it can be.
CREATE TABLE order_emails (
    order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    delivery    int    NOT NULL CHECK (delivery >= 1),
    attempts    int    NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    -- queued: to send; sending: an SMTP conversation was started and its
    -- outcome is not recorded yet; sent; skipped: the order was no longer
    -- fulfilled when its turn came (a revocation); failed: the address
    -- can never receive mail.
    status      text   NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed')),
    -- The Message-ID header, the same for every attempt of this delivery.
    message_id  text   NOT NULL,
    last_error  text,
    PRIMARY KEY (order_id, delivery)
);
INSERT INTO order_emails (order_id, delivery, attempts, created_at, sent_at, status, message_id, last_error)
SELECT o.id, e.delivery, e.attempts, e.created_at, e.sent_at, e.status, e.message_id, e.last_error
FROM order_emails_by_session e JOIN orders o USING (checkout_session_id);
DROP TABLE order_emails_by_session;
