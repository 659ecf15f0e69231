-- Discord IDs are claims, not proof: what became of each unit's Discord
-- link, and taking back the days a refunded or disputed purchase added to
-- a key the customer already had.

ALTER TABLE order_keys
    -- none: no Discord ID for this unit (none given, or it went to the
    -- order's first unit in the project); linked: the key was created with
    -- (or extended on) the buyer's Discord ID; in_use: the ID already had
    -- someone else's key, so this key was made without it; invalid: Luarmor
    -- refused the ID, so this key was made without it. in_use and invalid
    -- are recorded before the create that leaves the ID out, so a retry
    -- never sends it again.
    ADD COLUMN discord_link text NOT NULL DEFAULT 'none'
        CHECK (discord_link IN ('none', 'linked', 'in_use', 'invalid')),
    -- For an extended_existing unit: the key's expiry without this
    -- purchase (unix seconds), computed with extend_target; a revocation
    -- never sets the key below it.
    ADD COLUMN extend_from bigint,
    -- The expiry a revocation of the purchase sets on the extended key,
    -- computed once, so a retry sends the same absolute value.
    ADD COLUMN revert_target bigint;

-- reverted: the purchase only added days to a key of an earlier purchase,
-- and a revocation took those days back; the key itself is not banned.
ALTER TABLE order_keys DROP CONSTRAINT order_keys_status_check;
ALTER TABLE order_keys ADD CONSTRAINT order_keys_status_check
    CHECK (status IN ('pending', 'active', 'failed', 'blacklisted', 'deleted', 'reverted'));
