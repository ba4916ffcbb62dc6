-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Tables that did not carry the mode get it from
-- the invoice they belong to; where it cannot be derived the row is taken as live, the side on
-- which an error cannot touch real money twice. (SQLite cannot change a primary key in place:
-- those tables are rebuilt.)
ALTER TABLE invoice_lines ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE invoice_lines SET livemode = COALESCE((SELECT livemode FROM invoices WHERE id = invoice_lines.invoice), 1);

ALTER TABLE invoice_credits ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE invoice_credits SET livemode = COALESCE((SELECT livemode FROM invoices WHERE id = invoice_credits.invoice), 1);

-- Inline tax rate ids are derived data: both modes keep the ids they used.
CREATE TABLE inline_tax_rates_by_mode (
    account_id  TEXT NOT NULL,
    livemode    INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    id          TEXT NOT NULL,
    PRIMARY KEY (account_id, livemode, fingerprint)
);
INSERT INTO inline_tax_rates_by_mode (account_id, livemode, fingerprint, id)
    SELECT account_id, 1, fingerprint, id FROM inline_tax_rates
    UNION ALL SELECT account_id, 0, fingerprint, id FROM inline_tax_rates;
DROP TABLE inline_tax_rates;
ALTER TABLE inline_tax_rates_by_mode RENAME TO inline_tax_rates;

-- Invoice numbers are unique per mode. Both modes continue from the shared sequence, so no number
-- either mode has used is handed out again.
CREATE TABLE invoice_number_sequences_by_mode (
    account_id    TEXT NOT NULL,
    livemode      INTEGER NOT NULL,
    customer      TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    last_sequence INTEGER NOT NULL CHECK (last_sequence >= 0),
    PRIMARY KEY (account_id, livemode, customer)
);
INSERT INTO invoice_number_sequences_by_mode (account_id, livemode, customer, prefix, last_sequence)
    SELECT account_id, 1, customer, prefix, last_sequence FROM invoice_number_sequences
    UNION ALL SELECT account_id, 0, customer, prefix, last_sequence FROM invoice_number_sequences;
DROP TABLE invoice_number_sequences;
ALTER TABLE invoice_number_sequences_by_mode RENAME TO invoice_number_sequences;
CREATE UNIQUE INDEX invoice_number_prefixes ON invoice_number_sequences (account_id, livemode, prefix);
DROP INDEX invoices_number;
CREATE UNIQUE INDEX invoices_number ON invoices (account_id, livemode, number) WHERE number IS NOT NULL;

-- Customer balances are per mode. A transaction takes the mode of its invoice (live when it has
-- none); each mode's ledger is rebuilt from its transactions (a balance is the sum of its
-- postings, and the next sequence follows the highest one the mode has).
ALTER TABLE customer_balance_transactions ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE customer_balance_transactions SET livemode = COALESCE(
    (SELECT livemode FROM invoices WHERE id = customer_balance_transactions.invoice), 1);
DROP INDEX customer_balance_transactions_ledger;
CREATE UNIQUE INDEX customer_balance_transactions_ledger
    ON customer_balance_transactions (account_id, livemode, customer, currency, sequence);
DROP INDEX customer_balance_transactions_customer;
CREATE INDEX customer_balance_transactions_customer
    ON customer_balance_transactions (account_id, livemode, customer, id);

CREATE TABLE customer_balances_by_mode (
    account_id   TEXT NOT NULL,
    livemode     INTEGER NOT NULL,
    customer     TEXT NOT NULL,
    currency     TEXT NOT NULL,
    balance      INTEGER NOT NULL,
    transactions INTEGER NOT NULL CHECK (transactions >= 0),
    updated      INTEGER NOT NULL,
    PRIMARY KEY (account_id, livemode, customer, currency)
);
INSERT INTO customer_balances_by_mode (account_id, livemode, customer, currency, balance, transactions, updated)
    SELECT account_id, livemode, customer, currency, SUM(amount), MAX(sequence), MAX(created)
    FROM customer_balance_transactions GROUP BY account_id, livemode, customer, currency;
INSERT INTO customer_balances_by_mode (account_id, livemode, customer, currency, balance, transactions, updated)
    SELECT b.account_id, 1, b.customer, b.currency, b.balance, b.transactions, b.updated
    FROM customer_balances b
    WHERE NOT EXISTS (SELECT 1 FROM customer_balances_by_mode m WHERE m.account_id = b.account_id
                      AND m.customer = b.customer AND m.currency = b.currency);
DROP TABLE customer_balances;
ALTER TABLE customer_balances_by_mode RENAME TO customer_balances;

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
