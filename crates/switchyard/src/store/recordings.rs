//! Recordings and broadcasts of conferences, as the nodes confirmed them.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// One recording (a file on the node) or broadcast (an `rtmp://` stream).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    sqlx::FromRow,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct Recording {
    pub id: String,
    pub conference_id: Option<String>,
    pub name: String,
    pub node_id: String,
    /// The file on the node, or the stream URL.
    pub path: String,
    /// `file` or `broadcast`.
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub milliseconds: Option<i64>,
    /// The node's error text when the recording could not start.
    pub error: Option<String>,
}

/// `broadcast` for stream URLs, `file` otherwise.
pub fn recording_kind(path: &str) -> &'static str {
    if path.starts_with("rtmp://") || path.starts_with("rtmps://") {
        "broadcast"
    } else {
        "file"
    }
}

const COLUMNS: &str =
    "id, conference_id, name, node_id, path, kind, started_at, stopped_at, milliseconds, error";

impl Store {
    /// Records a started recording (no-op if it is already open).
    pub async fn recording_started(
        &self,
        node_id: &str,
        name: &str,
        path: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO recordings \
             (id, conference_id, name, node_id, path, kind, started_at, error) \
             VALUES ($1, (SELECT id FROM conferences WHERE name = $2 AND node_id = $3 \
             AND ended_at IS NULL), $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_id, path) WHERE stopped_at IS NULL DO NOTHING";
        let id = {
            use rand::Rng as _;
            let bits: u128 = rand::rng().random();
            format!("rec_{:020x}", bits >> 48)
        };
        let kind = recording_kind(path);
        let now = now();
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(&id)
                .bind(name)
                .bind(node_id)
                .bind(path)
                .bind(kind)
                .bind(now)
                .bind(error)
                .execute(pool)
                .await?;
        });
        // A failed start is over at once.
        if error.is_some() {
            self.recording_stopped(node_id, path, None).await?;
        }
        Ok(())
    }

    /// Records that the open recording `path` on `node_id` stopped.
    pub async fn recording_stopped(
        &self,
        node_id: &str,
        path: &str,
        milliseconds: Option<u64>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE recordings SET stopped_at = $3, milliseconds = $4 \
             WHERE node_id = $1 AND path = $2 AND stopped_at IS NULL";
        let ms = milliseconds.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        let now = now();
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(node_id)
                .bind(path)
                .bind(now)
                .bind(ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The recordings and broadcasts of conference `name`, newest first.
    pub async fn recordings(&self, name: &str) -> Result<Vec<Recording>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings WHERE name = $1 ORDER BY started_at DESC, id DESC"
        );
        Ok(with_pool!(self, pool => sqlx::query_as(&sql).bind(name).fetch_all(pool).await?))
    }
}
