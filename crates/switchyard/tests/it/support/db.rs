//! A fresh database per test, on every backend available.
//!
//! SQLite: a file in a temp dir. PostgreSQL: a new schema `t_<uuid>` in the database named by
//! `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`), selected through the
//! connection's `search_path`, dropped again when the [`TestDb`] is dropped (even on panic).
//! Without `DATABASE_URL`, `postgres://postgres@127.0.0.1:5432/test` is used if a server answers
//! there; otherwise the PostgreSQL half is skipped with a notice, except when `CI=true`:
//! there a missing server must fail the run, never silently pass it.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use switchyard::store::{Backend, Store};
use tempfile::TempDir;

/// One backend's fresh store, plus what it takes to reconnect to the same data.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _cleanup: Cleanup,
}

/// Held only for its `Drop`.
#[allow(dead_code)]
enum Cleanup {
    Dir(TempDir),
    Schema(SchemaGuard),
}

impl TestDb {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }
}

/// Every backend this run can test: SQLite always, PostgreSQL when configured.
pub async fn test_dbs() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    if let Some(url) = postgres_url() {
        dbs.push(postgres(&url).await);
    }
    dbs
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = sqlite_url(dir.path().join("test.db"));
    let store = Store::connect(&url).await.expect("SQLite store");
    TestDb {
        store,
        url,
        _cleanup: Cleanup::Dir(dir),
    }
}

pub fn sqlite_url(path: PathBuf) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `DATABASE_URL`, or `None` (with a notice) when PostgreSQL tests are to be skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            assert!(
                matches!(Backend::from_url(&url), Ok(Backend::Postgres)),
                "DATABASE_URL must be a postgres:// URL for the store tests"
            );
            Some(url)
        }
        // Unset: use the local default when a server answers there, so that a plain
        // `cargo test --workspace` runs the whole suite on a machine with PostgreSQL.
        _ if local_postgres_answers() => Some(LOCAL_POSTGRES.to_owned()),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "CI=true but DATABASE_URL is not set: the PostgreSQL store tests must run in CI \
             (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {
            // Once per run, and past libtest's output capture, so the skip is visible.
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: DATABASE_URL is not set and nothing answers on 127.0.0.1:5432; skipping the \
                     PostgreSQL half of the store tests (set DATABASE_URL to run them)"
                );
            });
            None
        }
    }
}

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn local_postgres_answers() -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

pub async fn postgres(base_url: &str) -> TestDb {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(base_url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create test schema");
    admin.close().await;
    let guard = SchemaGuard {
        base_url: base_url.to_owned(),
        schema: schema.clone(),
    };
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options[search_path]={schema}");
    let store = Store::connect(&url).await.expect("PostgreSQL store");
    TestDb {
        store,
        url,
        _cleanup: Cleanup::Schema(guard),
    }
}

/// Drops the test schema. `Drop` cannot be async, so it runs on a thread of its own with a
/// private runtime (the test's runtime may be shutting down or panicking).
struct SchemaGuard {
    base_url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.base_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&sql)
                    .execute(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                pool.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "cleanup thread panicked".to_owned()) {
            eprintln!("warning: could not drop test schema {}: {e}", self.schema);
        }
    }
}
