-- The transactional outbox. A service inserts events in the same transaction as the change they
-- describe. `position` orders inserts; `seq` is assigned afterwards by the sequencer, in the order
-- the rows became visible (committed), and is what readers page and stream by.
CREATE TABLE outbox_events (
    position            INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    account_id          TEXT NOT NULL,
    type                TEXT NOT NULL,
    object_id           TEXT NOT NULL,
    object_sequence     INTEGER NOT NULL,
    data_type_url       TEXT NOT NULL,
    data                BLOB NOT NULL,
    previous_attributes TEXT,
    request_id          TEXT,
    idempotency_key     TEXT,
    traceparent         TEXT,
    livemode            INTEGER NOT NULL,
    created             INTEGER NOT NULL,
    seq                 INTEGER UNIQUE
);
CREATE INDEX outbox_events_unsequenced ON outbox_events (position) WHERE seq IS NULL;
CREATE INDEX outbox_events_account_seq ON outbox_events (account_id, seq);
CREATE INDEX outbox_events_created ON outbox_events (created);
CREATE UNIQUE INDEX outbox_events_object_sequence ON outbox_events (object_id, object_sequence);

CREATE TABLE outbox_object_sequences (
    object_id     TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
) WITHOUT ROWID;
