-- A Stripe event's body is kept as the exact bytes Stripe signed. jsonb
-- refuses some valid JSON (a "\u0000" escape) and rewrites the rest, so an
-- event could fail to be recorded or be read back differently from what was
-- verified. Rows recorded before keep jsonb's rendering of their body.
ALTER TABLE stripe_events
    ALTER COLUMN payload TYPE bytea USING convert_to(payload::text, 'UTF8');
