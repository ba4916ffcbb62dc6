//! The migration that separates test and live mode (0006), on a database that already holds rows
//! from before it: every row gets its parent's mode, a row whose mode cannot be derived is live,
//! and the scoped queries find each row in its own mode only. Both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use settle_payments::store::attachments;
use settle_platform::Scope;
use settle_platform::backend_tests;
use settle_platform::db::Migrations;
use settle_platform::testing::TestDatabase;
use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The payments migrations before test and live mode were separated.
fn before_modes() -> &'static Migrations {
    let upto = |all: &Migrator| -> &'static Migrator {
        let older: Vec<_> = all.migrations.iter().filter(|m| m.version < 6).cloned().collect();
        assert_eq!(older.len(), 5);
        Box::leak(Box::new(Migrator::with_migrations(older)))
    };
    Box::leak(Box::new(Migrations::new("payments", upto(&POSTGRES), upto(&SQLITE))))
}

backend_tests! {
    rows_from_before_the_mode_split_keep_their_mode => |database: TestDatabase| async move {
        let old = database.connect(&[before_modes()]).await.unwrap();
        for (id, livemode) in [("pi_testmode", false), ("pi_livemode", true)] {
            sqlx::query(
                "INSERT INTO payment_intents (id, account_id, livemode, status, amount, amount_capturable, \
                   amount_received, currency, customer, metadata, created, document) \
                 VALUES ($1, 'acct_a', $2, 'succeeded', 100, 0, 100, 'usd', 'cus_a', '{}', 1, $3)",
            )
            .bind(id)
            .bind(livemode)
            .bind(Vec::<u8>::new())
            .execute(old.pool())
            .await
            .unwrap();
        }
        for (id, payment) in [("att_1", "pi_testmode"), ("att_2", "pi_livemode"), ("att_3", "pi_unknown")] {
            sqlx::query(
                "INSERT INTO payment_attachments (id, account_id, payment, payment_type, invoice, saga_id, \
                   status, customer, currency, created, updated) \
                 VALUES ($1, 'acct_a', $2, 'payment_intent', 'in_1', $1, 'reserved', 'cus_a', 'usd', 1, 1)",
            )
            .bind(id)
            .bind(payment)
            .execute(old.pool())
            .await
            .unwrap();
        }
        drop(old);

        let db = database.connect(&[&settle_payments::MIGRATIONS]).await.expect("0006 applies over existing rows");
        let (test, live) = (Scope::new("acct_a", false), Scope::new("acct_a", true));
        let found = |scope: Scope, payment: &'static str| {
            let db = db.clone();
            async move { attachments::find_active(db.pool(), &scope, payment).await.unwrap().map(|a| a.id) }
        };
        assert_eq!(found(test.clone(), "pi_testmode").await.as_deref(), Some("att_1"));
        assert_eq!(found(live.clone(), "pi_testmode").await, None, "a test row is not live");
        assert_eq!(found(live.clone(), "pi_livemode").await.as_deref(), Some("att_2"));
        assert_eq!(found(test.clone(), "pi_livemode").await, None);
        // Nothing says which mode att_3 was made in: it is taken as live.
        assert_eq!(found(live, "pi_unknown").await.as_deref(), Some("att_3"));
        assert_eq!(found(test, "pi_unknown").await, None);
    };
}
