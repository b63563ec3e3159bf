//! The delivery worker: claims due rows of the outbox, POSTs them, records the outcome.
//!
//! Per endpoint at most [`IN_FLIGHT_PER_ENDPOINT`] requests run at once, so a receiver that
//! times out cannot hold up the others. The worker claims again whenever an attempt finishes,
//! when the subscriber enqueued something (a [`Notify`]), and every [`POLL_INTERVAL`] (retries
//! that came due, rows enqueued by other replicas, rows left by a previous process).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Notify;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::sign;
use crate::config::{WebhookEndpointConfig, WebhooksConfig};
use crate::store::{ClaimedWebhook, Store};

/// How often due rows are looked for when nothing woke the worker.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Concurrent requests per endpoint.
pub const IN_FLIGHT_PER_ENDPOINT: usize = 8;
/// A claimed row is held for the request timeout plus this much; a sender that died
/// mid-attempt loses it after that, and another sender (or the next process) retries it.
const LOCK_MARGIN: Duration = Duration::from_secs(30);
/// At most this much of a refusing receiver's body is kept in `last_error`.
const ERROR_BODY_BYTES: usize = 256;

pub const HEADER_ID: &str = "switchyard-webhook-id";
pub const HEADER_TIMESTAMP: &str = "switchyard-webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "switchyard-webhook-signature";
pub const HEADER_ATTEMPT: &str = "switchyard-webhook-attempt";

/// The delay before attempt `failed + 1`, after `failed` (≥ 1) failed attempts: exponential
/// from `min` (doubling per failure) up to `max`, with jitter: uniform in
/// `[max(min, base / 2), base]`, so never below `min` nor above `max`.
pub fn retry_delay(failed: u32, min: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let doublings = failed.saturating_sub(1).min(31);
    let base = min.saturating_mul(1 << doublings).min(max).max(min);
    let low = (base / 2).max(min);
    if low >= base {
        return base;
    }
    rng.random_range(low..=base)
}

/// One configured receiver, ready to send to.
pub(super) struct Endpoint {
    pub id: String,
    /// Never logged: it may hold a password or a token.
    pub url: reqwest::Url,
    pub secret: SecretString,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn from_config(config: &WebhookEndpointConfig) -> Option<Self> {
        // Validated at startup; a URL that does not parse is skipped rather than trusted.
        let url = reqwest::Url::parse(config.url.expose_secret()).ok()?;
        Some(Self {
            id: config.id.clone(),
            url,
            secret: config.secret.clone(),
        })
    }
}

