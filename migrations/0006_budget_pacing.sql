-- Pace the Luarmor budget once a quarter of a window is spent.
--
-- Before, requests went out as fast as slots were free, so a backlog spent
-- a whole window's COUNT in its first seconds and then waited most of a
-- minute for the window to roll: an order placed in that gap waited up to
-- a window, however fair the queue. Now a burst still goes at once up to
-- COUNT/4 (a lone request, a small sale), and past that slots are paced one
-- per window/COUNT, which keeps the fleet at the full rate under a backlog
-- while a new order waits for a slot or two. The burst is paid back once:
-- COUNT/4 slots into the first window of a backlog, nothing frees for
-- about a quarter of a window.

CREATE OR REPLACE FUNCTION luarmor_take_slot(
    p_replica text, p_rank int, p_next_rank int, p_class text,
    p_count int, p_window interval, p_max_call interval)
RETURNS TABLE (call_id bigint, retry_after_ms double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz;
    v_paused timestamptz;
    v_busy   int;
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
    SELECT count(*), min(LEAST(COALESCE(c.finished_at, GREATEST(v_now, c.taken_at)), c.taken_at + p_max_call) + p_window)
      INTO v_busy, v_next
      FROM luarmor_calls c
     WHERE c.taken_at > v_now - p_window - p_max_call
       AND LEAST(COALESCE(c.finished_at, 'infinity'), c.taken_at + p_max_call) + p_window > v_now;

    IF v_busy < p_count THEN
        -- Under contention (more requests waiting than this one), slots are
        -- paced one per window/count. Bursts would let one replica take a
        -- whole window's slots in the instant before a more urgent request
        -- elsewhere is published; pacing bounds that to one slot.
        IF p_next_rank IS NOT NULL OR v_busy * 4 >= p_count OR EXISTS (SELECT 1 FROM luarmor_demand d
                    WHERE d.replica <> p_replica AND d.expires_at > v_now) THEN
            SELECT max(c.taken_at) + p_window / p_count INTO v_paced
              FROM luarmor_calls c WHERE c.taken_at > v_now - p_window / p_count;
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
