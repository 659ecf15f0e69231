-- Subscription keys follow the subscription's state in Stripe: a key of a
-- recurring price gets an absolute expiry (the end of what was paid plus
-- the grace), computed and committed here before Luarmor is told, so a
-- retry sends the same value.
ALTER TABLE order_keys
    -- The unit's price is recurring: renewals, seat changes and the end of
    -- the subscription apply to it; one-time items bought alongside keep
    -- their key_days.
    ADD COLUMN recurring      boolean NOT NULL DEFAULT false,
    -- The absolute auth_expire (unix seconds) the key must have.
    ADD COLUMN expire_target  bigint,
    -- The target last set in Luarmor.
    ADD COLUMN expire_applied bigint,
    -- The unit left the subscription (a seat removed, a price changed, the
    -- subscription ended): it runs out at expire_target and is not renewed.
    ADD COLUMN ending         boolean NOT NULL DEFAULT false,
    -- PAST_DUE_ACTION=suspend: the key should be blacklisted while the
    -- subscription is past_due (suspended), and whether it is in Luarmor.
    ADD COLUMN suspended         boolean NOT NULL DEFAULT false,
    ADD COLUMN suspended_applied boolean NOT NULL DEFAULT false;

-- Keys delivered before every unit of a subscription order was renewed.
UPDATE order_keys k SET recurring = true
  FROM orders o WHERE o.checkout_session_id = k.checkout_session_id AND o.subscription_id IS NOT NULL;

CREATE INDEX order_keys_recurring_idx ON order_keys (checkout_session_id) WHERE recurring AND NOT ending;
