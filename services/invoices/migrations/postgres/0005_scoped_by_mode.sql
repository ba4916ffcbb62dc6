-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Tables that did not carry the mode get it from
-- the invoice they belong to; where it cannot be derived the row is taken as live, the side on
-- which an error cannot touch real money twice.
ALTER TABLE invoice_lines ADD COLUMN livemode BOOLEAN;
UPDATE invoice_lines l SET livemode = i.livemode FROM invoices i WHERE i.id = l.invoice;
UPDATE invoice_lines SET livemode = TRUE WHERE livemode IS NULL;
ALTER TABLE invoice_lines ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE invoice_credits ADD COLUMN livemode BOOLEAN;
UPDATE invoice_credits c SET livemode = i.livemode FROM invoices i WHERE i.id = c.invoice;
UPDATE invoice_credits SET livemode = TRUE WHERE livemode IS NULL;
ALTER TABLE invoice_credits ALTER COLUMN livemode SET NOT NULL;

-- Inline tax rate ids are derived data: both modes keep the ids they used.
ALTER TABLE inline_tax_rates ADD COLUMN livemode BOOLEAN;
UPDATE inline_tax_rates SET livemode = TRUE;
INSERT INTO inline_tax_rates (account_id, fingerprint, id, livemode)
    SELECT account_id, fingerprint, id, FALSE FROM inline_tax_rates;
ALTER TABLE inline_tax_rates ALTER COLUMN livemode SET NOT NULL;
ALTER TABLE inline_tax_rates DROP CONSTRAINT inline_tax_rates_pkey;
ALTER TABLE inline_tax_rates ADD PRIMARY KEY (account_id, livemode, fingerprint);

-- Invoice numbers are unique per mode. Both modes continue from the shared sequence, so no number
-- either mode has used is handed out again.
ALTER TABLE invoice_number_sequences ADD COLUMN livemode BOOLEAN;
UPDATE invoice_number_sequences SET livemode = TRUE;
INSERT INTO invoice_number_sequences (account_id, customer, prefix, last_sequence, livemode)
    SELECT account_id, customer, prefix, last_sequence, FALSE FROM invoice_number_sequences;
ALTER TABLE invoice_number_sequences ALTER COLUMN livemode SET NOT NULL;
ALTER TABLE invoice_number_sequences DROP CONSTRAINT invoice_number_sequences_pkey;
ALTER TABLE invoice_number_sequences ADD PRIMARY KEY (account_id, livemode, customer);
DROP INDEX invoice_number_prefixes;
CREATE UNIQUE INDEX invoice_number_prefixes ON invoice_number_sequences (account_id, livemode, prefix);
DROP INDEX invoices_number;
CREATE UNIQUE INDEX invoices_number ON invoices (account_id, livemode, number) WHERE number IS NOT NULL;

-- Customer balances are per mode. A transaction takes the mode of its invoice (live when it has
-- none); each mode's ledger is rebuilt from its transactions (a balance is the sum of its
-- postings, and the next sequence follows the highest one the mode has).
ALTER TABLE customer_balance_transactions ADD COLUMN livemode BOOLEAN;
UPDATE customer_balance_transactions t SET livemode = i.livemode FROM invoices i WHERE i.id = t.invoice;
UPDATE customer_balance_transactions SET livemode = TRUE WHERE livemode IS NULL;
ALTER TABLE customer_balance_transactions ALTER COLUMN livemode SET NOT NULL;
DROP INDEX customer_balance_transactions_ledger;
CREATE UNIQUE INDEX customer_balance_transactions_ledger
    ON customer_balance_transactions (account_id, livemode, customer, currency, sequence);
DROP INDEX customer_balance_transactions_customer;
CREATE INDEX customer_balance_transactions_customer
    ON customer_balance_transactions (account_id, livemode, customer, id);

CREATE TABLE customer_balances_by_mode (
    account_id   TEXT COLLATE "C" NOT NULL,
    livemode     BOOLEAN NOT NULL,
    customer     TEXT COLLATE "C" NOT NULL,
    currency     TEXT COLLATE "C" NOT NULL,
    balance      BIGINT NOT NULL,
    transactions BIGINT NOT NULL CHECK (transactions >= 0),
    updated      BIGINT NOT NULL,
    PRIMARY KEY (account_id, livemode, customer, currency)
);
INSERT INTO customer_balances_by_mode (account_id, livemode, customer, currency, balance, transactions, updated)
    SELECT account_id, livemode, customer, currency, SUM(amount), MAX(sequence), MAX(created)
    FROM customer_balance_transactions GROUP BY account_id, livemode, customer, currency;
INSERT INTO customer_balances_by_mode (account_id, livemode, customer, currency, balance, transactions, updated)
    SELECT b.account_id, TRUE, b.customer, b.currency, b.balance, b.transactions, b.updated
    FROM customer_balances b
    WHERE NOT EXISTS (SELECT 1 FROM customer_balances_by_mode m WHERE m.account_id = b.account_id
                      AND m.customer = b.customer AND m.currency = b.currency);
DROP TABLE customer_balances;
ALTER TABLE customer_balances_by_mode RENAME TO customer_balances;
ALTER TABLE customer_balances RENAME CONSTRAINT customer_balances_by_mode_pkey TO customer_balances_pkey;

-- Lists and lookups page within one scope.
DROP INDEX invoices_account;
DROP INDEX invoices_customer;
CREATE INDEX invoices_scope ON invoices (account_id, livemode, id);
CREATE INDEX invoices_customer ON invoices (account_id, livemode, customer, id);
DROP INDEX invoice_payments_account;
DROP INDEX invoice_payments_invoice;
DROP INDEX invoice_payments_payment;
CREATE INDEX invoice_payments_scope ON invoice_payments (account_id, livemode, id);
CREATE INDEX invoice_payments_invoice ON invoice_payments (account_id, livemode, invoice, id);
CREATE INDEX invoice_payments_payment ON invoice_payments (account_id, livemode, payment, id);
DROP INDEX invoice_items_account;
DROP INDEX invoice_items_customer;
DROP INDEX invoice_items_invoice;
DROP INDEX invoice_items_pending;
CREATE INDEX invoice_items_scope ON invoice_items (account_id, livemode, id);
CREATE INDEX invoice_items_customer ON invoice_items (account_id, livemode, customer, id);
CREATE INDEX invoice_items_invoice ON invoice_items (account_id, livemode, invoice, id);
CREATE INDEX invoice_items_pending ON invoice_items (account_id, livemode, customer, currency, id) WHERE invoice IS NULL;
DROP INDEX invoice_lines_invoice;
CREATE INDEX invoice_lines_invoice ON invoice_lines (account_id, livemode, invoice, id);
