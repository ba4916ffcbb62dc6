//! Throwaway databases for tests: a fresh SQLite file or a uniquely named PostgreSQL database (on
//! the server `DATABASE_URL` points at), dropped when the test ends, so tests run in parallel and
//! leave nothing behind. PostgreSQL tests are skipped when `DATABASE_URL` is unset, unless
//! `SETTLE_REQUIRE_POSTGRES=1` (CI) makes that a failure.

use std::path::PathBuf;

use sqlx::{Connection, Executor};

use crate::db::{Backend, Db, DbError, Migrations, PoolSettings};
use crate::ids::IdPrefix;

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new database on `backend`, or `None` for PostgreSQL without `DATABASE_URL`.
    pub async fn new(backend: Backend) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A new SQLite file in the system temp folder.
    pub fn sqlite() -> TestDatabase {
        let name = IdPrefix::Request.generate().replace("req_", "settle-test-");
        let path = std::env::temp_dir().join(format!("{name}.db"));
        TestDatabase {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            cleanup: Cleanup::File(path),
        }
    }

    /// A new PostgreSQL database, or `None` when `DATABASE_URL` is unset (and not required).
    pub async fn postgres() -> Option<TestDatabase> {
        let admin_url = match std::env::var("DATABASE_URL") {
            Ok(url) if Backend::from_url(&url).ok() == Some(Backend::Postgres) => url,
            _ => {
                assert!(
                    std::env::var_os("SETTLE_REQUIRE_POSTGRES").is_none(),
                    "SETTLE_REQUIRE_POSTGRES is set but DATABASE_URL is not a postgres:// URL"
                );
                eprintln!("skipping PostgreSQL test: DATABASE_URL is not set");
                return None;
            }
        };
        match Self::postgres_at(&admin_url).await {
            Ok(database) => Some(database),
            Err(e) => panic!("cannot create a test database on DATABASE_URL: {e}"),
        }
    }

    /// A new PostgreSQL database on the server `admin_url` points at (a role that may create
    /// databases), dropped when this value is dropped. For tools that take the server as an
    /// argument (the load tool) and want an error, not a panic, when it is unreachable.
    pub async fn postgres_at(admin_url: &str) -> Result<TestDatabase, sqlx::Error> {
        let name = IdPrefix::Request.generate().replace("req_", "settle_test_").to_ascii_lowercase();
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
        let _ = admin.close().await;
        Ok(TestDatabase {
            url: with_database(admin_url, &name),
            backend: Backend::Postgres,
            cleanup: Cleanup::Database { admin_url: admin_url.to_owned(), name },
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pool on this database with the platform's and `migrations`' tables applied.
    pub async fn connect(&self, migrations: &[&Migrations]) -> Result<Db, DbError> {
        let db = Db::connect(&self.url, &PoolSettings { max_connections: 8, ..Default::default() }).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; a separate thread with its own runtime can block.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    runtime.block_on(async {
                        let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                        admin
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await
                            .ok()?;
                        admin.close().await.ok()
                    })
                })
                .join();
                if !matches!(dropped, Ok(Some(()))) {
                    eprintln!("could not drop test database {}", self.url);
                }
            }
        }
    }
}

/// Runs an async test body once per backend: `backend_tests!(name => |db| async move { … })` defines
/// `mod name { sqlite, postgres }`, each given a fresh [`TestDatabase`].
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:expr;)+) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let database = $crate::testing::TestDatabase::new($crate::db::Backend::Sqlite)
                        .await
                        .expect("sqlite is always available");
                    ($body)(database).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(database) =
                        $crate::testing::TestDatabase::new($crate::db::Backend::Postgres).await
                    {
                        ($body)(database).await;
                    }
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_not_a_panic() {
        // Port 1 on loopback has no PostgreSQL behind it.
        let result = TestDatabase::postgres_at("postgres://postgres@127.0.0.1:1/postgres").await;
        assert!(result.is_err());
    }

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
