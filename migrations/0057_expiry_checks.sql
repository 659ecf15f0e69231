-- The hourly expiry notices without reading every key in the window.
-- queue_expiry_notices read, every hour, every key expiring within
-- MAIL_EXPIRY_NOTICE_DAYS and checked each against the notices recorded
-- (92 ms at a million orders, growing with the shop): most keys in the
-- window renew, and were read again every hour to find again that nothing
-- was owed.
--
-- Each key now remembers the expiry it was last checked for: once for the
-- buyer's email (expiry_mail_checked) and once for the shop's key.expiring
-- event (expiry_event_checked), as the two have their own windows and
-- switches. A partial index per check holds only the keys not checked for
-- their current expiry, so a run reads the keys that entered its window
-- since the last run and the keys whose state changed, however many sit in
-- the window. A key is checked again when anything its notice depends on
-- changes:
-- - its expiry: auth_expire no longer equals the expiry checked (a renewal,
--   a refund or a purchase moved it, or it was delivered late);
-- - the key itself (status, user_key, recurring, ending: a key leaving its
--   subscription): order_keys_expiry_recheck clears both checks before the
--   row is written;
-- - its order (status, address, subscription status, cancel at period
--   end): orders_expiry_recheck clears the checks of the order's keys.
-- The once-per-expiry rows (lifecycle_emails, outbound_events) stay the
-- guard against a second notice; these columns only decide what to read.
ALTER TABLE order_keys
    ADD COLUMN expiry_mail_checked  bigint,
    ADD COLUMN expiry_event_checked bigint;

-- Built in the migration's transaction, not CONCURRENTLY (see 0042): writes
-- to order_keys wait while they are built, a few seconds per million keys.
-- They replace order_keys_expiring_idx (every key with an expiry), which
-- only the expiry notices read.
DROP INDEX order_keys_expiring_idx;
CREATE INDEX order_keys_expiry_mail_due_idx ON order_keys (auth_expire)
    WHERE status = 'active' AND auth_expire > 0 AND user_key IS NOT NULL
      AND expiry_mail_checked IS DISTINCT FROM auth_expire;
CREATE INDEX order_keys_expiry_event_due_idx ON order_keys (auth_expire)
    WHERE status = 'active' AND auth_expire > 0 AND user_key IS NOT NULL
      AND expiry_event_checked IS DISTINCT FROM auth_expire;

CREATE FUNCTION order_keys_expiry_recheck() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.expiry_mail_checked := NULL;
    NEW.expiry_event_checked := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER order_keys_expiry_recheck BEFORE UPDATE OF status, user_key, recurring, ending ON order_keys
    FOR EACH ROW
    WHEN ((OLD.status, OLD.user_key, OLD.recurring, OLD.ending) IS DISTINCT FROM
          (NEW.status, NEW.user_key, NEW.recurring, NEW.ending))
    EXECUTE FUNCTION order_keys_expiry_recheck();

-- An order change clears the checks of its keys only when it can make a
-- notice owed: the order is fulfilled after it. The check that reads the
-- order holds it FOR SHARE (postgres.ExpiringKeys), so a change committed
-- while a key is being checked waits for that check and clears it after.
CREATE FUNCTION orders_expiry_recheck() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE order_keys SET expiry_mail_checked = NULL, expiry_event_checked = NULL
     WHERE checkout_session_id = NEW.checkout_session_id
       AND (expiry_mail_checked IS NOT NULL OR expiry_event_checked IS NOT NULL);
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_expiry_recheck
    AFTER UPDATE OF status, customer_email, subscription_status, subscription_cancel_at_period_end ON orders
    FOR EACH ROW
    WHEN (NEW.status = 'fulfilled' AND
          (OLD.status, OLD.customer_email, OLD.subscription_status, OLD.subscription_cancel_at_period_end) IS DISTINCT FROM
          (NEW.status, NEW.customer_email, NEW.subscription_status, NEW.subscription_cancel_at_period_end))
    EXECUTE FUNCTION orders_expiry_recheck();
