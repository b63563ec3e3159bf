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

use crate::auth::{ApiKeys, NodeAccess};
use crate::browser::Browser;
use crate::browser::hub::Hub;
use crate::config::Config;
use crate::coord::{Coord, CoordError};
use crate::events::Bus;
use crate::freeswitch::cache::DirectoryCache;
use crate::live::{LiveStore, MemoryLive, RedisLive};
use crate::metrics::Metrics;
use crate::nodes::Pool;
use crate::store::{Backend, Store, StoreError, StoreOptions};

/// The service's shared state.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    /// The node pool: health, ESL clients and ownership (filled by [`crate::nodes::start`]).
    pub nodes: Pool,
    /// Redis, when `redis.url` is configured.
    pub coord: Option<Coord>,
    /// Live conferences and members: in process, or in Redis when configured.
    pub live: LiveStore,
    /// In-process announcements (live changes, placements, node health).
    pub bus: Bus,
    pub metrics: Metrics,
    /// Every long-lived background task is spawned here so shutdown can wait for it.
    pub tasks: TaskTracker,
    /// Cancelled when the service starts shutting down; tasks select on `cancelled()`.
    pub shutdown: CancellationToken,
    /// `api.keys`, as digests.
    pub api_keys: ApiKeys,
    /// `[freeswitch]` basic auth and allow-list, as digests and parsed CIDRs.
    pub node_access: NodeAccess,
    /// Directory lookups by SIP username; every user/credential write invalidates it.
    pub directory_cache: DirectoryCache,
    /// The browser event channel's hub (memory, or Redis with replicas).
    pub browser: Browser,
}

impl App {
    /// Wraps already-built parts, with a fresh tracker and token, in-process live state and a
    /// new replica id.
    pub fn new(config: Config, store: Store) -> Self {
        Self {
            api_keys: ApiKeys::from_config(&config.api),
            node_access: NodeAccess::from_config(&config.freeswitch),
            // Exact invalidation needs a single process: SQLite only (see the cache docs).
            directory_cache: DirectoryCache::new(match store.backend() {
                Backend::Sqlite => config.freeswitch.directory_cache_entries,
                Backend::Postgres => 0,
            }),
            browser: Browser::new(Hub::memory(&config.events)),
            config,
            store,
            nodes: Pool::new(&new_replica_id(), true),
            coord: None,
            live: LiveStore::Memory(MemoryLive::default()),
            bus: Bus::default(),
            metrics: Metrics::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Connects the store named by `config.database` (running migrations) and Redis when
    /// configured, then [`App::new`].
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let options = StoreOptions {
            max_connections: config.database.max_connections,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(config.database.url.expose_secret(), &options).await?;
        let coord = match &config.redis.url {
            Some(url) => Some(Coord::connect(url.expose_secret(), &config.redis.key_prefix).await?),
            None => None,
        };
        let mut app = Self::new(config, store);
        if let Some(coord) = coord {
            app.with_coord(coord);
        }
        Ok(app)
    }

    /// Shares state through Redis: node leases decide which replica processes each node, and
    /// live state lives in Redis.
    pub fn with_coord(&mut self, coord: Coord) {
        self.nodes = Pool::new(self.nodes.replica_id(), false);
        self.live = LiveStore::Redis(RedisLive::new(coord.clone()));
        self.browser = Browser::new(Hub::redis(
            coord.clone(),
            self.nodes.replica_id(),
            &self.config.events,
        ));
        self.coord = Some(coord);
    }
}

/// `<hostname>-<8 hex digits>`: unique per process, readable in logs and Redis.
fn new_replica_id() -> String {
    use rand::Rng as _;
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 64
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "switchyard".to_owned());
    format!("{host}-{:08x}", rand::rng().random::<u32>())
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] CoordError),
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
