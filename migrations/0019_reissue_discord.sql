-- A reissue carries the old key's Discord link to the new key.
--
-- Luarmor links a Discord ID to one key per project, and the old key keeps
-- its link when it is blacklisted, so the new key was made without one and
-- the buyer lost what the link gives (the shop's Discord bot, roles) until
-- support linked it again. discord_id is the ID the old key held, read from
-- Luarmor once before the old key is revoked: NULL not read yet, '' none.
-- The move (unlink from the old key, link to the new) follows the revoke.
ALTER TABLE key_reissues ADD COLUMN discord_id text;
