-- What the buyer paid and for what, as Stripe's Checkout Session and its
-- line items say, for the order page, the order API and the emails. Every
-- column is NULL for orders recorded before: they render without an amount.
ALTER TABLE orders
    -- amount_total in the minor unit of currency (cents; whole yen), as
    -- Stripe gives it; currency its ISO code in lower case.
    ADD COLUMN amount_total bigint,
    ADD COLUMN currency     text,
    -- When the buyer placed the order: the Checkout Session's created.
    ADD COLUMN placed_at    timestamptz,
    -- Stripe's receipt of the payment (the charge's receipt_url), read
    -- with the session when the order is fulfilled.
    ADD COLUMN receipt_url  text;

-- One row per line item of the session, recorded when the items are read
-- for fulfilment: the product as it was sold (the catalog's name and
-- description then, else the name Stripe's line item carries), the
-- quantity and what it cost.
CREATE TABLE order_lines (
    checkout_session_id text NOT NULL REFERENCES orders (checkout_session_id),
    line_item_id        text NOT NULL,
    position            int  NOT NULL,
    price_id            text NOT NULL,
    product_name        text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    quantity            int  NOT NULL,
    -- The price's unit_amount (NULL for a tiered or pay-what-you-want
    -- price) and the line's amount_total after discounts and taxes.
    unit_amount         bigint,
    amount_total        bigint,
    currency            text,
    PRIMARY KEY (checkout_session_id, line_item_id)
);
