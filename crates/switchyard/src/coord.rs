//! Redis, for what several replicas share.
//!
//! Issue 4 puts conference placement, node leases, live member state and event fan-out here. For
//! now this module owns the connection and its health. Redis is for coordination only, never the
//! source of truth: losing it degrades the service (reported by `/readyz`), it must not make it
//! wrong. The connection manager reconnects by itself after an outage.

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

/// A shared, self-reconnecting Redis connection.
#[derive(Clone)]
pub struct Coord {
    conn: ConnectionManager,
}

impl std::fmt::Debug for Coord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coord").finish_non_exhaustive()
    }
}

impl Coord {
    /// Connects to `url` (`redis://host:port[/db]`); fails if Redis does not answer now, so a
    /// wrong URL is found at startup rather than at the first placement.
    pub async fn connect(url: &str) -> Result<Coord, CoordError> {
        let client = redis::Client::open(url).map_err(CoordError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            TIMEOUT * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| CoordError::Timeout(TIMEOUT * 2))?
        .map_err(CoordError::Unreachable)?;
        Ok(Coord { conn })
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
