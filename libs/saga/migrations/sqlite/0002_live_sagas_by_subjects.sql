-- Live sagas of one kind on the same subjects (PayInvoice's one charge at a time): live sagas are
-- few, so a partial index keeps the lookup cheap however long the log grows.
CREATE INDEX sagas_live_subjects ON sagas (account_id, kind, subjects) WHERE state IN ('running', 'compensating');
