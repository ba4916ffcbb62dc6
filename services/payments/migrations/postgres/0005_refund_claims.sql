-- Refund claims: which refunds the credit-notes issue saga linked to a credit note, and for how
-- much. A refund is never linked, over all credit notes, for more than it refunded: what is claimed
-- is kept on the refund itself, and the CHECKs below are the database's backstop behind the check
-- the claim makes under the refund's row lock.
ALTER TABLE refunds ADD COLUMN amount_claimed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD CONSTRAINT refunds_amount_claimed
    CHECK (amount_claimed >= 0 AND amount_claimed <= amount);
ALTER TABLE payment_record_refunds ADD COLUMN amount_claimed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payment_record_refunds ADD CONSTRAINT payment_record_refunds_amount_claimed
    CHECK (amount_claimed >= 0 AND amount_claimed <= amount);

-- One row per saga: the saga id is the idempotency key of every call. A release before any claim
-- leaves a `released` row with an empty credit note and invoice, so a late claim claims nothing.
CREATE TABLE refund_claims (
    account_id  TEXT COLLATE "C" NOT NULL,
    saga_id     TEXT COLLATE "C" NOT NULL,
    credit_note TEXT COLLATE "C" NOT NULL,
    invoice     TEXT COLLATE "C" NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('claimed', 'released')),
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    PRIMARY KEY (account_id, saga_id)
);

-- The refunds a saga claimed, in the order it returns them. A refund is a Refund (`refund`) or a
-- refund reported on a payment record (`payment_record`, `refund_group` = its refund_reference).
-- Items never change: a release only marks the saga's row and gives the amounts back.
CREATE TABLE refund_claim_items (
    account_id       TEXT COLLATE "C" NOT NULL,
    saga_id          TEXT COLLATE "C" NOT NULL,
    ordinal          BIGINT NOT NULL,
    refund_type      TEXT NOT NULL,
    refund           TEXT COLLATE "C" REFERENCES refunds (id),
    payment_record   TEXT COLLATE "C",
    refund_group     TEXT COLLATE "C",
    payment          TEXT COLLATE "C" NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    created_by_claim BOOLEAN NOT NULL,
    PRIMARY KEY (account_id, saga_id, ordinal),
    FOREIGN KEY (account_id, saga_id) REFERENCES refund_claims (account_id, saga_id),
    FOREIGN KEY (account_id, refund_group)
        REFERENCES payment_record_refunds (account_id, refund_reference),
    CHECK (
        (refund_type = 'refund' AND refund IS NOT NULL
            AND payment_record IS NULL AND refund_group IS NULL)
        OR (refund_type = 'payment_record_refund' AND refund IS NULL
            AND payment_record IS NOT NULL AND refund_group IS NOT NULL)
    )
);
