-- Buyers waiting on the order API are woken by PostgreSQL: every change a
-- waiting buyer can see (the order's status, a key delivered or changed)
-- notifies channel order_changed with the Checkout Session ID, after the
-- change commits, whichever replica made it. Notifications of one
-- transaction with the same ID arrive once.
CREATE FUNCTION notify_order_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_changed', NEW.checkout_session_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_notify_status
    AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_order_changed();

CREATE TRIGGER order_keys_notify_delivery
    AFTER UPDATE OF status, user_key ON order_keys
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.user_key IS DISTINCT FROM NEW.user_key)
    EXECUTE FUNCTION notify_order_changed();
