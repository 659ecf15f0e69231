-- Find my keys: a buyer asks for a link by email and reads their orders
-- with it.

-- The key that signs the links' tokens: one row, created on first use
-- (INSERT ... ON CONFLICT DO NOTHING), so every replica signs and checks
-- with the same key and no setting is needed.
CREATE TABLE key_lookup_signing_key (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret     bytea NOT NULL CHECK (length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Link requests per address over the last hour, across replicas. The
-- address is kept as a SHA-256 digest of its normalised form: anyone may
-- type any address into the form, and the table need not hold them.
CREATE TABLE key_lookup_requests (
    email_digest      bytea PRIMARY KEY,
    -- When each request of the last hour was accepted, oldest first.
    accepted_at       timestamptz[] NOT NULL DEFAULT '{}',
    last_requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_lookup_requests_last_idx ON key_lookup_requests (last_requested_at);

-- Orders are found by their buyer's address (case-insensitively) and by
-- their Stripe customer.
CREATE INDEX orders_customer_email_lower_idx ON orders (lower(customer_email)) WHERE customer_email <> '';
CREATE INDEX orders_customer_id_idx ON orders (customer_id) WHERE customer_id <> '';
