-- Invoice items (`ii_…`): a charge for a customer, pending while `invoice` is NULL, else on that
-- invoice, where its line (`invoice_lines`) shows it. `document` is the encoded
-- settle.invoices.v1.InvoiceItem; the other columns are projections for lookups and lists.
CREATE TABLE invoice_items (
    id         TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    livemode   BOOLEAN NOT NULL,
    customer   TEXT COLLATE "C" NOT NULL,
    currency   TEXT NOT NULL,
    invoice    TEXT COLLATE "C",
    amount     BIGINT NOT NULL,
    created    BIGINT NOT NULL,
    document   BYTEA NOT NULL
);
CREATE INDEX invoice_items_account ON invoice_items (account_id, id);
CREATE INDEX invoice_items_customer ON invoice_items (account_id, customer, id);
CREATE INDEX invoice_items_invoice ON invoice_items (account_id, invoice, id);
CREATE INDEX invoice_items_pending ON invoice_items (account_id, customer, currency, id) WHERE invoice IS NULL;

-- Invoice lines (`il_…`), one per invoice item on a draft or finalized invoice, in id (creation)
-- order. `document` is the encoded settle.invoices.v1.InvoiceLineItem.
CREATE TABLE invoice_lines (
    id           TEXT COLLATE "C" PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL,
    invoice      TEXT COLLATE "C" NOT NULL,
    invoice_item TEXT COLLATE "C" NOT NULL,
    amount       BIGINT NOT NULL,
    document     BYTEA NOT NULL
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (account_id, invoice, id);
-- An invoice item shows as at most one line.
CREATE UNIQUE INDEX invoice_lines_item ON invoice_lines (account_id, invoice_item);

-- Inline tax rates (`txr_…`) recorded from `tax_amounts[].tax_rate_data`: identical data within an
-- account reuses the same id (`fingerprint` is a hash of the data).
CREATE TABLE inline_tax_rates (
    account_id  TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, fingerprint)
);

-- Each customer's invoice numbering: the prefix derived once for the customer and the last sequence
-- number used. Finalization locks the row, so two finalizations never take the same number.
CREATE TABLE invoice_number_sequences (
    account_id    TEXT COLLATE "C" NOT NULL,
    customer      TEXT COLLATE "C" NOT NULL,
    prefix        TEXT COLLATE "C" NOT NULL,
    last_sequence BIGINT NOT NULL CHECK (last_sequence >= 0),
    PRIMARY KEY (account_id, customer)
);
-- Two customers of an account never share a prefix, so their numbers cannot collide.
CREATE UNIQUE INDEX invoice_number_prefixes ON invoice_number_sequences (account_id, prefix);

-- A customer's balance ledger per currency: the balance now and how many transactions made it.
-- Every posting locks this row, so postings of one ledger are applied one at a time.
CREATE TABLE customer_balances (
    account_id   TEXT COLLATE "C" NOT NULL,
    customer     TEXT COLLATE "C" NOT NULL,
    currency     TEXT NOT NULL,
    balance      BIGINT NOT NULL,
    transactions BIGINT NOT NULL CHECK (transactions >= 0),
    updated      BIGINT NOT NULL,
    PRIMARY KEY (account_id, customer, currency)
);

-- Customer balance transactions (`cbtxn_…`). `sequence` is the transaction's position in its ledger
-- (1, 2, 3, …): `ending_balance` of n is `ending_balance` of n − 1 plus `amount`.
CREATE TABLE customer_balance_transactions (
    id             TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL,
    customer       TEXT COLLATE "C" NOT NULL,
    currency       TEXT NOT NULL,
    sequence       BIGINT NOT NULL CHECK (sequence >= 1),
    type           TEXT NOT NULL,
    invoice        TEXT COLLATE "C",
    credit_note    TEXT COLLATE "C",
    amount         BIGINT NOT NULL,
    ending_balance BIGINT NOT NULL,
    created        BIGINT NOT NULL,
    document       BYTEA NOT NULL
);
CREATE UNIQUE INDEX customer_balance_transactions_ledger
    ON customer_balance_transactions (account_id, customer, currency, sequence);
CREATE INDEX customer_balance_transactions_customer ON customer_balance_transactions (account_id, customer, id);
