-- Invoice payments: which payment (intent or record) an invoice counts, for how much, and whether
-- it is still pending (open), counted (paid) or no longer counted (canceled). `saga_id` is the attach
-- saga that created it: detaching releases that saga's attachment in payments.
CREATE TABLE invoice_payments (
    id               TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL,
    livemode         BOOLEAN NOT NULL,
    invoice          TEXT COLLATE "C" NOT NULL,
    payment_type     TEXT NOT NULL CHECK (payment_type IN ('payment_intent', 'payment_record')),
    payment          TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'paid', 'canceled')),
    amount_requested BIGINT NOT NULL CHECK (amount_requested >= 0),
    amount_paid      BIGINT CHECK (amount_paid >= 0),
    currency         TEXT NOT NULL,
    is_default       BOOLEAN NOT NULL,
    saga_id          TEXT COLLATE "C" NOT NULL,
    created          BIGINT NOT NULL,
    document         BYTEA NOT NULL
);
-- A payment counts toward at most one invoice: the invoices store enforces it too, not only payments.
CREATE UNIQUE INDEX invoice_payments_live ON invoice_payments (account_id, payment) WHERE status <> 'canceled';
CREATE UNIQUE INDEX invoice_payments_saga ON invoice_payments (account_id, saga_id);
CREATE INDEX invoice_payments_account ON invoice_payments (account_id, id);
CREATE INDEX invoice_payments_invoice ON invoice_payments (account_id, invoice, id);
CREATE INDEX invoice_payments_payment ON invoice_payments (account_id, payment, id);

-- Where this service is in each producer's event stream (e.g. the payments service's), advanced in
-- the same transaction that applies an event, so a redelivered event has no second effect.
-- One replica at a time follows a producer: it holds the lease (unix ms) and renews it as it goes.
CREATE TABLE event_cursors (
    producer         TEXT PRIMARY KEY,
    cursor           TEXT NOT NULL,
    holder           TEXT,
    lease_expires_at BIGINT NOT NULL,
    updated          BIGINT NOT NULL
);
