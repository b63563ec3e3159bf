//! A minimal HTTP/1.1 client over a tokio `TcpStream`: one request at a time, responses framed
//! by `Content-Length` only (both servers send it). No pooling, no pipelining: the caller
//! decides whether a connection is reused (keep-alive) or dropped after one answer (what
//! mod_xml_curl does: a new libcurl handle, hence a new connection, per fetch).

use std::net::SocketAddr;

use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Larger answers are refused (the directory documents are ~1.2 KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// Why a round trip failed.
#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    /// The peer closed before a whole response.
    Closed,
    /// Not a response we can frame.
    Malformed(&'static str),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O: {e}"),
            Self::Closed => f.write_str("connection closed before a whole response"),
            Self::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A response, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// The server said `Connection: close`.
    pub close: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Writes `request` and reads one whole response.
    pub async fn round_trip(&mut self, request: &[u8]) -> Result<Response<'_>, ClientError> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(ClientError::Malformed("header too long"));
            }
            self.fill().await?;
        };
        let total = head.header_len + head.content_length;
        if total > MAX_RESPONSE {
            return Err(ClientError::Malformed("body too long"));
        }
        while self.buf.len() < total {
            self.fill().await?;
        }
        if self.buf.len() > total {
            return Err(ClientError::Malformed("bytes after the response"));
        }
        Ok(Response {
            status: head.status,
            body: &self.buf[head.header_len..total],
            close: head.close,
        })
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(ClientError::Closed),
            _ => Ok(()),
        }
    }
}

/// The parts of a response head the client needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub header_len: usize,
    pub content_length: usize,
    pub close: bool,
}

/// `Ok(None)` until the head is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ClientError> {
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| ClientError::Malformed("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or(ClientError::Malformed("status line"))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ClientError::Malformed("header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .map_err(|_| ClientError::Malformed("content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Malformed("transfer-encoding is not supported"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some(Head {
        status,
        header_len: end + 4,
        content_length: content_length.ok_or(ClientError::Malformed("no content-length"))?,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::{Head, parse_head};

    #[test]
    fn heads() {
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None)));
        let text = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello";
        assert_eq!(
            parse_head(text).ok().flatten(),
            Some(Head {
                status: 200,
                header_len: text.len() - 5,
                content_length: 5,
                close: true
            })
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n").is_err());
    }
}
