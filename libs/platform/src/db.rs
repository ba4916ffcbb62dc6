//! Database access for both backends settle runs on: PostgreSQL in production and an embedded SQLite
//! file by default. The backend is chosen by the URL; every query goes through sqlx's `Any` driver
//! with `$n` placeholders, which both backends accept, and the few dialect differences (row locks,
//! how a write transaction starts) are expressed through [`Backend`].

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Transaction};

/// The database engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Recognises the engine from a connection URL.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    /// Picks the statement written for this backend.
    pub fn pick(self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Failures setting up or migrating a database. Query errors stay `sqlx::Error`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL must start with postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl,
    #[error("could not connect to the {backend} database")]
    Connect {
        backend: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not apply the {set} migrations")]
    Migrate {
        set: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("could not create the folder for the SQLite database")]
    CreateDir(#[source] std::io::Error),
}

/// How to size and time out the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections to PostgreSQL. SQLite always uses a small pool: it has one writer.
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

/// A service's migrations, one folder per dialect (`migrations/postgres`, `migrations/sqlite`).
pub struct Migrations {
    /// Names the set in errors and logs (`payments`).
    name: &'static str,
    postgres: Option<&'static Migrator>,
    sqlite: Option<&'static Migrator>,
    /// History table of a shared set, so it numbers its migrations apart from the service's own.
    history_table: Option<&'static str>,
}

impl Migrations {
    pub const fn new(name: &'static str, postgres: &'static Migrator, sqlite: &'static Migrator) -> Self {
        Migrations { name, postgres: Some(postgres), sqlite: Some(sqlite), history_table: None }
    }

    /// A service with no tables of its own yet: only the platform's are applied.
    pub const fn none(name: &'static str) -> Self {
        Migrations { name, postgres: None, sqlite: None, history_table: None }
    }

    /// Keeps this set's history in its own table (for sets shared by several services).
    pub const fn with_history_table(mut self, table: &'static str) -> Self {
        self.history_table = Some(table);
        self
    }

    fn for_backend(&self, backend: Backend) -> Option<&'static Migrator> {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Sqlite => self.sqlite,
        }
    }
}

static PLATFORM_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static PLATFORM_SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// Name of the history table of the platform's own tables (idempotency keys, outbox), kept apart from
/// the service's `_sqlx_migrations` so both sets can number their migrations independently.
const PLATFORM_MIGRATIONS_TABLE: &str = "_settle_platform_migrations";

/// A connection pool plus the knowledge of which dialect it speaks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// A write transaction on either backend.
pub type Tx = Transaction<'static, Any>;

impl Db {
    /// Connects a pool for `url` (creating the SQLite file and its folder if needed).
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, DbError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let connect_err = |source| DbError::Connect { backend: backend.name(), source };
        let (url, max_connections) = match backend {
            Backend::Postgres => (url.to_owned(), settings.max_connections),
            Backend::Sqlite => (prepare_sqlite_url(url)?, settings.max_connections.clamp(1, 4)),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(connect_err)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; NORMAL sync is durable across
                        // process crashes (the embedded default's concern), and writers wait for each
                        // other instead of failing with SQLITE_BUSY.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        Ok(Db { pool, backend })
    }

    /// Applies the platform's tables, then each set of `migrations` in order (the service's own,
    /// and shared ones such as the saga log).
    pub async fn migrate(&self, migrations: &[&Migrations]) -> Result<(), DbError> {
        let platform = match self.backend {
            Backend::Postgres => &PLATFORM_POSTGRES,
            Backend::Sqlite => &PLATFORM_SQLITE,
        };
        self.run_migrations("platform", platform, Some(PLATFORM_MIGRATIONS_TABLE)).await?;
        for set in migrations {
            if let Some(migrator) = set.for_backend(self.backend) {
                self.run_migrations(set.name, migrator, set.history_table).await?;
            }
        }
        Ok(())
    }

    async fn run_migrations(
        &self,
        set: &'static str,
        migrator: &Migrator,
        history_table: Option<&'static str>,
    ) -> Result<(), DbError> {
        let result = match history_table {
            None => migrator.run(&self.pool).await,
            Some(table) => {
                let mut own = Migrator::with_migrations(migrator.migrations.to_vec());
                own.dangerous_set_table_name(table);
                own.run(&self.pool).await
            }
        };
        result.map_err(|source| DbError::Migrate { set, source })
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue instead of deadlocking on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure the SQLite file can be created: `mode=rwc` and an existing parent folder.
fn prepare_sqlite_url(url: &str) -> Result<String, DbError> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if !path.is_empty()
        && path != ":memory:"
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(DbError::CreateDir)?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// A boolean column read through the `Any` driver. PostgreSQL columns are `BOOLEAN`; SQLite
/// columns are `INTEGER` 0/1, because the `Any` driver cannot map SQLite's `BOOLEAN` declared type.
/// Writes bind a plain `bool`, which both accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbBool(pub bool);

impl From<DbBool> for bool {
    fn from(value: DbBool) -> bool {
        value.0
    }
}

impl sqlx::Type<Any> for DbBool {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <bool as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        use sqlx::any::AnyTypeInfoKind::{BigInt, Bool, Integer, SmallInt};
        matches!(ty.kind(), Bool | SmallInt | Integer | BigInt)
    }
}

impl<'r> sqlx::Decode<'r, Any> for DbBool {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::ValueRef;
        if value.type_info().kind() == sqlx::any::AnyTypeInfoKind::Bool {
            <bool as sqlx::Decode<Any>>::decode(value).map(DbBool)
        } else {
            <i64 as sqlx::Decode<Any>>::decode(value).map(|v| DbBool(v != 0))
        }
    }
}

/// Whether a query failed on a unique constraint (a lost race on an insert).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_url_scheme() {
        assert_eq!(Backend::from_url("postgres://x/y").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://x/y").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("sqlite://data/x.db").ok(), Some(Backend::Sqlite));
        assert!(Backend::from_url("mysql://x").is_err());
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(prepare_sqlite_url("sqlite::memory:").unwrap(), "sqlite::memory:?mode=rwc");
        assert_eq!(
            prepare_sqlite_url("sqlite://x.db?cache=shared").unwrap(),
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(prepare_sqlite_url("sqlite://x.db?mode=ro").unwrap(), "sqlite://x.db?mode=ro");
    }
}
