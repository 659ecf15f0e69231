-- Support names a key by the key itself (`fulfiller keys …`, the admin
-- search) or by its last characters (the console's search box), without
-- its project. The only index on order_keys' keys led with project_id, so
-- both read every unit ever sold (a parallel scan of order_keys, 300 to
-- 460 ms at a million orders).
--
-- order_keys_user_key_idx is rebuilt with the key first: it serves a key
-- alone and a key with its project (the ledger's triggers, the writer)
-- alike, so no second index on the same column is kept up on each
-- delivery. order_keys_key_tail_idx holds each key's last 4 characters
-- (jobs.MinKeyTail, the fewest a search takes): a search by a key's end
-- compares them for equality, which any plan can use, and then checks the
-- whole tail on the few keys that share them.
--
-- Built in the migration's transaction, not CONCURRENTLY (see 0042):
-- deliveries wait while the two indexes are built, a few seconds per
-- million units.
DROP INDEX order_keys_user_key_idx;
CREATE INDEX order_keys_user_key_idx ON order_keys (user_key, project_id) WHERE user_key IS NOT NULL;
CREATE INDEX order_keys_key_tail_idx ON order_keys (right(user_key, 4)) WHERE user_key IS NOT NULL;
