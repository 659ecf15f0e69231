-- A Discord account the buyer proved (Discord's OAuth2, identify scope)
-- from the order page, as opposed to the Discord ID typed at checkout
-- (orders.discord_id), which is a claim. One row per order: verifying again
-- replaces it and takes a new verification number, which the key's writer
-- (jobs.SyncKeyWorker) applies once.
CREATE SEQUENCE order_discord_verification_seq;
CREATE TABLE order_discord (
    order_id     bigint PRIMARY KEY REFERENCES orders (id),
    -- The verified account's snowflake and its username (shown to the
    -- buyer; never an access token, which is not kept).
    discord_id   text NOT NULL CHECK (discord_id ~ '^[1-9][0-9]{16,19}$'),
    username     text NOT NULL CHECK (char_length(username) BETWEEN 1 AND 64),
    verification bigint NOT NULL DEFAULT nextval('order_discord_verification_seq'),
    verified_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_discord_discord_id_idx ON order_discord (discord_id);

-- The sign-ins that came back to the callback, by the random nonce their
-- state was made from: a replayed callback is refused before Discord is
-- asked. A state lives 10 minutes, so rows older than a day are dropped.
CREATE TABLE discord_oauth_states (
    nonce   text PRIMARY KEY,
    used_at timestamptz NOT NULL DEFAULT now()
);

-- What the key's writer last did with a verified link: the verification
-- it acted on, the account it linked ('' when refused, or since moved to
-- the key of a newer verification of the same account), and why Luarmor
-- refused it ('in_use': another key of the project, one this service may
-- not take it from, holds the account; 'invalid').
ALTER TABLE ledger_keys
    ADD COLUMN applied_discord_verification bigint NOT NULL DEFAULT 0,
    ADD COLUMN applied_discord_id text NOT NULL DEFAULT '',
    ADD COLUMN applied_discord_refused text NOT NULL DEFAULT ''
        CHECK (applied_discord_refused IN ('', 'in_use', 'invalid'));

-- A unit that stops being usable (revoked, replaced by a reissue) hands
-- its order's verified account on to the order's next usable unit in the
-- project: that key's ledger changes, and the writer sweep applies it.
CREATE FUNCTION bump_ledger_of_next_discord_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_keys l SET version = l.version + 1, updated_at = now()
    FROM order_keys k
    JOIN orders o ON o.checkout_session_id = k.checkout_session_id
    JOIN order_discord d ON d.order_id = o.id
    WHERE k.checkout_session_id = NEW.checkout_session_id AND k.project_id = NEW.project_id
      AND k.status = 'active'
      AND k.id = (SELECT min(u.id) FROM order_keys u
                  WHERE u.checkout_session_id = k.checkout_session_id AND u.project_id = k.project_id
                    AND u.status IN ('pending', 'active'))
      AND l.project_id = k.project_id AND l.user_key = k.user_key;
    RETURN NULL;
END $$;
CREATE TRIGGER order_keys_hand_on_discord
    AFTER UPDATE OF status ON order_keys
    FOR EACH ROW WHEN (OLD.status IN ('pending', 'active') AND NEW.status NOT IN ('pending', 'active'))
    EXECUTE FUNCTION bump_ledger_of_next_discord_unit();
