//! REST calls over [`Conn`]: requests carrying the bench API key, and a small keep-alive client
//! for the setup steps (users, invitations, fsim's control port, polling `/v1/nodes`).

use std::net::SocketAddr;

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
}
