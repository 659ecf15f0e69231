-- The entitlement ledger (internal/entitlement): what each payment granted
-- on the Luarmor key its unit holds, and one row per Luarmor key with the
-- facts its state is derived with and what was last applied to it. Every
-- change of a key's expiry or ban goes through the key's row: its writer
-- (jobs.SyncKeyWorker) derives the state from the grants and applies it.

-- One row per grant. A grant belongs to a unit (order_keys), and through
-- the unit's user_key to the Luarmor key: a unit that extended a key its
-- buyer already had adds its grant to that key's ledger.
CREATE TABLE key_grants (
    id            bigserial PRIMARY KEY,
    order_key_id  bigint NOT NULL REFERENCES order_keys (id),
    -- What paid for it, one grant per unit and source: 'unit' (a one-time
    -- unit), 'invoice:<id>' (a subscription period an invoice paid, the
    -- checkout's first included), 'collecting' (PAST_DUE_ACTION=keep).
    source        text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('days', 'lifetime', 'period')),
    days          int NOT NULL DEFAULT 0 CHECK (days >= 0),
    -- Unix seconds: for days, when they were paid; for a period, its start.
    valid_from    bigint NOT NULL,
    -- Unix seconds: the end of a period, without the grace.
    valid_to      bigint NOT NULL DEFAULT 0,
    -- The subscription a period belongs to: periods of one line merge.
    line          text NOT NULL DEFAULT '',
    state         text NOT NULL DEFAULT 'active'
                  CHECK (state IN ('active', 'revoked', 'banned', 'suspended', 'ended')),
    -- Shown to the key's user while the grant bans or suspends it.
    reason        text NOT NULL DEFAULT '',
    -- What a revoked grant does to a key it leaves with nothing.
    action        text NOT NULL DEFAULT '' CHECK (action IN ('', 'blacklist', 'delete')),
    -- The revocation that set the state, so lifting it restores exactly
    -- the grants it took.
    revocation_id bigint REFERENCES revocations (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_key_id, source)
);
CREATE INDEX key_grants_revocation_idx ON key_grants (revocation_id) WHERE revocation_id IS NOT NULL;

-- The paid lines of each subscription invoice: a period of a price for
-- that many seats. Units of the price get the period (oldest first, as
-- many as seats), whether they exist when the invoice is paid or are
-- made later, so the order of Stripe's events does not matter.
CREATE TABLE renewal_lines (
    invoice_id   text NOT NULL REFERENCES renewals (invoice_id),
    price_id     text NOT NULL,
    quantity     int NOT NULL CHECK (quantity >= 0),
    period_start bigint NOT NULL,
    period_end   bigint NOT NULL,
    PRIMARY KEY (invoice_id, price_id)
);

-- One row per Luarmor key the service manages.
CREATE TABLE ledger_keys (
    id                   bigserial PRIMARY KEY,
    project_id           text NOT NULL,
    user_key             text NOT NULL,
    -- When the key's clock started (first use, or made absolute), unix
    -- seconds; NULL while its key_days wait for first use.
    started_at           bigint,
    -- The key_days Luarmor holds while the key waits for first use.
    waiting_days         int NOT NULL DEFAULT 0,
    -- Bumped by every change to the key's grants or facts; the writer
    -- records the version it applied, and runs again when they differ.
    version              bigint NOT NULL DEFAULT 1,
    applied_version      bigint NOT NULL DEFAULT 0,
    applied_deleted      boolean NOT NULL DEFAULT false,
    applied_lifetime     boolean NOT NULL DEFAULT false,
    applied_waiting_days int NOT NULL DEFAULT 0,
    applied_expire       bigint NOT NULL DEFAULT 0,
    applied_ban          text NOT NULL DEFAULT '' CHECK (applied_ban IN ('', 'suspended', 'banned')),
    applied_ban_reason   text NOT NULL DEFAULT '',
    -- Luarmor kept the absolute expiry last sent to this unclaimed key
    -- (no HWID, no Discord ID) as key_days: it is sent again once the
    -- key is claimed.
    awaiting_claim       boolean NOT NULL DEFAULT false,
    -- One writer at a time per key, also across a rescue: a writer whose
    -- request may still be on its way holds the lease until it has ended.
    lease_owner          text,
    lease_until          timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, user_key)
);

