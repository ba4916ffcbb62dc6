-- A stand-in store for the saga tests: what the demo saga's local step writes.
CREATE TABLE ledger (saga_id TEXT PRIMARY KEY, amount BIGINT NOT NULL);
