-- What a key's writer is about to send, recorded before it sends.
--
-- A writer that dies after its request to Luarmor and before the commit
-- that records what it applied leaves Luarmor holding values the applied
-- state does not know. Two of the writer's decisions read that state:
-- time Luarmor holds beyond the ledger counts as given outside it (the
-- seller's own edit) unless the applied state says the service gave it,
-- and a ban is lifted only if the applied state says the service made it.
-- Had the ledger changed before the retry (the ban lifted, the renewal
-- refunded), the retry kept the ban, or the refunded time.
--
-- So a writer records, under its lease and before its first request, the
-- expiry and the ban it is about to send. A value Luarmor holds that a
-- recorded intent names is the service's own. The record of what was
-- applied clears them. A writer that dies before its record leaves them,
-- and the next writer adds its own to them: until a record, any of them
-- may be what Luarmor holds.
--
-- intent_expires: the expiries sent and not yet recorded (-1: never
-- expires); NULL when none. intent_ban: a ban was sent and not yet
-- recorded. intent_unban: an unban was sent and not yet recorded (no
-- decision reads it, but while it is pending the next writer reads the
-- key from Luarmor: a ban back in the ledger with the reason last
-- recorded would otherwise look applied). No column is indexed, so the
-- writes stay HOT updates.
ALTER TABLE ledger_keys
    ADD COLUMN intent_expires bigint[],
    ADD COLUMN intent_ban boolean NOT NULL DEFAULT false,
    ADD COLUMN intent_unban boolean NOT NULL DEFAULT false;