-- Every change to a grant is a change to its key's ledger.
CREATE FUNCTION bump_ledger_of_grant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_keys l SET version = l.version + 1, updated_at = now()
    FROM order_keys k
    WHERE k.id = NEW.order_key_id AND l.project_id = k.project_id AND l.user_key = k.user_key;
    RETURN NULL;
END $$;
CREATE TRIGGER key_grants_bump_ledger
    AFTER INSERT OR UPDATE ON key_grants
    FOR EACH ROW EXECUTE FUNCTION bump_ledger_of_grant();

-- So are the facts a unit adds to its key (support's ban, a suspension for
-- non-payment) and a unit joining a key.
CREATE FUNCTION bump_ledger_of_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_keys l SET version = l.version + 1, updated_at = now()
    WHERE l.project_id = NEW.project_id AND l.user_key = NEW.user_key;
    RETURN NULL;
END $$;
CREATE TRIGGER order_keys_bump_ledger
    AFTER UPDATE OF user_key, support_ban, suspended ON order_keys
    FOR EACH ROW WHEN (NEW.user_key IS NOT NULL)
    EXECUTE FUNCTION bump_ledger_of_unit();

-- Keys delivered before the ledger: each unit's grant as its row tells it,
-- and each key's facts and applied state as last recorded, so nothing is
-- sent to Luarmor for them until something changes. A subscription unit's
-- period is taken to end a day before its target (the default grace).
INSERT INTO key_grants (order_key_id, source, kind, days, valid_from, valid_to, line, state, action)
SELECT k.id,
       CASE WHEN k.recurring THEN 'invoice:' || COALESCE(o.invoice_id, 'checkout') ELSE 'unit' END,
       CASE WHEN k.recurring THEN 'period' WHEN k.key_days = 0 THEN 'lifetime' ELSE 'days' END,
       CASE WHEN k.recurring THEN 0 ELSE k.key_days END,
       extract(epoch FROM o.created_at)::bigint,
       CASE WHEN k.recurring THEN COALESCE(k.expire_target - 86400, extract(epoch FROM o.created_at)::bigint) ELSE 0 END,
       CASE WHEN k.recurring THEN COALESCE(o.subscription_id, '') ELSE '' END,
       CASE k.status WHEN 'reverted' THEN 'revoked' WHEN 'blacklisted' THEN 'banned' WHEN 'deleted' THEN 'revoked' ELSE 'active' END,
       CASE k.status WHEN 'deleted' THEN 'delete' WHEN 'reverted' THEN 'blacklist' ELSE '' END
FROM order_keys k JOIN orders o USING (checkout_session_id);

INSERT INTO ledger_keys (project_id, user_key, started_at, waiting_days, version, applied_version,
                         applied_deleted, applied_lifetime, applied_waiting_days, applied_expire, applied_ban)
SELECT project_id, user_key,
       CASE WHEN bool_or(auth_expire IS NOT NULL AND auth_expire <> -1) THEN
            min(CASE WHEN recurring THEN COALESCE(expire_target, auth_expire) - 86400 * 31
                     ELSE auth_expire - 86400 * key_days END) END,
       COALESCE(max(key_days) FILTER (WHERE NOT extended_existing AND auth_expire IS NULL), 0),
       1, 1,
       bool_or(status = 'deleted'),
       bool_or(auth_expire = -1),
       COALESCE(max(key_days) FILTER (WHERE NOT extended_existing AND auth_expire IS NULL), 0),
       COALESCE(max(auth_expire), 0),
       CASE WHEN bool_or(status = 'blacklisted') THEN 'banned' ELSE '' END
FROM order_keys WHERE user_key IS NOT NULL
GROUP BY project_id, user_key;

-- The invoice a revoked charge paid, when it paid a subscription: a
-- refund of one period takes back that period's grants only.
ALTER TABLE revocations ADD COLUMN invoice_id text;
