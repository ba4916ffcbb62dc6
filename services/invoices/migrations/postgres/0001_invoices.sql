-- Invoices. `document` is the encoded settle.invoices.v1.Invoice as last written (without its
-- `lines` and `payments` lists, which have their own tables); the other columns are projections of
-- it for lookups, lists, search and the money constraints below.
CREATE TABLE invoices (
    id                TEXT COLLATE "C" PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    livemode          BOOLEAN NOT NULL,
    customer          TEXT COLLATE "C" NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    collection_method TEXT NOT NULL,
    number            TEXT COLLATE "C",
    due_date          BIGINT,
    total             BIGINT NOT NULL,
    amount_due        BIGINT NOT NULL CHECK (amount_due >= 0),
    amount_paid       BIGINT NOT NULL CHECK (amount_paid >= 0),
    amount_remaining  BIGINT NOT NULL CHECK (amount_remaining >= 0),
    metadata          TEXT NOT NULL,
    created           BIGINT NOT NULL,
    document          BYTEA NOT NULL
);
CREATE INDEX invoices_account ON invoices (account_id, id);
CREATE INDEX invoices_customer ON invoices (account_id, customer, id);
-- Invoice numbers are unique per account (Stripe leaves that to the caller for custom numbers;
-- settle refuses a duplicate).
CREATE UNIQUE INDEX invoices_number ON invoices (account_id, number) WHERE number IS NOT NULL;
