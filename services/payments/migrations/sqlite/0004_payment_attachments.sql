-- Which invoice each payment is attached to. A payment has at most one attachment that is not
-- released: the partial unique index enforces it, so concurrent reservations cannot both win.
-- What the payment contributes and its state are read from the payment itself when asked.
CREATE TABLE payment_attachments (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    payment      TEXT NOT NULL,
    payment_type TEXT NOT NULL,
    invoice      TEXT NOT NULL,
    saga_id      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('reserved', 'confirmed', 'released')),
    customer     TEXT NOT NULL,
    currency     TEXT NOT NULL,
    created      INTEGER NOT NULL,
    updated      INTEGER NOT NULL
);
-- Every call is idempotent on the saga: one attachment per (saga, payment).
CREATE UNIQUE INDEX payment_attachments_saga ON payment_attachments (account_id, saga_id, payment);
CREATE UNIQUE INDEX payment_attachments_active ON payment_attachments (account_id, payment)
    WHERE status <> 'released';
