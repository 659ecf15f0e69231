-- Job arguments name orders by number and find-my-keys requests by a row,
-- never by Checkout Session ID (a bearer credential for an order's keys)
-- nor by email address: the River UI shows arguments to whoever has its
-- login, and river_job keeps them as long as jobs are retained.

-- A find-my-keys request whose email is still to be sent. Its job names
-- the row; the row holds the address (normalised) until the email is sent
-- or given up, then is deleted, and the periodic clean-up deletes any left
-- past the hour after which a link is no longer sent.
CREATE TABLE IF NOT EXISTS key_lookup_emails (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL CHECK (email <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS key_lookup_emails_created_idx ON key_lookup_emails (created_at);

-- Find-my-keys requests counted by who asks, beside key_lookup_requests
-- (counted per address whoever asks): 'address_client' counts one address
-- asked for by one client (an IPv4 address or an IPv6 /64), 'network' one
-- client network (an IPv4 address or an IPv6 /48) whatever the address.
-- digest is an HMAC under a key derived from key_lookup_signing_key, so
-- the table holds no client address, nor anything a guess of 2^32 IPv4
-- addresses could reverse.
CREATE TABLE IF NOT EXISTS key_lookup_client_requests (
    scope             text NOT NULL CHECK (scope IN ('address_client', 'network')),
    digest            bytea NOT NULL,
    -- When each request of the last hour was accepted, oldest first.
    accepted_at       timestamptz[] NOT NULL DEFAULT '{}',
    last_requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, digest)
);
CREATE INDEX IF NOT EXISTS key_lookup_client_requests_last_idx ON key_lookup_client_requests (last_requested_at);

-- Applying this file again changes nothing more (a replica of the previous
-- version may still queue jobs of the old form during a rolling deploy; the
-- workers read both forms, and this file can be run again afterwards to
-- rewrite them).

-- Jobs queued before this version, in every state (finished ones too: the
-- River UI shows them as long as they are retained), take the new form:
--   fulfil_order          {checkout_session_id}           -> {order_id, order_ref}
--   send_order_email      {checkout_session_id, delivery} -> {order_id, order_ref, delivery}
--   send_key_lookup_email {email}                         -> {request_id}
-- The unique keys of the first two are recomputed as River v0.51 computes
-- them for the new form: sha256 of "&kind=<kind>&args=<the unique fields,
-- sorted, compact>" (order_id, and delivery), so a copy queued after this
-- still finds the rewritten job in flight. A job whose order is gone keeps
-- nothing of the ID either: its order_id is 0, it has no unique key, and
-- its worker cancels it.
CREATE OR REPLACE FUNCTION pg_temp.order_number(session_id text) RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT COALESCE((SELECT id FROM orders WHERE checkout_session_id = session_id), 0) $$;
CREATE OR REPLACE FUNCTION pg_temp.order_ref(session_id text) RETURNS text LANGUAGE sql IMMUTABLE AS
    $$ SELECT 'ord_' || encode(substring(sha256(convert_to(session_id, 'UTF8')) FROM 1 FOR 6), 'hex') $$;

UPDATE river_job SET
    args = jsonb_build_object('order_id', pg_temp.order_number(args->>'checkout_session_id'),
        'order_ref', pg_temp.order_ref(args->>'checkout_session_id')),
    unique_key = CASE WHEN unique_key IS NULL OR pg_temp.order_number(args->>'checkout_session_id') = 0 THEN NULL
        ELSE sha256(convert_to('&kind=fulfil_order&args={"order_id":'
            || pg_temp.order_number(args->>'checkout_session_id') || '}', 'UTF8')) END
WHERE kind = 'fulfil_order' AND args ? 'checkout_session_id';

UPDATE river_job SET
    args = jsonb_build_object('order_id', pg_temp.order_number(args->>'checkout_session_id'),
        'order_ref', pg_temp.order_ref(args->>'checkout_session_id'), 'delivery', args->'delivery'),
    unique_key = CASE WHEN unique_key IS NULL OR pg_temp.order_number(args->>'checkout_session_id') = 0 THEN NULL
        ELSE sha256(convert_to('&kind=send_order_email&args={"delivery":' || (args->'delivery')::text
            || ',"order_id":' || pg_temp.order_number(args->>'checkout_session_id') || '}', 'UTF8')) END
WHERE kind = 'send_order_email' AND args ? 'checkout_session_id';

-- A waiting find-my-keys job's address moves into a request row of its
-- own, with the job's creation time, so the hour after which no link is
-- sent still counts from the request; a finished job's address is dropped.
DO $$
DECLARE
    j record;
    request bigint;
BEGIN
    FOR j IN SELECT id, state, args->>'email' AS email, created_at FROM river_job
             WHERE kind = 'send_key_lookup_email' AND args ? 'email' ORDER BY id LOOP
        request := 0;
        IF j.email <> '' AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled') THEN
            INSERT INTO key_lookup_emails (email, created_at) VALUES (j.email, j.created_at) RETURNING id INTO request;
        END IF;
        UPDATE river_job SET args = jsonb_build_object('request_id', request) WHERE id = j.id;
    END LOOP;
END $$;

DROP FUNCTION pg_temp.order_number(text);
DROP FUNCTION pg_temp.order_ref(text);
