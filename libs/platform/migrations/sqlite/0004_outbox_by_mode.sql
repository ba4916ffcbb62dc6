-- Readers of an account's events see one mode only (Stripe keeps test and live events apart), so
-- the index they page by leads with (account, livemode).
CREATE INDEX outbox_events_scope_seq ON outbox_events (account_id, livemode, seq);
DROP INDEX outbox_events_account_seq;
