-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Tables that did not carry the mode get it from
-- the object they belong to; a row whose mode cannot be derived is taken as live, the side on which
-- an error cannot touch real money twice (a live retry still finds it; a test key never does).
ALTER TABLE payment_attempt_records ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE payment_attempt_records SET livemode = COALESCE(
    (SELECT livemode FROM payment_records WHERE id = payment_attempt_records.payment_record), 1);

ALTER TABLE payment_attachments ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE payment_attachments SET livemode = COALESCE(
    (SELECT livemode FROM payment_intents WHERE id = payment_attachments.payment),
    (SELECT livemode FROM payment_records WHERE id = payment_attachments.payment),
    1);

ALTER TABLE refund_claims ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE refund_claims SET livemode = COALESCE(
    (SELECT MIN(COALESCE(
        (SELECT livemode FROM refunds WHERE id = i.refund),
        (SELECT livemode FROM payment_records WHERE id = i.payment_record), 1))
     FROM refund_claim_items i
     WHERE i.account_id = refund_claims.account_id AND i.saga_id = refund_claims.saga_id),
    1);

-- A refund reference becomes unique per account and mode, and claims link reported refunds by
-- it: SQLite cannot change a table's constraints in place, so both tables are rebuilt, the child
-- dropped before its parent so that no foreign key is ever left dangling.
CREATE TABLE payment_record_refunds_copy AS
    SELECT f.*, COALESCE((SELECT livemode FROM payment_records r WHERE r.id = f.payment_record), 1) AS mode
    FROM payment_record_refunds f;
CREATE TABLE refund_claim_items_copy AS
    SELECT i.*, COALESCE(
        (SELECT livemode FROM refunds WHERE id = i.refund),
        (SELECT livemode FROM payment_records WHERE id = i.payment_record), 1) AS mode
    FROM refund_claim_items i;
DROP TABLE refund_claim_items;
DROP TABLE payment_record_refunds;

CREATE TABLE payment_record_refunds (
    account_id             TEXT NOT NULL,
    livemode               INTEGER NOT NULL,
    refund_reference       TEXT NOT NULL,
    payment_record         TEXT NOT NULL REFERENCES payment_records (id),
    payment_attempt_record TEXT NOT NULL REFERENCES payment_attempt_records (id),
    amount                 INTEGER NOT NULL CHECK (amount > 0),
    currency               TEXT NOT NULL,
    created                INTEGER NOT NULL,
    amount_claimed         INTEGER NOT NULL DEFAULT 0
                           CHECK (amount_claimed >= 0 AND amount_claimed <= amount),
    UNIQUE (account_id, livemode, refund_reference)
);
INSERT INTO payment_record_refunds (account_id, livemode, refund_reference, payment_record,
        payment_attempt_record, amount, currency, created, amount_claimed)
    SELECT account_id, mode, refund_reference, payment_record, payment_attempt_record, amount,
        currency, created, amount_claimed
    FROM payment_record_refunds_copy;

CREATE TABLE refund_claim_items (
    account_id       TEXT NOT NULL,
    livemode         INTEGER NOT NULL,
    saga_id          TEXT NOT NULL,
    ordinal          INTEGER NOT NULL,
    refund_type      TEXT NOT NULL,
    refund           TEXT REFERENCES refunds (id),
    payment_record   TEXT,
    refund_group     TEXT,
    payment          TEXT NOT NULL,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    created_by_claim INTEGER NOT NULL,
    PRIMARY KEY (account_id, saga_id, ordinal),
    FOREIGN KEY (account_id, saga_id) REFERENCES refund_claims (account_id, saga_id),
    FOREIGN KEY (account_id, livemode, refund_group)
        REFERENCES payment_record_refunds (account_id, livemode, refund_reference),
    CHECK (
        (refund_type = 'refund' AND refund IS NOT NULL
            AND payment_record IS NULL AND refund_group IS NULL)
        OR (refund_type = 'payment_record_refund' AND refund IS NULL
            AND payment_record IS NOT NULL AND refund_group IS NOT NULL)
    )
);
INSERT INTO refund_claim_items (account_id, livemode, saga_id, ordinal, refund_type, refund,
        payment_record, refund_group, payment, amount, currency, created_by_claim)
    SELECT account_id, mode, saga_id, ordinal, refund_type, refund, payment_record, refund_group,
        payment, amount, currency, created_by_claim
    FROM refund_claim_items_copy;
DROP TABLE payment_record_refunds_copy;
DROP TABLE refund_claim_items_copy;

-- Lists and lookups page within one scope.
DROP INDEX payment_intents_account;
DROP INDEX payment_intents_customer;
DROP INDEX payment_intents_latest_charge;
CREATE INDEX payment_intents_scope ON payment_intents (account_id, livemode, id);
CREATE INDEX payment_intents_customer ON payment_intents (account_id, livemode, customer, id);
CREATE INDEX payment_intents_latest_charge ON payment_intents (account_id, livemode, latest_charge);
DROP INDEX payment_records_account;
DROP INDEX payment_records_customer;
CREATE INDEX payment_records_scope ON payment_records (account_id, livemode, id);
CREATE INDEX payment_records_customer ON payment_records (account_id, livemode, customer, id);
DROP INDEX payment_attempt_records_record;
CREATE INDEX payment_attempt_records_record ON payment_attempt_records (account_id, livemode, payment_record, id);
CREATE INDEX payment_record_refunds_record ON payment_record_refunds (account_id, livemode, payment_record);
DROP INDEX refunds_account;
DROP INDEX refunds_payment_intent;
DROP INDEX refunds_charge;
DROP INDEX refunds_created;
CREATE INDEX refunds_scope ON refunds (account_id, livemode, id);
CREATE INDEX refunds_payment_intent ON refunds (account_id, livemode, payment_intent, id);
CREATE INDEX refunds_charge ON refunds (account_id, livemode, charge, id);
CREATE INDEX refunds_created ON refunds (account_id, livemode, created, id);
