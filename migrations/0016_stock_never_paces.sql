-- Stock calls never pace a paying request.
--
-- luarmor_take_spare_slot (0015) grants a stock call only while no request
-- waits anywhere and fewer than COUNT/4 slots are busy. But 0006's pacing
-- counted every call: a stock call granted a moment before a burst of
-- deliveries made the first paced delivery wait up to WINDOW/COUNT behind
-- it, and the stock's busy slots brought pacing on sooner. Now pacing (the
-- COUNT/4 threshold and the one-per-WINDOW/COUNT spacing) counts only the
-- calls of paying classes; the hard limit still counts every call, so the
-- fleet never exceeds COUNT per window. What the stock can still take from
-- a burst is the slots it already holds, fewer than COUNT/4 of a window,
-- and a burst of sales of a stocked price needs no slot at all.

CREATE OR REPLACE FUNCTION luarmor_take_slot(
    p_replica text, p_rank int, p_next_rank int, p_class text,
    p_count int, p_window interval, p_max_call interval)
RETURNS TABLE (call_id bigint, retry_after_ms double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz;
    v_paused timestamptz;
    v_busy   int;
    v_paying int;
    v_next   timestamptz;
    v_paced  timestamptz;
    v_id     bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7291873362);
    v_now := clock_timestamp();

    SELECT b.paused_until INTO v_paused FROM luarmor_budget b WHERE b.id = 1;
    IF v_paused > v_now THEN
        INSERT INTO luarmor_demand AS d (replica, top_rank, expires_at)
        VALUES (p_replica, p_rank, v_paused + interval '5 seconds')
        ON CONFLICT (replica) DO UPDATE SET top_rank = EXCLUDED.top_rank, expires_at = EXCLUDED.expires_at;
        RETURN QUERY SELECT NULL::bigint, (extract(epoch FROM v_paused - v_now) * 1000)::double precision;
        RETURN;
    END IF;

    -- Busy slots. An in-flight call is assumed to finish now (the earliest
    -- it can), so v_next is a lower bound on when a slot frees.
    SELECT count(*), count(*) FILTER (WHERE c.class <> 'stock'),
           min(LEAST(COALESCE(c.finished_at, GREATEST(v_now, c.taken_at)), c.taken_at + p_max_call) + p_window)
      INTO v_busy, v_paying, v_next
      FROM luarmor_calls c
     WHERE c.taken_at > v_now - p_window - p_max_call
       AND LEAST(COALESCE(c.finished_at, 'infinity'), c.taken_at + p_max_call) + p_window > v_now;

    IF v_busy < p_count THEN
        -- Under contention (more requests waiting than this one), slots are
        -- paced one per window/count. Bursts would let one replica take a
        -- whole window's slots in the instant before a more urgent request
        -- elsewhere is published; pacing bounds that to one slot.
        IF p_next_rank IS NOT NULL OR v_paying * 4 >= p_count OR EXISTS (SELECT 1 FROM luarmor_demand d
                    WHERE d.replica <> p_replica AND d.expires_at > v_now) THEN
            SELECT max(c.taken_at) + p_window / p_count INTO v_paced
              FROM luarmor_calls c WHERE c.taken_at > v_now - p_window / p_count AND c.class <> 'stock';
        END IF;
        IF EXISTS (SELECT 1 FROM luarmor_demand d
                    WHERE d.replica <> p_replica AND d.top_rank < p_rank AND d.expires_at > v_now) THEN
            -- A more urgent request waits elsewhere: leave the slot to it.
            v_next := GREATEST(v_now + interval '25 milliseconds', v_paced);
        ELSIF v_paced IS NOT NULL THEN
            v_next := v_paced;
        ELSE
            INSERT INTO luarmor_calls (taken_at, class, replica) VALUES (v_now, p_class, p_replica)
            RETURNING id INTO v_id;
            -- Publish what the replica has left waiting after this grant.
            IF p_next_rank IS NULL THEN
                DELETE FROM luarmor_demand d WHERE d.replica = p_replica;
            ELSE
                INSERT INTO luarmor_demand AS d (replica, top_rank, expires_at)
                VALUES (p_replica, p_next_rank, v_now + p_window + interval '5 seconds')
                ON CONFLICT (replica) DO UPDATE SET top_rank = EXCLUDED.top_rank, expires_at = EXCLUDED.expires_at;
            END IF;
            RETURN QUERY SELECT v_id, NULL::double precision;
            RETURN;
        END IF;
    END IF;

    INSERT INTO luarmor_demand AS d (replica, top_rank, expires_at)
    VALUES (p_replica, p_rank, v_next + interval '5 seconds')
    ON CONFLICT (replica) DO UPDATE SET top_rank = EXCLUDED.top_rank, expires_at = EXCLUDED.expires_at;
    RETURN QUERY SELECT NULL::bigint, (extract(epoch FROM v_next - v_now) * 1000)::double precision;
END
$$;
