-- A stand-in aggregate for the platform's store tests.
CREATE TABLE widgets (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    count      INTEGER NOT NULL DEFAULT 0
);
