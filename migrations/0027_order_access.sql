-- Revocable order access. A buyer reaches an order by its Checkout Session
-- ID (Stripe's success_url redirect names it) or by a signed link naming
-- the order's number and an access generation. Support rotates an order's
-- access when a link leaked: the session ID stops granting anything and
-- the generation moves on, so every link signed before stops too.
ALTER TABLE orders
    ADD COLUMN access_generation bigint NOT NULL DEFAULT 1,
    -- When support revoked the session ID's access; NULL while it grants.
    ADD COLUMN session_access_revoked_at timestamptz;

-- A reissue asked with rotation owes the buyer an email with the fresh
-- link, sent once the new key is delivered (or the reissue failed), not
-- before: the email shows the keys as they are then. Cleared in the commit
-- that queues that email, so it is queued once.
ALTER TABLE key_reissues ADD COLUMN owes_link_email boolean NOT NULL DEFAULT false;
