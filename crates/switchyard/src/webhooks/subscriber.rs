//! The bus listener: each announcement that is a webhook event becomes one outbox row per
//! endpoint that wants it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound as _, Utc};
use tokio::sync::Notify;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::{self, Debouncer, WebhookEvent};
use crate::config::WebhookEndpointConfig;
use crate::events::Event;
use crate::store::{NewWebhookDelivery, Store};

/// Enqueueing retries a failing store with this backoff, doubling up to the max, as long as the
/// service runs (the bus buffers meanwhile).
const ENQUEUE_RETRY_MIN: Duration = Duration::from_millis(100);
const ENQUEUE_RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Subscriber {
    pub store: Store,
    pub endpoints: Vec<WebhookEndpointConfig>,
    /// `Some` when an endpoint wants `member.talking`.
    pub talking: Option<Debouncer>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// A random delivery id: `wh_` + 32 hex digits (128 bits).
fn new_delivery_id() -> String {
    use rand::Rng as _;
    format!("wh_{:032x}", rand::rng().random::<u128>())
}

impl Subscriber {
    pub async fn run(mut self, mut rx: Receiver<Event>) {
        loop {
            let due = self.talking.as_ref().and_then(Debouncer::next_due);
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                received = rx.recv() => match received {
                    Ok(event) => self.handle(&event).await,
                    Err(RecvError::Lagged(missed)) => tracing::error!(
                        missed,
                        "webhooks fell behind the event bus; these events were not sent"
                    ),
                    Err(RecvError::Closed) => return,
                },
                () = sleep_until(due), if due.is_some() => {
                    if let Some(debouncer) = &mut self.talking {
                        let events = debouncer.due(Instant::now());
                        for event in events {
                            self.enqueue(&event).await;
                        }
                    }
                }
            }
        }
        // What was announced before shutdown is still recorded (sent after the restart).
        loop {
            match rx.try_recv() {
                Ok(event) => self.handle(&event).await,
                Err(TryRecvError::Lagged(missed)) => tracing::error!(
                    missed,
                    "webhooks fell behind the event bus; these events were not sent"
                ),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
    }

    async fn handle(&mut self, event: &Event) {
        if let Some(debouncer) = &mut self.talking {
            debouncer.observe(event, Instant::now());
        }
        if let Some(webhook) = payload::from_event(event) {
            self.enqueue(&webhook).await;
        }
    }

    /// One row per endpoint that wants `event`, in one transaction.
    async fn enqueue(&self, event: &WebhookEvent) {
        let created_at = Utc::now().trunc_subsecs(6);
        let rows: Vec<NewWebhookDelivery> = self
            .endpoints
            .iter()
            .filter(|e| e.wants(event.kind))
            .map(|e| {
                let id = new_delivery_id();
                NewWebhookDelivery {
                    body: payload::body(&id, event, created_at),
                    id,
                    endpoint_id: e.id.clone(),
                    event_type: event.kind.as_str().to_owned(),
                    created_at,
                }
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let mut delay = ENQUEUE_RETRY_MIN;
        loop {
            match self.store.enqueue_webhooks(&rows).await {
                Ok(()) => {
                    self.wake.notify_one();
                    return;
                }
                Err(e) if self.shutdown.is_cancelled() => {
                    tracing::error!(
                        r#type = event.kind.as_str(),
                        error = %crate::error_chain(&e),
                        "cannot record a webhook event during shutdown; it is not sent"
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!(
                        r#type = event.kind.as_str(),
                        error = %crate::error_chain(&e),
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "cannot record a webhook event; retrying"
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(ENQUEUE_RETRY_MAX);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
