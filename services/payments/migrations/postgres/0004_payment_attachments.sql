-- Which invoice each payment is attached to. A payment has at most one attachment that is not
-- released: the partial unique index enforces it, so concurrent reservations cannot both win.
-- What the payment contributes and its state are read from the payment itself when asked.
CREATE TABLE payment_attachments (
    id           TEXT COLLATE "C" PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL,
    payment      TEXT COLLATE "C" NOT NULL,
    payment_type TEXT NOT NULL,
    invoice      TEXT COLLATE "C" NOT NULL,
    saga_id      TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('reserved', 'confirmed', 'released')),
    customer     TEXT COLLATE "C" NOT NULL,
    currency     TEXT NOT NULL,
    created      BIGINT NOT NULL,
    updated      BIGINT NOT NULL
);
-- Every call is idempotent on the saga: one attachment per (saga, payment).
CREATE UNIQUE INDEX payment_attachments_saga ON payment_attachments (account_id, saga_id, payment);
CREATE UNIQUE INDEX payment_attachments_active ON payment_attachments (account_id, payment)
    WHERE status <> 'released';
