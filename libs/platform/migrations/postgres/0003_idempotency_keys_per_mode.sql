-- Idempotency keys are per (account, livemode), as Stripe's are: a key used in test mode is unused
-- in live mode and its response is never replayed to the other mode.
-- Rows written before keys were per mode carry no mode. They are kept as live keys: a live retry
-- within their last 24 hours still replays (never runs a money operation twice), and no test key
-- can ever replay them; at worst a test-mode retry of such a key runs again, on test data.
ALTER TABLE idempotency_keys ADD COLUMN livemode BOOLEAN;
UPDATE idempotency_keys SET livemode = TRUE;
ALTER TABLE idempotency_keys ALTER COLUMN livemode SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (account_id, livemode, key);
