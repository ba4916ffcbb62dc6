-- Sagas are read per (account, livemode): a test key never sees a live saga.
CREATE INDEX sagas_scope ON sagas (account_id, livemode, id);
DROP INDEX sagas_account;
DROP INDEX sagas_live_subjects;
CREATE INDEX sagas_live_subjects ON sagas (account_id, livemode, kind, subjects) WHERE state IN ('running', 'compensating');
