-- A stock key on its way out: `fulfiller stock delete` takes each unsold
-- key of a price no longer stocked out of sale (ready -> retiring) in a
-- commit before it deletes the key in Luarmor, then drops the row. A sale
-- takes only ready keys, so it never gets a key being deleted; a run cut
-- off between the Luarmor delete and the row's removal leaves the row
-- retiring, and the next run deletes it again (Luarmor's 404: already
-- gone) and drops it.
ALTER TABLE stock_keys DROP CONSTRAINT stock_keys_status_check;
ALTER TABLE stock_keys ADD CONSTRAINT stock_keys_status_check
    CHECK (status IN ('pending', 'ready', 'sold', 'retiring'));

-- The references of the stock keys deleted that way. The reconciliation
-- (reconcile_stock) may have listed a key just before its deletion; it
-- adopts no key whose reference is here, so a deleted key never comes back
-- into stock. Both sides take the reference's lock, so the adoption's check
-- sees a deletion that committed before it.
CREATE TABLE stock_keys_deleted (
    reference  text PRIMARY KEY,
    project_id text NOT NULL,
    price_id   text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
