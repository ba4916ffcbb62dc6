-- Test and live mode are separate data (Stripe): every row carries the mode it was made in and
-- every query is scoped by (account_id, livemode). Lines and refunds take the mode of their note;
-- an invoice's row takes the mode of its notes. Where the mode cannot be derived the row is taken
-- as live, the side on which an error cannot touch real money twice.
ALTER TABLE credit_note_lines ADD COLUMN livemode BOOLEAN;
UPDATE credit_note_lines l SET livemode = n.livemode FROM credit_notes n WHERE n.id = l.credit_note;
ALTER TABLE credit_note_lines ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE credit_note_refunds ADD COLUMN livemode BOOLEAN;
UPDATE credit_note_refunds r SET livemode = n.livemode FROM credit_notes n WHERE n.id = r.credit_note;
ALTER TABLE credit_note_refunds ALTER COLUMN livemode SET NOT NULL;

ALTER TABLE credit_note_invoices ADD COLUMN livemode BOOLEAN;
UPDATE credit_note_invoices i SET livemode = COALESCE(
    (SELECT bool_and(n.livemode) FROM credit_notes n WHERE n.account_id = i.account_id AND n.invoice = i.invoice),
    TRUE);
ALTER TABLE credit_note_invoices ALTER COLUMN livemode SET NOT NULL;
ALTER TABLE credit_note_invoices DROP CONSTRAINT credit_note_invoices_pkey;
ALTER TABLE credit_note_invoices ADD PRIMARY KEY (account_id, livemode, invoice);

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
