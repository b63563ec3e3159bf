//! REST calls over [`Conn`]: requests carrying the bench API key, and a small keep-alive client
//! for the setup steps (users, invitations, fsim's control port, polling `/v1/nodes`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::http::Conn;
use crate::servers::API_KEY;

/// The bytes of one HTTP/1.1 request with the bench API key (harmless where no key is needed).
pub fn request(method: &str, host: &str, path: &str, json: Option<&str>) -> Vec<u8> {
    let body = json.unwrap_or_default();
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One keep-alive connection that reconnects after the server closed it (or after an error).
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            conn: None,
        }
    }

    /// One call; the status and the body (lossy UTF-8).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let bytes = request(method, &self.host, path, json);
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Conn::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?,
        };
        let (status, body, close) = {
            let response = conn
                .round_trip(&bytes)
                .await
                .with_context(|| format!("{method} {path} on {}", self.addr))?;
            (
                response.status,
                String::from_utf8_lossy(response.body).into_owned(),
                response.close,
            )
        };
        if !close {
            self.conn = Some(conn);
        }
        Ok((status, body))
    }

    /// [`Client::call`] that fails unless the status is `expect`; returns the body as JSON.
    pub async fn json(
        &mut self,
        method: &str,
        path: &str,
        json: Option<&str>,
        expect: u16,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.call(method, path, json).await?;
        anyhow::ensure!(
            status == expect,
            "{method} {path}: HTTP {status} (expected {expect}): {}",
            body.chars().take(500).collect::<String>()
        );
        serde_json::from_str(&body).with_context(|| format!("{method} {path}: not JSON: {body}"))
    }

    /// `GET /v1/nodes`: the `nodes` array.
    pub async fn nodes(&mut self) -> anyhow::Result<Vec<serde_json::Value>> {
        let json = self.json("GET", "/v1/nodes", None, 200).await?;
        json.get("nodes")
            .and_then(|n| n.as_array())
            .cloned()
            .context("GET /v1/nodes without nodes")
    }

    /// Waits until `n` nodes are up and healthy with a HEARTBEAT (it brings the load figures
    /// placement reads); returns how long that took. Fails after 60 s.
    pub async fn wait_nodes_up(&mut self, n: usize) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let list = self.nodes().await?;
            let up = list
                .iter()
                .filter(|node| {
                    node.get("state").and_then(|s| s.as_str()) == Some("up")
                        && node.get("health").and_then(|s| s.as_str()) == Some("up")
                        && node.get("last_heartbeat").is_some_and(|h| !h.is_null())
                })
                .count();
            if up == n {
                return Ok(start.elapsed());
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "only {up} of {n} nodes up after 60 s: {}",
                serde_json::Value::Array(list)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
