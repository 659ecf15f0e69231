-- What the buyer's order page tells beyond a key's status: whether a
-- subscription was cancelled while still running, and whether a key is
-- bound to a machine.

-- Stripe keeps a subscription cancelled at the period's end "active" until
-- that end: its keys run until then and are renewed no more. Recorded with
-- the subscription's status each time the subscription is read.
ALTER TABLE orders ADD COLUMN subscription_cancel_at_period_end boolean NOT NULL DEFAULT false;

-- Whether the key was bound to a machine (Luarmor's identifier, its HWID,
-- set) when the service last read it from Luarmor for its own work (its
-- writer, the expiry refresh, an HWID reset): NULL when never read, or
-- reset since. Never read for a page view.
ALTER TABLE ledger_keys
    ADD COLUMN hwid_bound      boolean,
    ADD COLUMN hwid_checked_at timestamptz;

-- The expiry refresh reads again, a few at a time, keys last seen unbound:
-- few next to every key ever sold.
CREATE INDEX ledger_keys_unbound_idx ON ledger_keys (hwid_checked_at) WHERE hwid_bound = false;
