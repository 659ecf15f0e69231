-- The hourly expiry notices without writing to order_keys.
-- 0057 marked on each key the expiry it was last checked for. A run marks
-- about 70 keys an hour at a million orders, and each mark was an UPDATE
-- of the wide order_keys row that no HOT update can serve (its columns are
-- in partial index predicates): a new entry in each of its ten indexes,
-- most of them a page's first change since a checkpoint, so a full-page
-- write each. That was most of a run's 9 ms.
--
-- The keys still to check now wait in a narrow queue of their own, one row
-- per check and key: the buyer's email ('mail') and the shop's
-- key.expiring event ('event'), as the two have their own windows and
-- switches. A run takes (deletes) the rows of its check whose expiry falls
-- in its window, soonest first, and reads those keys as they are then
-- (postgres.ExpiringKeys); order_keys is only read.
--
-- The rows are written where the changes are, by triggers, so no writer
-- can forget one. A key is queued again when anything its notice depends
-- on changes:
-- - the key: it is delivered or its expiry moves (a renewal, a refund, a
--   purchase), it is banned or unbanned, or leaves its subscription
--   (status, user_key, recurring, ending, auth_expire):
--   order_keys_queue_expiry_checks;
-- - its order: fulfilled, address set, subscription cancelled or set to
--   cancel at the period's end: orders_queue_expiry_checks.
-- Only a key that is active, delivered and has an expiry still ahead is
-- queued. A run also drops the rows whose expiry has passed (no notice is
-- owed for an expiry gone), and a key that left that state since it was
-- queued is dropped by the run when its row comes due. So the queue holds
-- the keys that still run to an expiry: it is bounded by the shop's
-- current keys, not by its history. The once-per-expiry rows
-- (lifecycle_emails, outbound_events) stay the guard against a second
-- notice; the queue only decides what a run reads.
--
-- A writer only ever appends rows: it never waits for a run, nor a run for
-- it on the queue. (A run holds the rows it takes until it commits, and
-- its notices lock their key and order rows as their foreign keys ask; a
-- writer that waited for one of those rows while holding its key or order
-- would close a circle.) A key changed several times before its expiry
-- comes near has a row per change, each with the expiry it had then; a run
-- reads each key once, as it is then, and drops all its rows that came
-- due, so a row whose expiry has moved since only makes the run read the
-- key early and find nothing owed.
--
-- The queue is written on the sale's path, so each write is kept small: no
-- foreign key (it would lock the key's row for every row queued; a row of a
-- key since deleted reads as nothing and is dropped when it comes due), one
-- index besides the row's own, and a key queued once per transaction at an
-- expiry (a sale changes a key and its order several times in one commit).
CREATE TABLE expiry_checks_due (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_key_id bigint NOT NULL,
    check_kind   text   NOT NULL CHECK (check_kind IN ('mail', 'event')),
    -- The key's expiry when it was queued (unix seconds): what puts it in
    -- a run's window.
    auth_expire  bigint NOT NULL
);
CREATE INDEX expiry_checks_due_by_expiry_idx ON expiry_checks_due (check_kind, auth_expire, id);

CREATE FUNCTION queue_expiry_checks(key_id bigint, expire bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO expiry_checks_due (order_key_id, check_kind, auth_expire)
    SELECT key_id, c.kind, expire FROM (VALUES ('event'), ('mail')) c (kind)
    WHERE NOT EXISTS (SELECT 1 FROM expiry_checks_due q
                      WHERE q.check_kind = c.kind AND q.auth_expire = expire AND q.order_key_id = key_id
                        AND q.xmin = pg_current_xact_id()::xid);
$$;

CREATE FUNCTION order_keys_queue_expiry_checks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM queue_expiry_checks(NEW.id, NEW.auth_expire);
    RETURN NULL;
END;
$$;

CREATE TRIGGER order_keys_queue_expiry_checks_on_insert AFTER INSERT ON order_keys
    FOR EACH ROW
    WHEN (NEW.status = 'active' AND NEW.user_key IS NOT NULL AND NEW.auth_expire > extract(epoch FROM now()))
    EXECUTE FUNCTION order_keys_queue_expiry_checks();

CREATE TRIGGER order_keys_queue_expiry_checks_on_update
    AFTER UPDATE OF status, user_key, recurring, ending, auth_expire ON order_keys
    FOR EACH ROW
    WHEN (NEW.status = 'active' AND NEW.user_key IS NOT NULL AND NEW.auth_expire > extract(epoch FROM now()) AND
          (OLD.status, OLD.user_key, OLD.recurring, OLD.ending, OLD.auth_expire) IS DISTINCT FROM
          (NEW.status, NEW.user_key, NEW.recurring, NEW.ending, NEW.auth_expire))
    EXECUTE FUNCTION order_keys_queue_expiry_checks();

-- An order change queues its keys only when it can make a notice owed:
-- the order is fulfilled after it.
CREATE FUNCTION orders_queue_expiry_checks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM queue_expiry_checks(k.id, k.auth_expire) FROM (
        SELECT id, auth_expire FROM order_keys
         WHERE checkout_session_id = NEW.checkout_session_id AND status = 'active'
           AND user_key IS NOT NULL AND auth_expire > extract(epoch FROM now())
         ORDER BY id) k;
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_queue_expiry_checks
    AFTER UPDATE OF status, customer_email, subscription_status, subscription_cancel_at_period_end ON orders
    FOR EACH ROW
    WHEN (NEW.status = 'fulfilled' AND
          (OLD.status, OLD.customer_email, OLD.subscription_status, OLD.subscription_cancel_at_period_end) IS DISTINCT FROM
          (NEW.status, NEW.customer_email, NEW.subscription_status, NEW.subscription_cancel_at_period_end))
    EXECUTE FUNCTION orders_queue_expiry_checks();

-- The keys 0057 had not checked for their current expiry yet, per check.
-- Writes to order_keys and orders wait from the triggers' creation to the
-- migration's commit, so none falls between the fill and the triggers: a
-- scan of the keys, a few seconds per million.
INSERT INTO expiry_checks_due (order_key_id, check_kind, auth_expire)
SELECT id, c.kind, auth_expire
FROM order_keys, LATERAL (VALUES ('event', expiry_event_checked), ('mail', expiry_mail_checked)) c (kind, checked)
WHERE status = 'active' AND user_key IS NOT NULL AND auth_expire > extract(epoch FROM now())
  AND c.checked IS DISTINCT FROM auth_expire;

DROP TRIGGER order_keys_expiry_recheck ON order_keys;
DROP TRIGGER orders_expiry_recheck ON orders;
DROP FUNCTION order_keys_expiry_recheck();
DROP FUNCTION orders_expiry_recheck();
DROP INDEX order_keys_expiry_mail_due_idx;
DROP INDEX order_keys_expiry_event_due_idx;
ALTER TABLE order_keys DROP COLUMN expiry_mail_checked, DROP COLUMN expiry_event_checked;
