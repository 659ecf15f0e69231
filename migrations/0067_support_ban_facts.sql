-- Support's blacklist, unban and revocation of a key become facts of the
-- key's ledger, recorded in the transaction of the request and applied by
-- the key's one writer (jobs.SyncKeyWorker).
--
-- Until now the support job sent the ban, unban or delete to Luarmor itself,
-- beside the writer: two writers of one key's ban, each with its own crash
-- behaviour. A support unban could lift a ban a payment still held (a
-- dispute of another purchase sharing the key) that the ledger then took
-- for applied, and a ban cut off between Luarmor's answer and its commit
-- was sent again. The ledger already knew that support's ban held
-- (order_keys.support_ban, migration 0018), but not the reason shown to the
-- key's user, nor whether the revocation deletes the key (REFUND_ACTION=
-- delete): both are what the writer must send, so both are facts now.
ALTER TABLE order_keys
    ADD COLUMN support_ban_reason text NOT NULL DEFAULT '',
    ADD COLUMN support_delete boolean NOT NULL DEFAULT false;

-- Keys support banned or revoked before this: the reason of the newest
-- blacklist, revoke or reissue the audit log recorded for the unit (a
-- reissue revokes the key it replaces), else that action's default; a key
-- left deleted was revoked under REFUND_ACTION=delete.
UPDATE order_keys k SET
    support_ban_reason = COALESCE(NULLIF(a.reason, ''),
        CASE a.action WHEN 'revoke' THEN 'Revoked by support'
                      WHEN 'reissue' THEN 'Replaced by a new key' END,
        (SELECT r.reason FROM key_reissues r WHERE r.old_key_id = k.id ORDER BY r.id DESC LIMIT 1),
        'Blacklisted by support'),
    support_delete = k.status = 'deleted'
FROM order_keys u
LEFT JOIN LATERAL (
    SELECT s.action, s.reason FROM support_audit s
    WHERE s.action IN ('blacklist', 'revoke', 'reissue') AND s.detail->>'order_key_id' = u.id::text
    ORDER BY s.id DESC LIMIT 1
) a ON true
WHERE u.id = k.id AND k.support_ban;

-- The support job sent those bans and deletes itself: the ledger records
-- them as applied, so the writer lifts a ban support lifts later (it lifts
-- only a ban it knows it made) and sends nothing for a key already so.
UPDATE ledger_keys l SET applied_deleted = true
WHERE NOT l.applied_deleted AND EXISTS (
    SELECT 1 FROM order_keys k WHERE k.project_id = l.project_id AND k.user_key = l.user_key
      AND k.support_ban AND k.support_delete);
UPDATE ledger_keys l SET applied_ban = 'banned', applied_ban_reason = s.support_ban_reason
FROM (
    SELECT DISTINCT ON (project_id, user_key) project_id, user_key, support_ban_reason FROM order_keys
    WHERE support_ban ORDER BY project_id, user_key, id
) s
WHERE s.project_id = l.project_id AND s.user_key = l.user_key AND NOT l.applied_deleted
  AND EXISTS (SELECT 1 FROM order_keys k WHERE k.project_id = l.project_id AND k.user_key = l.user_key
              AND k.support_ban AND k.status = 'blacklisted');

-- A change of the reason or of the deletion is a change of the key's
-- ledger, as one of support_ban is (migration 0022). Replaced after the
-- updates above, which change nothing the writer must send.
DROP TRIGGER order_keys_bump_ledger ON order_keys;
CREATE TRIGGER order_keys_bump_ledger
    AFTER UPDATE OF user_key, support_ban, support_ban_reason, support_delete, suspended ON order_keys
    FOR EACH ROW WHEN (NEW.user_key IS NOT NULL)
    EXECUTE FUNCTION bump_ledger_of_unit();
