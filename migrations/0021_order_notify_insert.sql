-- A buyer's page may ask for an order before its webhook has recorded it.
-- During a sales spike, when the process's Stripe look-ups are all spent,
-- such a request waits for the order to appear instead of being told to
-- come back later: the order's first record notifies order_changed too.
CREATE TRIGGER orders_notify_insert
    AFTER INSERT ON orders
    FOR EACH ROW
    EXECUTE FUNCTION notify_order_changed();
