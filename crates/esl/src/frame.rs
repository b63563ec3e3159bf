//! ESL framing: a header block closed by an empty line, then `Content-Length` body bytes.
//!
//! [`FrameDecoder`] is fed bytes and yields whole [`Frame`]s; it never reads a socket. The split
//! follows mini-redis: find the end of the header block cheaply (`memmem` for `\n\n`, resuming where
//! the previous call stopped, so a frame arriving byte by byte costs linear time), then cut the
//! frame out of the buffer without copying. Limits bound both parts, so hostile input costs at most
//! `max_header_block + max_body` bytes of memory.

use bytes::{Buf, Bytes, BytesMut};

use crate::headers::{Headers, ValueEncoding};

/// Size limits enforced by the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block (the outer frame headers, not an event's own headers).
    pub max_header_block: usize,
    /// Largest `Content-Length` accepted.
    pub max_body: usize,
}

impl Default for Limits {
    /// 64 KiB of frame headers (FreeSWITCH sends a handful of lines) and 16 MiB of body, the
    /// bound libesl applies since v1.11.1.
    fn default() -> Self {
        Limits {
            max_header_block: 64 * 1024,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// Why a byte stream is not valid ESL. The stream cannot be resynchronised afterwards: close it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// No blank line within `limit` bytes.
    #[error("ESL header block exceeds {limit} bytes")]
    HeaderBlockTooLarge { limit: usize },
    /// `Content-Length` is larger than the configured limit.
    #[error("ESL Content-Length {length} exceeds the limit of {limit} bytes")]
    BodyTooLarge { length: u64, limit: usize },
    /// `Content-Length` is not a non-negative decimal number.
    #[error("invalid ESL Content-Length {0:?}")]
    BadContentLength(String),
}

/// One ESL message as framed on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The outer headers (`Content-Type`, `Reply-Text`, ...), verbatim.
    pub headers: Headers,
    /// The `Content-Length` bytes, if the frame had a `Content-Length` header.
    pub body: Option<Bytes>,
}

impl Frame {
    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }

    /// The body, or empty.
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or(&[])
    }
}

/// Incremental decoder of server → client ESL frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    limits: Limits,
    /// Bytes of the buffer already searched for the header terminator.
    scanned: usize,
    /// Headers of a frame whose body has not fully arrived, and the body length.
    pending: Option<(Headers, usize)>,
}

impl FrameDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder {
            limits,
            scanned: 0,
            pending: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one whole frame off the front of `buf`, or returns `Ok(None)` when more bytes are
    /// needed. Consumed bytes are removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.pending.is_none() {
            // Blank lines between frames carry nothing.
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            if skip > 0 {
                buf.advance(skip);
                self.scanned = 0;
            }
            let from = self.scanned.saturating_sub(1);
            let Some(found) = header_end_finder().find(&buf[from..]) else {
                if buf.len() > self.limits.max_header_block {
                    return Err(FrameError::HeaderBlockTooLarge {
                        limit: self.limits.max_header_block,
                    });
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            let end = from + found;
            if end + 1 > self.limits.max_header_block {
                return Err(FrameError::HeaderBlockTooLarge {
                    limit: self.limits.max_header_block,
                });
            }
            self.scanned = 0;
            let mut block = buf.split_to(end + 2).freeze();
            block.truncate(end + 1);
            let headers = Headers::parse(block, ValueEncoding::Verbatim);
            let length = match headers.get("Content-Length") {
                None => {
                    return Ok(Some(Frame {
                        headers,
                        body: None,
                    }));
                }
                Some(text) => self.parse_length(text)?,
            };
            self.pending = Some((headers, length));
        }
        let Some((_, length)) = &self.pending else {
            return Ok(None);
        };
        let length = *length;
        if buf.len() < length {
            buf.reserve(length - buf.len());
            return Ok(None);
        }
        let body = buf.split_to(length).freeze();
        let Some((headers, _)) = self.pending.take() else {
            return Ok(None);
        };
        Ok(Some(Frame {
            headers,
            body: Some(body),
        }))
    }

    fn parse_length(&self, text: &str) -> Result<usize, FrameError> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FrameError::BadContentLength(
                text.chars().take(32).collect(),
            ));
        }
        let length: u64 = text.parse().map_err(|_| FrameError::BodyTooLarge {
            length: u64::MAX,
            limit: self.limits.max_body,
        })?;
        if length > self.limits.max_body as u64 {
            return Err(FrameError::BodyTooLarge {
                length,
                limit: self.limits.max_body,
            });
        }
        Ok(length as usize)
    }
}

/// `memmem::find` builds its searcher on every call; this one is built once.
fn header_end_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n\n"));
    &FINDER
}

/// Decodes every frame of a complete byte stream (tests, tools). Trailing partial bytes are
/// reported as the second value.
pub fn decode_all(bytes: &[u8], limits: Limits) -> Result<(Vec<Frame>, usize), FrameError> {
    let mut decoder = FrameDecoder::new(limits);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        frames.push(frame);
    }
    Ok((frames, buf.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        FrameDecoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn frame_without_body() {
        let frame = one(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(frame.content_type(), Some("command/reply"));
        assert_eq!(frame.headers.get("Reply-Text"), Some("+OK accepted"));
        assert_eq!(frame.body, None);
    }

    #[test]
    fn frame_with_body_not_ending_in_newline() {
        let frame = one(b"Content-Type: api/response\nContent-Length: 1\n\n2")
            .unwrap()
            .unwrap();
        assert_eq!(frame.body.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn incomplete_returns_none_and_keeps_bytes() {
        let mut d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"Content-Type: api/response\nContent-Length: 5\n\nab"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"cde");
        let frame = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body.as_deref(), Some(&b"abcde"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_are_typed_errors() {
        let limits = Limits {
            max_header_block: 16,
            max_body: 4,
        };
        let mut d = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&b"Content-Type: something-long"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::HeaderBlockTooLarge { limit: 16 })
        );
        let mut d = FrameDecoder::new(Limits {
            max_header_block: 1024,
            max_body: 4,
        });
        let mut buf = BytesMut::from(&b"Content-Length: 5\n\n"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::BodyTooLarge {
                length: 5,
                limit: 4
            })
        );
        for bad in ["-1", "abc", "", "99999999999999999999999"] {
            let text = format!("Content-Length: {bad}\n\n");
            assert!(one(text.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
