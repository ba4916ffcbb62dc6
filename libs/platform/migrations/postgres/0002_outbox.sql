-- The transactional outbox. A service inserts events in the same transaction as the change they
-- describe. `position` orders inserts; `seq` is assigned afterwards by the sequencer, in the order
-- the rows became visible (committed), and is what readers page and stream by.
CREATE TABLE outbox_events (
    position            BIGSERIAL PRIMARY KEY,
    id                  TEXT COLLATE "C" NOT NULL UNIQUE,
    account_id          TEXT COLLATE "C" NOT NULL,
    type                TEXT COLLATE "C" NOT NULL,
    object_id           TEXT COLLATE "C" NOT NULL,
    object_sequence     BIGINT NOT NULL,
    data_type_url       TEXT NOT NULL,
    data                BYTEA NOT NULL,
    previous_attributes TEXT,
    request_id          TEXT,
    idempotency_key     TEXT,
    traceparent         TEXT,
    livemode            BOOLEAN NOT NULL,
    created             BIGINT NOT NULL,
    seq                 BIGINT UNIQUE
);
CREATE INDEX outbox_events_unsequenced ON outbox_events (position) WHERE seq IS NULL;
CREATE INDEX outbox_events_account_seq ON outbox_events (account_id, seq);
CREATE INDEX outbox_events_created ON outbox_events (created);
CREATE UNIQUE INDEX outbox_events_object_sequence ON outbox_events (object_id, object_sequence);

-- Last sequence number handed out per object. Its row lock, held to commit, is what makes
-- per-object numbering and insert order agree with commit order.
CREATE TABLE outbox_object_sequences (
    object_id     TEXT COLLATE "C" PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);
