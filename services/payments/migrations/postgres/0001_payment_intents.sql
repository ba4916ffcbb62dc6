-- Payment intents. `document` is the encoded settle.payments.v1.PaymentIntent as last written; the
-- other columns are projections of it for lookups, lists, search and the money constraints below.
CREATE TABLE payment_intents (
    id                TEXT COLLATE "C" PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    livemode          BOOLEAN NOT NULL,
    status            TEXT NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    amount_capturable BIGINT NOT NULL CHECK (amount_capturable >= 0 AND amount_capturable <= amount),
    amount_received   BIGINT NOT NULL CHECK (amount_received >= 0 AND amount_received <= amount),
    -- What refunds took back; the database, not a check in code, keeps it within what was received.
    amount_refunded   BIGINT NOT NULL DEFAULT 0
                      CHECK (amount_refunded >= 0 AND amount_refunded <= amount_received),
    currency          TEXT NOT NULL,
    customer          TEXT COLLATE "C",
    metadata          TEXT NOT NULL,
    created           BIGINT NOT NULL,
    document          BYTEA NOT NULL
);
CREATE INDEX payment_intents_account ON payment_intents (account_id, id);
CREATE INDEX payment_intents_customer ON payment_intents (account_id, customer, id);
