-- A stock of pre-made keys per price (catalog `stock: N`), sold instantly.
--
-- A key created with key_days starts its timer at first use, so one made
-- in a quiet hour is as good as one made at the sale. The refill job makes
-- stock keys one at a time from spare budget; a purchase takes one in the
-- transaction that records its delivery.

-- One row per stock key, from the moment its create is planned:
--   pending  a create may be on its way; create_lease_* and create_attempts
--            work as on order_keys (postgres.ClaimCreate), so a refill cut
--            off mid-call is followed by a look-up by reference, never by a
--            second create, and a pending row counts toward N;
--   ready    the key exists in Luarmor, unsold;
--   sold     delivered as order_key_id's key (order_keys.user_key holds it
--            from then on, so revocations treat it like any made key).
CREATE TABLE stock_keys (
    id                 bigserial PRIMARY KEY,
    price_id           text NOT NULL,
    project_id         text NOT NULL,
    key_days           int  NOT NULL CHECK (key_days >= 0),
    -- Written into the key's Luarmor note ("stock ref:fk_…") before the
    -- create is sent.
    reference          text NOT NULL UNIQUE,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'sold')),
    user_key           text,
    create_attempts    int NOT NULL DEFAULT 0,
    create_lease_until timestamptz,
    create_lease_owner text,
    order_key_id       bigint UNIQUE REFERENCES order_keys (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    made_at            timestamptz,
    sold_at            timestamptz,
    CHECK ((status = 'pending') = (user_key IS NULL)),
    CHECK ((status = 'sold') = (order_key_id IS NOT NULL))
);
CREATE UNIQUE INDEX stock_keys_user_key_idx ON stock_keys (project_id, user_key) WHERE user_key IS NOT NULL;
-- What a sale scans: the oldest ready key of a (project, key_days).
CREATE INDEX stock_keys_ready_idx ON stock_keys (project_id, key_days, id) WHERE status = 'ready';
-- What a refill counts: the unsold keys of a price.
CREATE INDEX stock_keys_unsold_idx ON stock_keys (price_id) WHERE status <> 'sold';

-- luarmor_take_spare_slot grants a slot to the stock class (internal/budget
-- ClassStock) only from spare budget, or says in how many milliseconds to
-- ask again. It never publishes demand, so a waiting stock request never
-- makes another replica wait or pace. A slot is granted only when
--   * no replica has published demand (every published rank is more
--     urgent than stock), and the budget is not paused after a 429;
--   * after the grant fewer than COUNT/4 slots are busy: below that line
--     luarmor_take_slot (0006) grants a lone request at once, unpaced, so
--     a delivery arriving next finds its slot free and waits for nothing;
--   * no other stock call was granted in the last WINDOW/COUNT, so stock
--     never bursts.
-- The calling replica has nothing more urgent waiting (its waiters are
-- ordered by class), so its own published demand is cleared.
CREATE FUNCTION luarmor_take_spare_slot(
    p_replica text, p_class text, p_count int, p_window interval, p_max_call interval)
RETURNS TABLE (call_id bigint, retry_after_ms double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz;
    v_paused timestamptz;
    v_busy   int;
    v_retry  interval := p_window / p_count;
    v_id     bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7291873362);
    v_now := clock_timestamp();
    DELETE FROM luarmor_demand d WHERE d.replica = p_replica;

    SELECT b.paused_until INTO v_paused FROM luarmor_budget b WHERE b.id = 1;
    IF v_paused > v_now THEN
        RETURN QUERY SELECT NULL::bigint, (extract(epoch FROM v_paused - v_now) * 1000)::double precision;
        RETURN;
    END IF;

    SELECT count(*) INTO v_busy
      FROM luarmor_calls c
     WHERE c.taken_at > v_now - p_window - p_max_call
       AND LEAST(COALESCE(c.finished_at, 'infinity'), c.taken_at + p_max_call) + p_window > v_now;

    IF (v_busy + 1) * 4 < p_count
       AND NOT EXISTS (SELECT 1 FROM luarmor_demand d WHERE d.expires_at > v_now)
       AND NOT EXISTS (SELECT 1 FROM luarmor_calls c WHERE c.class = p_class AND c.taken_at > v_now - v_retry) THEN
        INSERT INTO luarmor_calls (taken_at, class, replica) VALUES (v_now, p_class, p_replica)
        RETURNING id INTO v_id;
        RETURN QUERY SELECT v_id, NULL::double precision;
        RETURN;
    END IF;
    RETURN QUERY SELECT NULL::bigint, (extract(epoch FROM v_retry) * 1000)::double precision;
END
$$;
