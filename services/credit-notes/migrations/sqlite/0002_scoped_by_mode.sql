-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Lines and refunds take the mode of their note;
-- an invoice's row takes the mode of its notes. Where the mode cannot be derived the row is taken
-- as live, the side on which an error cannot touch real money twice. (SQLite cannot change a
-- primary key in place: credit_note_invoices is rebuilt.)
ALTER TABLE credit_note_lines ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE credit_note_lines SET livemode = COALESCE(
    (SELECT livemode FROM credit_notes WHERE id = credit_note_lines.credit_note), 1);

ALTER TABLE credit_note_refunds ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1;
UPDATE credit_note_refunds SET livemode = COALESCE(
    (SELECT livemode FROM credit_notes WHERE id = credit_note_refunds.credit_note), 1);

CREATE TABLE credit_note_invoices_by_mode (
    account_id    TEXT NOT NULL,
    livemode      INTEGER NOT NULL,
    invoice       TEXT NOT NULL,
    invoice_total INTEGER NOT NULL CHECK (invoice_total >= 0),
    credited      INTEGER NOT NULL CHECK (credited >= 0),
    notes         INTEGER NOT NULL CHECK (notes >= 0),
    PRIMARY KEY (account_id, livemode, invoice),
    CHECK (credited <= invoice_total)
);
INSERT INTO credit_note_invoices_by_mode (account_id, livemode, invoice, invoice_total, credited, notes)
    SELECT account_id,
           COALESCE((SELECT MIN(n.livemode) FROM credit_notes n
                     WHERE n.account_id = i.account_id AND n.invoice = i.invoice), 1),
           invoice, invoice_total, credited, notes
    FROM credit_note_invoices i;
DROP TABLE credit_note_invoices;
ALTER TABLE credit_note_invoices_by_mode RENAME TO credit_note_invoices;

DROP INDEX credit_notes_account;
DROP INDEX credit_notes_invoice;
DROP INDEX credit_notes_customer;
CREATE INDEX credit_notes_scope ON credit_notes (account_id, livemode, id);
CREATE INDEX credit_notes_invoice ON credit_notes (account_id, livemode, invoice, id);
CREATE INDEX credit_notes_customer ON credit_notes (account_id, livemode, customer, id);
DROP INDEX credit_note_lines_note;
DROP INDEX credit_note_lines_invoice_line;
CREATE INDEX credit_note_lines_note ON credit_note_lines (account_id, livemode, credit_note, id);
CREATE INDEX credit_note_lines_invoice_line ON credit_note_lines (account_id, livemode, invoice_line_item)
    WHERE invoice_line_item IS NOT NULL;
DROP INDEX credit_note_refunds_key;
CREATE INDEX credit_note_refunds_key ON credit_note_refunds (account_id, livemode, refund_key);
