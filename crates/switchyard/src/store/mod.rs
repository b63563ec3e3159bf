//! Durable data: the only module that contains SQL.
//!
//! Two backends behind one type: SQLite, the embedded default (a file created on first start),
//! and PostgreSQL for production. [`Store`] is an enum over the two sqlx pools, and every query
//! is written once per backend with runtime `sqlx::query*` calls: no `query!` macros, so
//! building needs no database, and each dialect can use its own SQL where they differ.
//! Migrations live in `migrations/sqlite` and `migrations/postgres`, are embedded in the binary
//! and run by [`Store::connect`]. The store tests run the same assertions against both backends.
//!
//! Timestamps are UTC and truncated to microseconds before they are written, so both backends
//! return the same values (PostgreSQL keeps microseconds, SQLite would keep nanoseconds).

/// Runs `$body` with `$pool` bound to whichever pool the store holds. Both backends accept the
/// same `$N` placeholders, so a query whose text is the same for both is written once.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod conferences;
mod credentials;
mod history;
mod invitations;
mod nodes;
mod recordings;
mod session_tokens;
mod users;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use conferences::{
    Admission, Claim, ConferenceOptions, ConferenceRecord, EndReason, NewConference,
    NodeConferenceCounts, Origin,
};
pub use credentials::{DirectoryEntry, NewSipCredential};
pub use history::{ConferenceFilter, Cursor, MemberStay, NewStay, PurgedHistory, StayFilter};
pub use invitations::{Invitation, NewInvitation};
pub use nodes::{NodeRecord, NodeSource, NodeSpec};
pub use recordings::{Recording, recording_kind};
pub use session_tokens::SessionTokenOwner;
pub use users::{UpsertUser, User};
pub use webhooks::{ClaimedWebhook, NewWebhookDelivery, WebhookDeliveryRecord};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// What went wrong talking to the database. Messages never contain the URL (it may hold a
/// password); the underlying sqlx error is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme {scheme:?} (expected sqlite:// or postgres://)")]
    UnsupportedUrl { scheme: String },
    #[error("invalid {backend} database URL")]
    InvalidUrl {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to the {backend} database")]
    Connect {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// Pool settings; the URL says everything else.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection pool to one of the backends. Cheap to clone (the pools are `Arc`s).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Connects with default pool settings and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects and runs pending migrations. SQLite files are created when missing.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url)?;
        let invalid = |source| StoreError::InvalidUrl { backend, source };
        let connect = |source| StoreError::Connect { backend, source };
        match backend {
            Backend::Sqlite => {
                let connect_options = SqliteConnectOptions::from_str(url)
                    .map_err(invalid)?
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect_options)
                    .await
                    .map_err(connect)?;
                SQLITE_MIGRATOR.run(&pool).await?;
                Ok(Self::Sqlite(pool))
            }
            Backend::Postgres => {
                let connect_options = PgConnectOptions::from_str(url).map_err(invalid)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect_options)
                    .await
                    .map_err(connect)?;
                POSTGRES_MIGRATOR.run(&pool).await?;
                Ok(Self::Postgres(pool))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement with one parameter whose SQL differs per backend (placeholders,
    /// `julianday` on SQLite's text timestamps); how many rows it changed.
    async fn execute_one<'q, T>(
        &self,
        sqlite: &'q str,
        postgres: &'q str,
        value: T,
    ) -> Result<u64, StoreError>
    where
        T: 'q
            + Send
            + sqlx::Encode<'q, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + sqlx::Encode<'q, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>,
    {
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query(sqlite)
                .bind(value)
                .execute(pool)
                .await?
                .rows_affected(),
            Self::Postgres(pool) => sqlx::query(postgres)
                .bind(value)
                .execute(pool)
                .await?
                .rows_affected(),
        })
    }

    /// One round trip; `/readyz` uses it.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Closes every connection and waits for them; later queries fail with `PoolClosed`.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// The timestamp the store writes for "now" (UTC, microsecond precision).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
