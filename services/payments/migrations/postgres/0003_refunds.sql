-- Refunds of payment intents. `document` is the encoded settle.payments.v1.Refund as last written;
-- the other columns are projections of it for lookups, the list filters and the money checks.
-- What a payment intent has refunded in all is `payment_intents.amount_refunded`, whose CHECK keeps
-- it within `amount_received`; each refund adds its amount there in the transaction that inserts it.
CREATE TABLE refunds (
    id             TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL,
    livemode       BOOLEAN NOT NULL,
    payment_intent TEXT COLLATE "C" NOT NULL REFERENCES payment_intents (id),
    charge         TEXT COLLATE "C",
    status         TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    reason         TEXT,
    metadata       TEXT NOT NULL,
    created        BIGINT NOT NULL,
    document       BYTEA NOT NULL
);
-- Ids sort by creation time, so `id DESC` is newest first for every list.
CREATE INDEX refunds_account ON refunds (account_id, id);
CREATE INDEX refunds_payment_intent ON refunds (account_id, payment_intent, id);
CREATE INDEX refunds_charge ON refunds (account_id, charge, id);
CREATE INDEX refunds_created ON refunds (account_id, created, id);

-- `charge` in a refund request stands for the payment intent whose latest charge it is. Intents
-- written before this migration have no projection (their documents are not readable in SQL); they
-- are refunded by `payment_intent`.
ALTER TABLE payment_intents ADD COLUMN latest_charge TEXT COLLATE "C";
CREATE INDEX payment_intents_latest_charge ON payment_intents (account_id, latest_charge);
