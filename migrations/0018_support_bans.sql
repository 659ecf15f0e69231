-- A ban or revocation asked for by support holds until support lifts it.
--
-- The automatic unbans (a dispute won, an inquiry closed, a refund
-- cancelled: unban_key) lifted every blacklisted key of the payment,
-- including a key support had banned for its own reasons (sharing, abuse)
-- before or during the dispute: winning the dispute handed the key back.
-- support_ban marks those keys; only a support unban clears it.
ALTER TABLE order_keys ADD COLUMN support_ban boolean NOT NULL DEFAULT false;
