-- A stand-in aggregate for the platform's store tests.
CREATE TABLE widgets (
    id         TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    count      BIGINT NOT NULL DEFAULT 0
);
