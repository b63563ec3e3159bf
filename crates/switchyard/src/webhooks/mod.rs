//! Webhooks: signed HTTP notifications of what happened, to the endpoints of `[webhooks]`.
//!
//! Three tasks, spawned on [`App::tasks`] and stopped by [`App::shutdown`], only when at least
//! one endpoint is configured:
//!
//! 1. **subscriber** (`subscriber`): listens to the [`Bus`](crate::events::Bus) and writes
//!    one outbox row per (endpoint, event) to the store (`webhook_deliveries`). Events are
//!    announced only by the replica that made the change, so each becomes one row per endpoint
//!    across all replicas. `member.talking` goes through a per-member debouncer first
//!    ([`Debouncer`]). If this task falls more than the bus capacity (4096 events)
//!    behind, the missed events are logged at error and not sent.
//! 2. **sender** (`sender`): claims due rows (several replicas sharing PostgreSQL never hold
//!    the same row at once), POSTs each with its signature headers ([`sign`]), and records
//!    delivered (2xx), retry with exponential backoff and jitter, or given up after
//!    `max_attempts` or `max_age_secs` (logged at error). Rows outlive the process: a
//!    restarted Switchyard, or another replica, sends what is left.
//! 3. **housekeeping**: hourly, deletes finished rows older than [`RETENTION`].
//!
//! Delivery is at least once (a receiver de-duplicates by the `id`), in no guaranteed order.
//! The wire format is described in `docs/webhooks.md`.

mod payload;
mod sender;
pub mod sign;
mod subscriber;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use crate::app::App;
use crate::config::WebhookEventType;

pub use payload::{Debouncer, WebhookEvent, body, from_event};
pub use sender::{
    HEADER_ATTEMPT, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, IN_FLIGHT_PER_ENDPOINT,
    POLL_INTERVAL, retry_delay,
};

/// Delivered and given-up rows are kept this long (for inspection), then deleted; rows of
/// endpoints no longer configured are deleted this long after `max_age_secs`.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// Starts the webhook tasks, if any endpoint is configured. Subscribes to the bus before it
/// returns, so nothing announced afterwards is missed.
pub fn start(app: &App) {
    let config = &app.config.webhooks;
    if config.endpoints.is_empty() {
        return;
    }
    let client = match sender::client(config) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(
                error = %crate::error_chain(&e),
                "cannot build the webhook HTTP client; webhooks are disabled"
            );
            return;
        }
    };
    let endpoints: Vec<Arc<sender::Endpoint>> = config
        .endpoints
        .iter()
        .filter_map(|e| {
            let endpoint = sender::Endpoint::from_config(e);
            if endpoint.is_none() {
                tracing::error!(endpoint = %e.id, "invalid webhook URL; endpoint skipped");
            }
            endpoint.map(Arc::new)
        })
        .collect();
    let wake = Arc::new(Notify::new());
    let talking = config
        .endpoints
        .iter()
        .any(|e| e.wants(WebhookEventType::MemberTalking))
        .then(|| payload::Debouncer::new(config.talking_debounce()));
    let subscriber = subscriber::Subscriber {
        store: app.store.clone(),
        endpoints: config.endpoints.clone(),
        talking,
        wake: Arc::clone(&wake),
        shutdown: app.shutdown.clone(),
    };
    app.tasks.spawn(subscriber.run(app.bus.subscribe()));
    let sender = sender::Sender {
        metrics: app.metrics.clone(),
        store: app.store.clone(),
        client,
        endpoints,
        config: config.clone(),
        wake,
        shutdown: app.shutdown.clone(),
    };
    app.tasks.spawn(sender.run());
    app.tasks.spawn(housekeeping(app));
    tracing::info!(endpoints = config.endpoints.len(), "webhooks enabled");
}

/// Reports rows of endpoints no longer configured, then deletes old rows every hour.
fn housekeeping(app: &App) -> impl Future<Output = ()> + Send + 'static {
    let store = app.store.clone();
    let shutdown = app.shutdown.clone();
    let configured: Vec<String> = app
        .config
        .webhooks
        .endpoints
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let max_age = app.config.webhooks.max_age();
    async move {
        match store.pending_webhooks().await {
            Ok(pending) => {
                for (endpoint, count) in pending {
                    if !configured.contains(&endpoint) {
                        tracing::warn!(
                            endpoint,
                            deliveries = count,
                            "webhook deliveries are waiting for an endpoint that is no longer configured; \
                             they are sent if it comes back, and deleted after max_age_secs plus 7 days"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "cannot read the webhook queue"
            ),
        }
        loop {
            let now = Utc::now();
            let ago = |d: Duration| {
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_sub_signed(d))
                    .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
            };
            match store
                .purge_webhooks(ago(RETENTION), ago(RETENTION.saturating_add(max_age)))
                .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "old webhook deliveries deleted"),
                Err(e) => tracing::warn!(
                    error = %crate::error_chain(&e),
                    "cannot delete old webhook deliveries"
                ),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
            }
        }
    }
}
