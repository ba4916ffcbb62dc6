-- Payment Records (Stripe's, reported by the merchant). `document` is the encoded
-- settle.payments.v1.PaymentRecord as last written; the other columns are projections of it for
-- lookups, lists and the money constraints below.
CREATE TABLE payment_records (
    id                TEXT COLLATE "C" PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    livemode          BOOLEAN NOT NULL,
    customer          TEXT COLLATE "C",
    currency          TEXT NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    -- pending, guaranteed, failed or canceled: whether the record can still pay an invoice.
    latest_outcome    TEXT NOT NULL,
    amount_guaranteed BIGINT NOT NULL CHECK (amount_guaranteed >= 0 AND amount_guaranteed <= amount),
    -- The database, not a check in code, keeps reported refunds within what was guaranteed.
    amount_refunded   BIGINT NOT NULL
                      CHECK (amount_refunded >= 0 AND amount_refunded <= amount_guaranteed),
    metadata          TEXT NOT NULL,
    created           BIGINT NOT NULL,
    document          BYTEA NOT NULL
);
CREATE INDEX payment_records_account ON payment_records (account_id, id);
CREATE INDEX payment_records_customer ON payment_records (account_id, customer, id);

-- Payment Attempt Records: `document` is the encoded settle.payments.v1.PaymentAttemptRecord. Only
-- the latest attempt of a record changes, under the record's row lock.
CREATE TABLE payment_attempt_records (
    id             TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL,
    payment_record TEXT COLLATE "C" NOT NULL REFERENCES payment_records (id),
    outcome        TEXT NOT NULL,
    created        BIGINT NOT NULL,
    document       BYTEA NOT NULL
);
CREATE INDEX payment_attempt_records_record
    ON payment_attempt_records (account_id, payment_record, id);

-- Refunds reported on payment records. The reference is unique per account, so a reused
-- reference is refused by the database even when two reports race; credit notes link a refund by
-- (payment_record, refund_reference = refund_group).
CREATE TABLE payment_record_refunds (
    account_id             TEXT COLLATE "C" NOT NULL,
    refund_reference       TEXT COLLATE "C" NOT NULL,
    payment_record         TEXT COLLATE "C" NOT NULL REFERENCES payment_records (id),
    payment_attempt_record TEXT COLLATE "C" NOT NULL REFERENCES payment_attempt_records (id),
    amount                 BIGINT NOT NULL CHECK (amount > 0),
    currency               TEXT NOT NULL,
    created                BIGINT NOT NULL,
    UNIQUE (account_id, refund_reference)
);
CREATE INDEX payment_record_refunds_record
    ON payment_record_refunds (account_id, payment_record);
