//! `App`: everything a request handler or background task may need, built once at startup.
//!
//! Handlers receive it as [`AppState`], one `Arc` clone per request (the crates.io pattern), so
//! adding a field never changes a handler signature. Background tasks (the ESL node
//! supervisors, later the Redis lease keeper) are spawned on [`App::tasks`] and watch
//! [`App::shutdown`]; [`crate::run`] cancels that token on shutdown and waits for the tracker,
//! bounded by `http.shutdown_grace_secs`.

use std::ops::Deref;
use std::sync::Arc;

use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::store::{Store, StoreError, StoreOptions};

/// The service's shared state.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    /// Every long-lived background task is spawned here so shutdown can wait for it.
    pub tasks: TaskTracker,
    /// Cancelled when the service starts shutting down; tasks select on `cancelled()`.
    pub shutdown: CancellationToken,
}

impl App {
    /// Wraps already-built parts, with a fresh tracker and token.
    pub fn new(config: Config, store: Store) -> Self {
        Self {
            config,
            store,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Connects the store named by `config.database` (running migrations), then [`App::new`].
    pub async fn build(config: Config) -> Result<Self, StoreError> {
        let options = StoreOptions {
            max_connections: config.database.max_connections,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(config.database.url.expose_secret(), &options).await?;
        Ok(Self::new(config, store))
    }
}

/// The axum state: a cheap clone of the one [`App`].
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