#[derive(Debug)]
pub(super) struct Sender {
    pub metrics: crate::metrics::Metrics,
    pub store: Store,
    pub client: reqwest::Client,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub config: WebhooksConfig,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// The HTTP client every delivery goes through: no redirects (a 3xx is a failure), the
/// configured timeout for the whole attempt.
pub(super) fn client(config: &WebhooksConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.timeout())
        .connect_timeout(config.timeout())
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl Sender {
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        // Task → (endpoint index, delivery id), to release what shutdown interrupts.
        let mut held: HashMap<Id, (usize, String)> = HashMap::new();
        let mut per_endpoint = vec![0usize; this.endpoints.len()];
        let mut store_failing = false;
        loop {
            for (i, endpoint) in this.endpoints.iter().enumerate() {
                let free = IN_FLIGHT_PER_ENDPOINT.saturating_sub(per_endpoint[i]);
                if free == 0 {
                    continue;
                }
                let lock = this.config.timeout() + LOCK_MARGIN;
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match this.store.claim_webhooks(&endpoint.id, lock, limit).await {
                    Ok(claimed) => {
                        if store_failing {
                            tracing::info!("webhook queue readable again");
                            store_failing = false;
                        }
                        for delivery in claimed {
                            let id = delivery.id.clone();
                            let task = in_flight
                                .spawn(Arc::clone(&this).attempt(Arc::clone(endpoint), delivery));
                            held.insert(task.id(), (i, id));
                            per_endpoint[i] += 1;
                        }
                    }
                    Err(e) => {
                        if !store_failing {
                            tracing::error!(
                                error = %crate::error_chain(&e),
                                "cannot read the webhook queue; retrying"
                            );
                            store_failing = true;
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                () = this.shutdown.cancelled() => break,
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(e) => {
                            tracing::error!(error = %e, "webhook delivery task failed");
                            e.id()
                        }
                    };
                    if let Some((i, _)) = held.remove(&task) {
                        per_endpoint[i] = per_endpoint[i].saturating_sub(1);
                    }
                }
                () = this.wake.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        // Shutdown: abandon the requests in flight and make their rows due again at once
        // (their receivers may have got them: at least once).
        in_flight.abort_all();
        while let Some(done) = in_flight.join_next_with_id().await {
            if let Ok((task, ())) = done {
                held.remove(&task);
            }
        }
        let abandoned: Vec<String> = held.into_values().map(|(_, id)| id).collect();
        if !abandoned.is_empty() {
            tracing::info!(
                deliveries = abandoned.len(),
                "webhook attempts interrupted by shutdown; they will be retried"
            );
            if let Err(e) = this.store.release_webhooks(&abandoned).await {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    "cannot release interrupted webhook deliveries; they are retried once their lock expires"
                );
            }
        }
    }

    /// One attempt of one delivery, and its outcome in the store.
    async fn attempt(self: Arc<Self>, endpoint: Arc<Endpoint>, delivery: ClaimedWebhook) {
        let outcome = self.post(&endpoint, &delivery).await;
        let label = |outcome: &str| crate::metrics::EndpointOutcomeLabel {
            endpoint: endpoint.id.clone(),
            outcome: outcome.to_owned(),
        };
        let counted = match &outcome {
            Ok(()) => "delivered",
            Err(_)
                if delivery.attempts >= self.config.max_attempts
                    || (Utc::now() - delivery.created_at)
                        .to_std()
                        .unwrap_or_default()
                        >= self.config.max_age() =>
            {
                "given_up"
            }
            Err(_) => "retry",
        };
        self.metrics
            .webhook_attempts
            .get_or_create(&label(counted))
            .inc();
        let recorded = match outcome {
            Ok(()) => {
                tracing::debug!(
                    endpoint = %endpoint.id,
                    id = %delivery.id,
                    r#type = %delivery.event_type,
                    attempt = delivery.attempts,
                    "webhook delivered"
                );
                self.store.webhook_delivered(&delivery.id).await
            }
            Err(error) => self.failed(&endpoint, &delivery, &error).await,
        };
        if let Err(e) = recorded {
            tracing::warn!(
                endpoint = %endpoint.id,
                id = %delivery.id,
                error = %crate::error_chain(&e),
                "cannot record a webhook attempt; the delivery is retried once its lock expires"
            );
        }
    }

    async fn failed(
        &self,
        endpoint: &Endpoint,
        delivery: &ClaimedWebhook,
        error: &str,
    ) -> Result<(), crate::store::StoreError> {
        let age = (Utc::now() - delivery.created_at)
            .to_std()
            .unwrap_or_default();
        if delivery.attempts >= self.config.max_attempts || age >= self.config.max_age() {
            tracing::error!(
                endpoint = %endpoint.id,
                id = %delivery.id,
                r#type = %delivery.event_type,
                attempts = delivery.attempts,
                age_secs = age.as_secs(),
                error,
                "webhook delivery given up"
            );
            return self.store.webhook_failed(&delivery.id, error).await;
        }
        let delay = retry_delay(
            delivery.attempts,
            self.config.retry_min(),
            self.config.retry_max(),
            &mut rand::rng(),
        );
        // The first failure, then every tenth, at warn; the rest would flood the log while a
        // receiver is down.
        if delivery.attempts == 1 || delivery.attempts.is_multiple_of(10) {
            tracing::warn!(
                endpoint = %endpoint.id,
                id = %delivery.id,
                r#type = %delivery.event_type,
                attempt = delivery.attempts,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error,
                "webhook delivery failed; will retry"
            );
        } else {
            tracing::debug!(
                endpoint = %endpoint.id,
                id = %delivery.id,
                attempt = delivery.attempts,
                error,
                "webhook delivery failed; will retry"
            );
        }
        let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.store.webhook_retry(&delivery.id, next, error).await
    }

    /// POSTs the delivery; `Ok` on a 2xx answer.
    async fn post(&self, endpoint: &Endpoint, delivery: &ClaimedWebhook) -> Result<(), String> {
        let timestamp = Utc::now().timestamp();
        let signature = sign::signature(
            endpoint.secret.expose_secret().as_bytes(),
            timestamp,
            delivery.body.as_bytes(),
        );
        let response = self
            .client
            .post(endpoint.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!(
                    "Switchyard-Webhooks/",
                    env!("CARGO_PKG_VERSION")
                )),
            )
            .header(HEADER_ID, &delivery.id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(HEADER_ATTEMPT, delivery.attempts.to_string())
            .body(delivery.body.clone())
            .send()
            .await
            // Without the URL: it may hold a password or a token.
            .map_err(|e| crate::error_chain(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut response = response;
        let mut snippet = Vec::new();
        while snippet.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        snippet.truncate(ERROR_BODY_BYTES);
        let snippet = String::from_utf8_lossy(&snippet);
        let snippet = snippet.trim();
        Err(if snippet.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {snippet}")
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_within_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(retry_delay(1, min, max, &mut rng), min, "first retry: min");
        for failed in 1u32..200 {
            let base = min
                .saturating_mul(1 << failed.saturating_sub(1).min(31))
                .min(max);
            for _ in 0..20 {
                let d = retry_delay(failed, min, max, &mut rng);
                assert!(d >= min && d <= max, "{failed}: {d:?}");
                assert!(d <= base && d >= base / 2, "{failed}: {d:?} vs {base:?}");
            }
        }
        // Late attempts are spread, not synchronized.
        let late: std::collections::HashSet<Duration> = (0..20)
            .map(|_| retry_delay(50, min, max, &mut rng))
            .collect();
        assert!(late.len() > 10, "{late:?}");
        // Degenerate settings stay within bounds.
        let one = Duration::from_millis(1);
        assert_eq!(retry_delay(0, one, one, &mut rng), one);
        assert_eq!(retry_delay(u32::MAX, one, one, &mut rng), one);
        let huge = Duration::from_secs(u64::MAX / 4);
        assert!(retry_delay(u32::MAX, huge, huge, &mut rng) == huge);
    }
}
