-- Credit notes: each stored as its Stripe-shaped document (`settle.creditnotes.v1.CreditNote`) plus
-- the columns lookups, lists and the money rules read. A note is `pending` while its issue saga
-- runs (invisible to clients but counted toward the invoice's limits), then `issued`, later
-- perhaps `void`; a note whose saga was refused is `failed` and counts for nothing.
CREATE TABLE credit_notes (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    account_id            TEXT COLLATE "C" NOT NULL,
    livemode              BOOLEAN NOT NULL,
    invoice               TEXT COLLATE "C" NOT NULL,
    customer              TEXT COLLATE "C" NOT NULL,
    customer_account      TEXT COLLATE "C",
    currency              TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'void', 'failed')),
    type                  TEXT NOT NULL CHECK (type IN ('pre_payment', 'post_payment', 'mixed')),
    number                TEXT,
    total                 BIGINT NOT NULL CHECK (total > 0),
    pre_payment_amount    BIGINT NOT NULL CHECK (pre_payment_amount >= 0),
    post_payment_amount   BIGINT NOT NULL CHECK (post_payment_amount >= 0),
    credit_amount         BIGINT NOT NULL CHECK (credit_amount >= 0),
    -- The new refund (`refund_amount`) and the linked `refunds[]`.
    refund_amount         BIGINT NOT NULL CHECK (refund_amount >= 0),
    linked_refunds_amount BIGINT NOT NULL CHECK (linked_refunds_amount >= 0),
    out_of_band_amount    BIGINT NOT NULL CHECK (out_of_band_amount >= 0),
    amount_shipping       BIGINT NOT NULL CHECK (amount_shipping >= 0),
    issue_saga_id         TEXT COLLATE "C" NOT NULL,
    -- The void saga working on the note, while one is.
    void_saga_id          TEXT COLLATE "C",
    created               BIGINT NOT NULL,
    voided_at             BIGINT,
    document              BYTEA NOT NULL,
    CHECK (pre_payment_amount + post_payment_amount = total),
    CHECK (post_payment_amount = refund_amount + linked_refunds_amount + credit_amount + out_of_band_amount),
    CHECK ((status = 'void') = (voided_at IS NOT NULL)),
    CHECK (status NOT IN ('issued', 'void') OR number IS NOT NULL),
    CHECK (void_saga_id IS NULL OR status = 'issued')
);
CREATE INDEX credit_notes_account ON credit_notes (account_id, id);
CREATE INDEX credit_notes_invoice ON credit_notes (account_id, invoice, id);
CREATE INDEX credit_notes_customer ON credit_notes (account_id, customer, id);

-- The lines of each note, in the note's order (ids increase in creation order).
CREATE TABLE credit_note_lines (
    id                TEXT COLLATE "C" PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    credit_note       TEXT COLLATE "C" NOT NULL REFERENCES credit_notes (id),
    invoice_line_item TEXT COLLATE "C",
    amount            BIGINT NOT NULL CHECK (amount > 0),
    document          BYTEA NOT NULL
);
CREATE INDEX credit_note_lines_note ON credit_note_lines (account_id, credit_note, id);
CREATE INDEX credit_note_lines_invoice_line ON credit_note_lines (account_id, invoice_line_item)
    WHERE invoice_line_item IS NOT NULL;

-- The refunds each note links or created, by refund (`re_…`) or payment record refund
-- (`pr_…/<refund_group>`), for "never linked for more than it refunded".
CREATE TABLE credit_note_refunds (
    account_id      TEXT COLLATE "C" NOT NULL,
    credit_note     TEXT COLLATE "C" NOT NULL REFERENCES credit_notes (id),
    position        INTEGER NOT NULL,
    refund_key      TEXT COLLATE "C" NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    created_by_note BOOLEAN NOT NULL,
    PRIMARY KEY (credit_note, position)
);
CREATE INDEX credit_note_refunds_key ON credit_note_refunds (account_id, refund_key);

-- One row per credited invoice: the row every new note of the invoice locks, so notes of one
-- invoice are checked one at a time, and the database's backstop for "the non-void notes of an
-- invoice never exceed its total". `notes` counts the notes that were issued or may be (for the
-- number a preview shows).
CREATE TABLE credit_note_invoices (
    account_id    TEXT COLLATE "C" NOT NULL,
    invoice       TEXT COLLATE "C" NOT NULL,
    invoice_total BIGINT NOT NULL CHECK (invoice_total >= 0),
    credited      BIGINT NOT NULL CHECK (credited >= 0),
    notes         INTEGER NOT NULL CHECK (notes >= 0),
    PRIMARY KEY (account_id, invoice),
    CHECK (credited <= invoice_total)
);
