-- Every Luarmor request made for an order or a key, for the console's
-- timeline of an order: which endpoint, Luarmor's answer, how long it took
-- and which job attempt sent it. luarmor_calls holds the budget's slots and
-- knows nothing of orders; this table is written once per request, after
-- its slot is freed, and a failure to write it never fails the request.
-- It holds a key's last characters only, never a whole key or the API key.
CREATE TABLE luarmor_call_log (
    id          bigserial PRIMARY KEY,
    sent_at     timestamptz NOT NULL,
    took_ms     int NOT NULL,
    -- The route template ("POST /v3/projects/{project_id}/users").
    endpoint    text NOT NULL,
    -- Luarmor's HTTP status; NULL when no answer arrived.
    status      int,
    -- '' for a success, else the failure's class: a luarmor.Code
    -- ('server_error', 'not_found', ...), 'rate_limited', 'timeout',
    -- 'connection_lost' (after the request was sent) or 'not_sent'.
    error_class text NOT NULL,
    -- No foreign key: rows are kept and removed by age, and never hold an
    -- order back.
    order_id    bigint,
    key_tail    text NOT NULL DEFAULT '',
    job_id      bigint,
    job_kind    text NOT NULL DEFAULT '',
    job_attempt int
);
-- The console reads an order's calls in time order.
CREATE INDEX luarmor_call_log_order_idx ON luarmor_call_log (order_id, sent_at) WHERE order_id IS NOT NULL;
-- Rows are appended in time order: a small BRIN index serves removal by age.
CREATE INDEX luarmor_call_log_sent_at_idx ON luarmor_call_log USING brin (sent_at);
