-- Payment intents. `document` is the encoded settle.payments.v1.PaymentIntent as last written; the
-- other columns are projections of it for lookups, lists, search and the money constraints below.
CREATE TABLE payment_intents (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL,
    livemode          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    amount_capturable INTEGER NOT NULL CHECK (amount_capturable >= 0 AND amount_capturable <= amount),
    amount_received   INTEGER NOT NULL CHECK (amount_received >= 0 AND amount_received <= amount),
    -- What refunds took back; the database, not a check in code, keeps it within what was received.
    amount_refunded   INTEGER NOT NULL DEFAULT 0
                      CHECK (amount_refunded >= 0 AND amount_refunded <= amount_received),
    currency          TEXT NOT NULL,
    customer          TEXT,
    metadata          TEXT NOT NULL,
    created           INTEGER NOT NULL,
    document          BLOB NOT NULL
);
CREATE INDEX payment_intents_account ON payment_intents (account_id, id);
CREATE INDEX payment_intents_customer ON payment_intents (account_id, customer, id);
