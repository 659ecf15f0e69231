-- Every support action, whoever took it and however (the admin API, the
-- admin login in a browser, the River UI, the CLI): who, when, what, on
-- which order or key, and why. Rows are written in the transaction that
-- queues the action, so an action without its row never happens, and they
-- are never updated. A key is named by its last characters only and an
-- order by its number and reference: the log grants nothing.
CREATE TABLE support_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CHECK (actor <> ''),
    action      text NOT NULL CHECK (action <> ''),
    order_id    bigint,
    order_ref   text NOT NULL DEFAULT '',
    key_tail    text NOT NULL DEFAULT '',
    reason      text NOT NULL DEFAULT '',
    -- What else the action names (a revocation, a River job), as JSON.
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX support_audit_order_idx ON support_audit (order_id, id) WHERE order_id IS NOT NULL;
