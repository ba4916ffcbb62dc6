-- The saga log: one row per cross-store operation, in the orchestrating service's database.
-- A replica drives a saga while it holds the lease; `lease_version` fences out a replica whose
-- lease expired and was taken over. Lease times are unix milliseconds, the others seconds.
CREATE TABLE sagas (
    id               TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL,
    livemode         BOOLEAN NOT NULL,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('running', 'compensating', 'succeeded', 'failed')),
    step             TEXT NOT NULL,
    data             BYTEA NOT NULL,
    subjects         TEXT NOT NULL,
    idempotency_key  TEXT,
    result           BYTEA,
    error_code       INTEGER,
    error_reason     TEXT,
    error_message    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_holder     TEXT,
    lease_expires_at BIGINT NOT NULL,
    lease_version    BIGINT NOT NULL DEFAULT 1,
    traceparent      TEXT,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    completed_at     BIGINT
);
-- What the recovery loop scans: live sagas by lease expiry.
CREATE INDEX sagas_due ON sagas (lease_expires_at) WHERE state IN ('running', 'compensating');
CREATE INDEX sagas_account ON sagas (account_id, id);
