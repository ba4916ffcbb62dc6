-- Idempotency keys are per (account, livemode), as Stripe's are: a key used in test mode is unused
-- in live mode and its response is never replayed to the other mode.
-- Rows written before keys were per mode carry no mode. They are kept as live keys: a live retry
-- within their last 24 hours still replays (never runs a money operation twice), and no test key
-- can ever replay them; at worst a test-mode retry of such a key runs again, on test data.
-- SQLite cannot change a primary key in place: the table is rebuilt.
CREATE TABLE idempotency_keys_by_mode (
    account_id  TEXT NOT NULL,
    livemode    INTEGER NOT NULL,
    key         TEXT NOT NULL,
    method      TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response    BLOB NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (account_id, livemode, key)
) WITHOUT ROWID;
INSERT INTO idempotency_keys_by_mode (account_id, livemode, key, method, fingerprint, response, created)
    SELECT account_id, 1, key, method, fingerprint, response, created FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_by_mode RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
