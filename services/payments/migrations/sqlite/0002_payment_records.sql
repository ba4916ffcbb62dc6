-- Payment Records (Stripe's, reported by the merchant). `document` is the encoded
-- settle.payments.v1.PaymentRecord as last written; the other columns are projections of it for
-- lookups, lists and the money constraints below.
CREATE TABLE payment_records (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL,
    livemode          INTEGER NOT NULL,
    customer          TEXT,
    currency          TEXT NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    -- pending, guaranteed, failed or canceled: whether the record can still pay an invoice.
    latest_outcome    TEXT NOT NULL,
    amount_guaranteed INTEGER NOT NULL CHECK (amount_guaranteed >= 0 AND amount_guaranteed <= amount),
    -- The database, not a check in code, keeps reported refunds within what was guaranteed.
    amount_refunded   INTEGER NOT NULL
                      CHECK (amount_refunded >= 0 AND amount_refunded <= amount_guaranteed),
    metadata          TEXT NOT NULL,
    created           INTEGER NOT NULL,
    document          BLOB NOT NULL
);
CREATE INDEX payment_records_account ON payment_records (account_id, id);
CREATE INDEX payment_records_customer ON payment_records (account_id, customer, id);

-- Payment Attempt Records: `document` is the encoded settle.payments.v1.PaymentAttemptRecord. Only
-- the latest attempt of a record changes, under the record's row lock.
CREATE TABLE payment_attempt_records (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    payment_record TEXT NOT NULL REFERENCES payment_records (id),
    outcome        TEXT NOT NULL,
    created        INTEGER NOT NULL,
    document       BLOB NOT NULL
);
CREATE INDEX payment_attempt_records_record
    ON payment_attempt_records (account_id, payment_record, id);

-- Refunds reported on payment records. The reference is unique per account, so a reused
-- reference is refused by the database even when two reports race; credit notes link a refund by
-- (payment_record, refund_reference = refund_group).
CREATE TABLE payment_record_refunds (
    account_id             TEXT NOT NULL,
    refund_reference       TEXT NOT NULL,
    payment_record         TEXT NOT NULL REFERENCES payment_records (id),
    payment_attempt_record TEXT NOT NULL REFERENCES payment_attempt_records (id),
    amount                 INTEGER NOT NULL CHECK (amount > 0),
    currency               TEXT NOT NULL,
    created                INTEGER NOT NULL,
    UNIQUE (account_id, refund_reference)
);
CREATE INDEX payment_record_refunds_record
    ON payment_record_refunds (account_id, payment_record);
