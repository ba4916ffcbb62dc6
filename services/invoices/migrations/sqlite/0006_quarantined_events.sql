-- Events of another service's stream that the invoices consumer could not apply: recorded in the
-- transaction that moves the stream's cursor past them, so none is dropped silently. One row per
-- (source, event); `resolved_at` is set once a retry applied it.
CREATE TABLE quarantined_events (
    source        TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    livemode      INTEGER NOT NULL,
    type          TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    stream_cursor TEXT NOT NULL,
    reason        TEXT NOT NULL,
    error         TEXT NOT NULL,
    attempts      INTEGER NOT NULL CHECK (attempts >= 1),
    first_seen    INTEGER NOT NULL,
    last_attempt  INTEGER NOT NULL,
    resolved_at   INTEGER,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX quarantined_events_scope ON quarantined_events (account_id, livemode, event_id);
