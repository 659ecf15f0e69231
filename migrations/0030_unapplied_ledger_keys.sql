-- The writer sweep (resume_orders) looks every minute for keys whose
-- ledger changed and was never applied: few at any time, among every key
-- ever sold. A partial index keeps that look-up from reading them all.
CREATE INDEX ledger_keys_unapplied_idx ON ledger_keys (id) WHERE version <> applied_version;
