-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Tables that did not carry the mode get it from
-- the object they belong to; a row whose mode cannot be derived is taken as live, the side on which
-- an error cannot touch real money twice (a live retry still finds it; a test key never does).
ALTER TABLE payment_attempt_records ADD COLUMN livemode BOOLEAN;
UPDATE payment_attempt_records a SET livemode = r.livemode FROM payment_records r WHERE r.id = a.payment_record;
UPDATE payment_attempt_records SET livemode = TRUE WHERE livemode IS NULL;
ALTER TABLE payment_attempt_records ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE payment_record_refunds ADD COLUMN livemode BOOLEAN;
UPDATE payment_record_refunds f SET livemode = r.livemode FROM payment_records r WHERE r.id = f.payment_record;
UPDATE payment_record_refunds SET livemode = TRUE WHERE livemode IS NULL;
ALTER TABLE payment_record_refunds ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE payment_attachments ADD COLUMN livemode BOOLEAN;
UPDATE payment_attachments a SET livemode = COALESCE(
    (SELECT livemode FROM payment_intents WHERE id = a.payment),
    (SELECT livemode FROM payment_records WHERE id = a.payment),
    TRUE);
ALTER TABLE payment_attachments ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE refund_claim_items ADD COLUMN livemode BOOLEAN;
UPDATE refund_claim_items i SET livemode = COALESCE(
    (SELECT livemode FROM refunds WHERE id = i.refund),
    (SELECT livemode FROM payment_records WHERE id = i.payment_record),
    TRUE);
ALTER TABLE refund_claim_items ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE refund_claims ADD COLUMN livemode BOOLEAN;
UPDATE refund_claims c SET livemode = COALESCE(
    (SELECT bool_and(livemode) FROM refund_claim_items i WHERE i.account_id = c.account_id AND i.saga_id = c.saga_id),
    TRUE);
ALTER TABLE refund_claims ALTER COLUMN livemode SET NOT NULL;

-- A refund reference is unique per account and mode; claims link reported refunds by it.
ALTER TABLE refund_claim_items DROP CONSTRAINT refund_claim_items_account_id_refund_group_fkey;
ALTER TABLE payment_record_refunds DROP CONSTRAINT payment_record_refunds_account_id_refund_reference_key;
ALTER TABLE payment_record_refunds ADD CONSTRAINT payment_record_refunds_reference
    UNIQUE (account_id, livemode, refund_reference);
ALTER TABLE refund_claim_items ADD CONSTRAINT refund_claim_items_refund_group
    FOREIGN KEY (account_id, livemode, refund_group)
    REFERENCES payment_record_refunds (account_id, livemode, refund_reference);

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
DROP INDEX payment_record_refunds_record;
CREATE INDEX payment_record_refunds_record ON payment_record_refunds (account_id, livemode, payment_record);
DROP INDEX refunds_account;
DROP INDEX refunds_payment_intent;
DROP INDEX refunds_charge;
DROP INDEX refunds_created;
CREATE INDEX refunds_scope ON refunds (account_id, livemode, id);
CREATE INDEX refunds_payment_intent ON refunds (account_id, livemode, payment_intent, id);
CREATE INDEX refunds_charge ON refunds (account_id, livemode, charge, id);
CREATE INDEX refunds_created ON refunds (account_id, livemode, created, id);
