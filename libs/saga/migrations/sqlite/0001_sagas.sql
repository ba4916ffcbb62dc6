-- The saga log: one row per cross-store operation, in the orchestrating service's database.
-- A replica drives a saga while it holds the lease; `lease_version` fences out a replica whose
-- lease expired and was taken over. Lease times are unix milliseconds, the others seconds.
CREATE TABLE sagas (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    livemode         INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('running', 'compensating', 'succeeded', 'failed')),
    step             TEXT NOT NULL,
    data             BLOB NOT NULL,
    subjects         TEXT NOT NULL,
    idempotency_key  TEXT,
    result           BLOB,
    error_code       INTEGER,
    error_reason     TEXT,
    error_message    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_holder     TEXT,
    lease_expires_at INTEGER NOT NULL,
    lease_version    INTEGER NOT NULL DEFAULT 1,
    traceparent      TEXT,
    created          INTEGER NOT NULL,
    updated          INTEGER NOT NULL,
    completed_at     INTEGER
);
-- What the recovery loop scans: live sagas by lease expiry.
CREATE INDEX sagas_due ON sagas (lease_expires_at) WHERE state IN ('running', 'compensating');
CREATE INDEX sagas_account ON sagas (account_id, id);
