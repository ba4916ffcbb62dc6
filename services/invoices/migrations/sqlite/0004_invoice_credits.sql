-- The credit each credit note gives its invoice (CreditNoteLedgerService): reserved while the
-- credit-notes service issues the note, then applied (the invoice's amounts and the customer's
-- balance show it), released (the issue saga compensated) or reversed (the note was voided).
-- One row per issue saga: `saga_id` is the idempotency key of Reserve, Apply and Release, and a
-- credit note has at most one credit. `document` is the encoded settle.invoices.v1.InvoiceCredit;
-- the other columns are projections of it (plus the request's refund and out-of-band parts, kept to
-- recognise a repeated Reserve) for lookups and the money constraints below. Every change happens
-- in a write transaction that read the invoice first (SQLite has one writer at a time); the CHECKs
-- are the database's backstop behind the ledger rules.
CREATE TABLE invoice_credits (
    account_id                            TEXT NOT NULL,
    saga_id                               TEXT NOT NULL,
    invoice                               TEXT NOT NULL,
    credit_note                           TEXT NOT NULL,
    status                                TEXT NOT NULL
        CHECK (status IN ('reserved', 'applied', 'released', 'reversed')),
    amount                                INTEGER NOT NULL CHECK (amount > 0),
    pre_payment_amount                    INTEGER NOT NULL CHECK (pre_payment_amount >= 0),
    post_payment_amount                   INTEGER NOT NULL CHECK (post_payment_amount >= 0),
    credit_amount                         INTEGER NOT NULL CHECK (credit_amount >= 0),
    refund_amount                         INTEGER NOT NULL CHECK (refund_amount >= 0),
    out_of_band_amount                    INTEGER NOT NULL CHECK (out_of_band_amount >= 0),
    customer                              TEXT NOT NULL,
    currency                              TEXT NOT NULL,
    credit_note_index                     INTEGER NOT NULL CHECK (credit_note_index >= 1),
    customer_balance_transaction          TEXT,
    reversal_saga_id                      TEXT,
    reversal_customer_balance_transaction TEXT,
    created                               INTEGER NOT NULL,
    updated                               INTEGER NOT NULL,
    document                              BLOB NOT NULL,
    PRIMARY KEY (account_id, saga_id),
    CONSTRAINT invoice_credits_split CHECK (pre_payment_amount + post_payment_amount = amount),
    CONSTRAINT invoice_credits_post_payment
        CHECK (post_payment_amount = refund_amount + credit_amount + out_of_band_amount),
    -- Exactly the reversed credits name the void saga that reversed them.
    CONSTRAINT invoice_credits_reversal CHECK ((status = 'reversed') = (reversal_saga_id IS NOT NULL)),
    -- A balance credit was posted exactly when a credit with a credit_amount was applied, and taken
    -- back exactly when it was reversed.
    CONSTRAINT invoice_credits_posted CHECK (
        (customer_balance_transaction IS NOT NULL)
            = (credit_amount > 0 AND status IN ('applied', 'reversed'))),
    CONSTRAINT invoice_credits_taken_back CHECK (
        (reversal_customer_balance_transaction IS NOT NULL)
            = (credit_amount > 0 AND status = 'reversed'))
);
-- At most one credit per credit note.
CREATE UNIQUE INDEX invoice_credits_credit_note ON invoice_credits (account_id, credit_note);
-- A void saga reverses one credit.
CREATE UNIQUE INDEX invoice_credits_reversal_saga
    ON invoice_credits (account_id, reversal_saga_id) WHERE reversal_saga_id IS NOT NULL;
-- The credit notes of an invoice are numbered -CN-01, -CN-02, …: no two live credits share an index.
CREATE UNIQUE INDEX invoice_credits_index
    ON invoice_credits (account_id, invoice, credit_note_index) WHERE status <> 'released';
