//! `TestApp`: the service running in-process on `127.0.0.1:0` with a fresh SQLite file.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use switchyard::events::Event;
use switchyard::store::Store;
use switchyard::{App, Config};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct TestApp {
    pub addr: SocketAddr,
    pub store: Store,
    /// Subscribed before the service started: sees every announcement.
    pub events: broadcast::Receiver<Event>,
    pub tasks: TaskTracker,
    pub shutdown_token: CancellationToken,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

/// A config for tests: port 0, a SQLite file in `dir`, a short grace period.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".to_owned();
    config.http.shutdown_grace_secs = 2;
    config.database.url =
        SecretString::from(super::db::sqlite_url(dir.path().join("switchyard.db")));
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], after `customize` has seen the `App` (to spawn tasks on it).
    pub async fn spawn_with(customize: impl FnOnce(&App)) -> Self {
        Self::spawn_full(None, |_| {}, customize).await
    }

    /// Like [`TestApp::spawn`], with `configure` applied to the test config and, when given,
    /// the database at `database_url` instead of a fresh SQLite file.
    pub async fn spawn_configured(
        database_url: Option<&str>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::spawn_full(database_url, configure, |_| {}).await
    }

    pub async fn spawn_full(
        database_url: Option<&str>,
        configure: impl FnOnce(&mut Config),
        customize: impl FnOnce(&App),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir);
        if let Some(url) = database_url {
            config.database.url = SecretString::from(url.to_owned());
        }
        configure(&mut config);
        config.validate().expect("test config is valid");
        let app = App::build(config).await.expect("app builds");
        customize(&app);
        let store = app.store.clone();
        let events = app.bus.subscribe();
        let tasks = app.tasks.clone();
        let shutdown_token = app.shutdown.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(switchyard::run(listener, app, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            store,
            events,
            tasks,
            shutdown_token,
            stop: Some(stop),
            server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers the shutdown future and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("run returns within 10 s of the shutdown signal")
            .expect("server task did not panic")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}
