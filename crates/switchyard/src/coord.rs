//! Redis, for what several replicas share: the connection, key naming, and node leases.
//!
//! The live member state kept here is in `crate::live`. Redis is for coordination only, never
//! the source of truth (placements and history are in the database): losing it degrades the
//! service (reported by `/readyz`; no replica owns a node, so live state stops changing until it
//! returns), it must not make it wrong. The connection manager reconnects by itself.
//!
//! **Leases.** Exactly one replica at a time processes a node's events: the holder of
//! `P lease:node:{id}`, a key set with `NX` and a TTL and renewed by its holder (see
//! [`Coord::claim_lease`]). A holder that dies stops renewing; the key expires and another
//! replica claims it within one renewal period, then reconciles the node.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long connecting or a command may take before Redis counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("Redis is unreachable: {0}")]
    Unreachable(#[source] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Claims or renews a lease: 1 = renewed, 2 = newly acquired, 0 = held by another replica.
const CLAIM_LEASE: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
";

/// Deletes a lease if `ARGV[1]` still holds it.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A node's health as its owner (lease holder) sees it, shared with the other replicas so that
/// they place by the same judgement.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    /// The replica that owns the node.
    pub owner: String,
    pub health: crate::nodes::health::Health,
    pub degraded_reason: Option<crate::nodes::health::DegradedReason>,
}

/// The outcome of [`Coord::claim_lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseClaim {
    /// We held it and extended it.
    Renewed,
    /// It was free and is ours now.
    Acquired,
    /// Another replica holds it.
    HeldElsewhere,
}

/// A shared, self-reconnecting Redis connection.
#[derive(Clone)]
pub struct Coord {
    conn: ConnectionManager,
    /// For dedicated connections (pub/sub cannot share the multiplexed one).
    client: std::sync::Arc<redis::Client>,
    prefix: String,
}

impl std::fmt::Debug for Coord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coord").finish_non_exhaustive()
    }
}

impl Coord {
    /// Connects to `url` (`redis://host:port[/db]`); fails if Redis does not answer now, so a
    /// wrong URL is found at startup rather than at the first placement.
    pub async fn connect(url: &str, prefix: &str) -> Result<Coord, CoordError> {
        let client = redis::Client::open(url).map_err(CoordError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| CoordError::Timeout(TIMEOUT * 2))?
        .map_err(CoordError::Unreachable)?;
        Ok(Coord {
            conn,
            client: std::sync::Arc::new(client),
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix of every key (`redis.key_prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new connection in subscriber mode (the browser event fan-out).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, CoordError> {
        tokio::time::timeout(TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| CoordError::Timeout(TIMEOUT))?
            .map_err(CoordError::Unreachable)
    }

    /// A handle on the shared connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The lease key of a node.
    pub fn lease_key(&self, node: &str) -> String {
        format!("{}lease:node:{node}", self.prefix)
    }

    /// Claims node `node`'s lease for `owner`, or renews it if `owner` holds it.
    pub async fn claim_lease(
        &self,
        node: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseClaim, CoordError> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = redis::Script::new(CLAIM_LEASE);
        let mut invocation = script.key(self.lease_key(node));
        invocation.arg(owner).arg(ttl_ms);
        let reply: i64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| CoordError::Timeout(TIMEOUT))?
            .map_err(CoordError::Unreachable)?;
        Ok(match reply {
            1 => LeaseClaim::Renewed,
            2 => LeaseClaim::Acquired,
            _ => LeaseClaim::HeldElsewhere,
        })
    }

    /// Gives node `node`'s lease up if `owner` holds it (at shutdown, so a successor need not
    /// wait for the TTL).
    pub async fn release_lease(&self, node: &str, owner: &str) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(RELEASE_LEASE);
        let mut invocation = script.key(self.lease_key(node));
        invocation.arg(owner);
        let _: i64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| CoordError::Timeout(TIMEOUT))?
            .map_err(CoordError::Unreachable)?;
        Ok(())
    }

    fn view_key(&self, node: &str) -> String {
        format!("{}node:{node}:view", self.prefix)
    }

    /// Publishes the owner's view of a node, valid for `ttl`.
    pub async fn publish_node_view(
        &self,
        node: &str,
        view: &NodeView,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(view).unwrap_or_default();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        tokio::time::timeout(
            TIMEOUT,
            redis::cmd("SET")
                .arg(self.view_key(node))
                .arg(json)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn),
        )
        .await
        .map_err(|_| CoordError::Timeout(TIMEOUT))?
        .map_err(CoordError::Unreachable)
    }

    /// The owners' views of `nodes` (absent for nodes nobody owns or published lately).
    pub async fn node_views(
        &self,
        nodes: &[String],
    ) -> Result<std::collections::HashMap<String, NodeView>, CoordError> {
        if nodes.is_empty() {
            return Ok(Default::default());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for node in nodes {
            cmd.arg(self.view_key(node));
        }
        let values: Vec<Option<String>> = tokio::time::timeout(TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| CoordError::Timeout(TIMEOUT))?
            .map_err(CoordError::Unreachable)?;
        Ok(nodes
            .iter()
            .zip(values)
            .filter_map(|(node, value)| {
                let view = serde_json::from_str(&value?).ok()?;
                Some((node.clone(), view))
            })
            .collect())
    }

    /// Who holds node `node`'s lease, if anyone.
    pub async fn lease_holder(&self, node: &str) -> Result<Option<String>, CoordError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            TIMEOUT,
            redis::cmd("GET")
                .arg(self.lease_key(node))
                .query_async::<Option<String>>(&mut conn),
        )
        .await
        .map_err(|_| CoordError::Timeout(TIMEOUT))?
        .map_err(CoordError::Unreachable)
    }

    /// `PING`, bounded by a timeout.
    pub async fn ping(&self) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn))
                .await
                .map_err(|_| CoordError::Timeout(TIMEOUT))?;
        reply.map(|_| ()).map_err(CoordError::Unreachable)
    }
}
