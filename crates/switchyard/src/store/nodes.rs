//! The node pool's durable part: which FreeSWITCH nodes exist, whether they drain, and when
//! each last started.
//!
//! Every replica re-reads this table periodically (`nodes::sync`), so a node added, drained or
//! removed through one replica reaches the others. Each query is written once per dialect.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Store, StoreError, now};

/// Where a node came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeSource {
    /// `[[nodes]]` in the config file; upserted at every start.
    Config,
    /// `POST /v1/nodes`.
    Api,
}

impl NodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "config" {
            Self::Config
        } else {
            Self::Api
        }
    }
}

/// A node as stored.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub id: String,
    pub esl_addr: String,
    pub esl_password: SecretString,
    pub wss_url: String,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub draining: bool,
    pub source: NodeSource,
    /// When the node's FreeSWITCH last started, as computed from its uptime.
    pub started_at: Option<DateTime<Utc>>,
    pub core_uuid: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The writable description of a node (config entry or API body).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub esl_addr: String,
    pub esl_password: SecretString,
    pub wss_url: String,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    esl_addr: String,
    esl_password: String,
    wss_url: String,
    capacity: i32,
    labels: String,
    draining: bool,
    source: String,
    started_at: Option<DateTime<Utc>>,
    core_uuid: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Row> for NodeRecord {
    fn from(r: Row) -> Self {
        NodeRecord {
            id: r.id,
            esl_addr: r.esl_addr,
            esl_password: SecretString::from(r.esl_password),
            wss_url: r.wss_url,
            capacity: u32::try_from(r.capacity.max(0)).unwrap_or(u32::MAX),
            // Written by us from a map; an unreadable value means no labels rather than no node.
            labels: serde_json::from_str(&r.labels).unwrap_or_default(),
            draining: r.draining,
            source: NodeSource::parse(&r.source),
            started_at: r.started_at,
            core_uuid: r.core_uuid,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, esl_addr, esl_password, wss_url, capacity, labels, draining, source, \
                       started_at, core_uuid, created_at";

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

impl Store {
    /// Inserts or updates a node from the config file, keeping its drain flag and start time.
    pub async fn upsert_config_node(&self, spec: &NodeSpec) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO nodes \
             (id, esl_addr, esl_password, wss_url, capacity, labels, draining, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, FALSE, 'config', $7) \
             ON CONFLICT (id) DO UPDATE SET esl_addr = excluded.esl_addr, \
             esl_password = excluded.esl_password, wss_url = excluded.wss_url, \
             capacity = excluded.capacity, labels = excluded.labels, source = 'config'";
        self.write_node(SQL, spec).await.map(drop)
    }

    /// Adds a node through the API. `false` when the id is taken (nothing is changed).
    pub async fn insert_api_node(&self, spec: &NodeSpec) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO nodes \
             (id, esl_addr, esl_password, wss_url, capacity, labels, draining, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, FALSE, 'api', $7) ON CONFLICT (id) DO NOTHING";
        Ok(self.write_node(SQL, spec).await? > 0)
    }

    async fn write_node(&self, sql: &str, spec: &NodeSpec) -> Result<u64, StoreError> {
        use secrecy::ExposeSecret as _;
        let labels = labels_json(&spec.labels);
        let capacity = i32::try_from(spec.capacity).unwrap_or(i32::MAX);
        let now = now();
        // `$N` placeholders are understood by SQLite too.
        let affected = with_pool!(self, pool => sqlx::query(sql)
                .bind(&spec.id)
                .bind(&spec.esl_addr)
                .bind(spec.esl_password.expose_secret())
                .bind(&spec.wss_url)
                .bind(capacity)
                .bind(&labels)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected)
    }

    /// Every node, by id.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id");
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await?);
        Ok(rows.into_iter().map(NodeRecord::from).collect())
    }

    pub async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM nodes WHERE id = $1");
        let row: Option<Row> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?);
        Ok(row.map(NodeRecord::from))
    }

    /// Sets the drain flag. `false` when there is no such node.
    pub async fn set_node_draining(&self, id: &str, draining: bool) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE nodes SET draining = $2 WHERE id = $1";
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(id)
                .bind(draining)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected > 0)
    }

    /// Removes a node. `false` when there was none.
    pub async fn delete_node(&self, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM nodes WHERE id = $1";
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected > 0)
    }

    /// Records when the node's FreeSWITCH started (and its Core-UUID when known).
    pub async fn record_node_start(
        &self,
        id: &str,
        started_at: DateTime<Utc>,
        core_uuid: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE nodes SET started_at = $2, \
                           core_uuid = COALESCE($3, core_uuid) WHERE id = $1";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(id)
                .bind(started_at)
                .bind(core_uuid)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
