//! The webhook outbox (`webhook_deliveries`): one row per (endpoint, event) to deliver.
//!
//! Rows are written by the replica that announced the event ([`Store::enqueue_webhooks`]) and
//! sent by whichever replica claims them first ([`Store::claim_webhooks`]): the claim sets
//! `locked_until` and counts the attempt in one statement (PostgreSQL skips rows another
//! replica is claiming, `FOR UPDATE SKIP LOCKED`; SQLite serializes writers), so no two senders
//! hold the same row at once. A sender that dies mid-attempt leaves a lock that expires: the
//! row is sent again (at least once).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError, now};

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewWebhookDelivery {
    /// `wh_` + hex: the de-duplication id the receiver sees.
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// The JSON body, exactly as it will be signed and sent.
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedWebhook {
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// This attempt's number (1 for the first).
    pub attempts: u32,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRecord {
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// Attempts started so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Given up (too many attempts, too old, endpoint gone).
    pub failed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: String,
    endpoint_id: String,
    event_type: String,
    body: String,
    created_at: DateTime<Utc>,
    attempts: i32,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    endpoint_id: String,
    event_type: String,
    body: String,
    created_at: DateTime<Utc>,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

fn attempts(n: i32) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl From<DeliveryRow> for WebhookDeliveryRecord {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.id,
            endpoint_id: r.endpoint_id,
            event_type: r.event_type,
            body: r.body,
            created_at: r.created_at,
            attempts: attempts(r.attempts),
            next_attempt_at: r.next_attempt_at,
            locked_until: r.locked_until,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
            failed_at: r.failed_at,
        }
    }
}

/// Errors are kept short in the table (they come from remote servers).
const MAX_ERROR_CHARS: usize = 500;

fn truncate(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

fn later(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| at.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Store {
    /// Records `deliveries`, all or none, due at once.
    pub async fn enqueue_webhooks(
        &self,
        deliveries: &[NewWebhookDelivery],
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO webhook_deliveries \
             (id, endpoint_id, event_type, body, created_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $5)";
        if deliveries.is_empty() {
            return Ok(());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for d in deliveries {
                sqlx::query(SQL)
                    .bind(&d.id)
                    .bind(&d.endpoint_id)
                    .bind(&d.event_type)
                    .bind(&d.body)
                    .bind(d.created_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` deliveries of `endpoint_id` that are due and not held by another
    /// sender, for `lock_for`, counting the attempt. Oldest first.
    pub async fn claim_webhooks(
        &self,
        endpoint_id: &str,
        lock_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedWebhook>, StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET locked_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE endpoint_id = $3 AND delivered_at IS NULL AND failed_at IS NULL \
             AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until <= $1) \
             ORDER BY next_attempt_at, created_at LIMIT $4";
        const RETURNING: &str =
            ") RETURNING id, endpoint_id, event_type, body, created_at, attempts";
        // PostgreSQL: skip the rows another replica is claiming right now. SQLite serializes
        // writers, so the plain subquery is exclusive already.
        let sql = match self.backend() {
            Backend::Sqlite => format!("{SQL}{RETURNING}"),
            Backend::Postgres => format!("{SQL} FOR UPDATE SKIP LOCKED{RETURNING}"),
        };
        let now = now();
        let until = later(now, lock_for);
        let limit = i64::from(limit);
        let mut rows: Vec<ClaimedRow> = with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(now)
                .bind(until)
                .bind(endpoint_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows
            .into_iter()
            .map(|r| ClaimedWebhook {
                id: r.id,
                endpoint_id: r.endpoint_id,
                event_type: r.event_type,
                body: r.body,
                created_at: r.created_at,
                attempts: attempts(r.attempts),
            })
            .collect())
    }

    /// The receiver accepted delivery `id`.
    pub async fn webhook_delivered(&self, id: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET delivered_at = $2, locked_until = NULL, \
                           last_error = NULL WHERE id = $1";
        let now = now();
        with_pool!(self, pool => {
            sqlx::query(SQL).bind(id).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// An attempt of `id` failed with `error`; the next one is due at `next_attempt_at`.
    pub async fn webhook_retry(
        &self,
        id: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET next_attempt_at = $2, last_error = $3, \
                           locked_until = NULL WHERE id = $1 AND delivered_at IS NULL";
        let error = truncate(error);
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(id)
                .bind(next_attempt_at)
                .bind(&error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Gives delivery `id` up: it is not attempted again.
    pub async fn webhook_failed(&self, id: &str, error: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET failed_at = $2, last_error = $3, \
                           locked_until = NULL WHERE id = $1 AND delivered_at IS NULL";
        let now = now();
        let error = truncate(error);
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(id)
                .bind(now)
                .bind(&error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Releases claimed deliveries whose attempt was abandoned (shutdown): they are due again
    /// at once, for any sender.
    pub async fn release_webhooks(&self, ids: &[String]) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET locked_until = NULL \
                           WHERE id = $1 AND delivered_at IS NULL";
        for id in ids {
            with_pool!(self, pool => {
                sqlx::query(SQL).bind(id).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Deletes delivered and given-up deliveries created before `before`, and any delivery
    /// created before `abandoned_before` (endpoints no longer configured). Returns the count.
    pub async fn purge_webhooks(
        &self,
        before: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM webhook_deliveries WHERE created_at < $2 \
             OR (created_at < $1 AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL))";
        Ok(with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(before)
                .bind(abandoned_before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Deliveries still to be made (neither delivered nor given up), per endpoint id.
    pub async fn pending_webhooks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        const SQL: &str = "SELECT endpoint_id, COUNT(*) FROM webhook_deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL \
             GROUP BY endpoint_id ORDER BY endpoint_id";
        let rows: Vec<(String, i64)> =
            with_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(endpoint, n)| (endpoint, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// One delivery, by id.
    pub async fn webhook_delivery(
        &self,
        id: &str,
    ) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
        const SQL: &str = "SELECT id, endpoint_id, event_type, body, created_at, attempts, \
             next_attempt_at, locked_until, last_error, delivered_at, failed_at \
             FROM webhook_deliveries WHERE id = $1";
        let row: Option<DeliveryRow> =
            with_pool!(self, pool => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?);
        Ok(row.map(Into::into))
    }
}
