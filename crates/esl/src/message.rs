//! Frames classified by `Content-Type` into the messages FreeSWITCH sends.

use bytes::Bytes;

use crate::event::{Event, EventError, EventFormat};
use crate::frame::Frame;
use crate::headers::Headers;

/// A server → client ESL message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `auth/request`: the server waits for `auth`.
    AuthRequest,
    /// `command/reply`: the answer to a non-api command.
    CommandReply(Reply),
    /// `api/response`: the output of an `api` command (may not end in `\n`).
    ApiResponse(Bytes),
    /// `text/event-plain|json|xml`.
    Event(Event),
    /// `log/data`.
    Log(LogLine),
    /// `text/disconnect-notice`: the server is closing (or lingering).
    Disconnect(DisconnectNotice),
    /// `text/rude-rejection`: refused by the ACL; the server closes.
    RudeRejection(Bytes),
    /// Any other content type, kept as it came.
    Other(Frame),
}

/// A `command/reply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// All headers of the frame (`Reply-Text`, `Job-UUID`, ...).
    pub headers: Headers,
}

impl Reply {
    /// `Reply-Text`, e.g. `+OK accepted` or `-ERR invalid`.
    pub fn text(&self) -> &str {
        self.headers.get("Reply-Text").unwrap_or("")
    }

    /// True when the reply starts with `+OK`.
    pub fn is_ok(&self) -> bool {
        self.text().starts_with("+OK")
    }

    /// `Job-UUID` of a `bgapi` reply.
    pub fn job_uuid(&self) -> Option<&str> {
        self.headers.get("Job-UUID")
    }
}

/// A `log/data` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// `Log-Level` (0 = console … 7 = debug).
    pub level: Option<u8>,
    /// All headers (`Log-File`, `Log-Func`, `Log-Line`, `User-Data`, ...).
    pub headers: Headers,
    /// The log text.
    pub text: Bytes,
}

/// A `text/disconnect-notice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectNotice {
    /// `Content-Disposition: linger` means the socket stays open for a while (session mode).
    pub linger: bool,
    /// The notice text (`Disconnected, goodbye.` …, or `The system is being shut down.`).
    pub text: Bytes,
}

impl TryFrom<Frame> for Message {
    type Error = EventError;

    fn try_from(frame: Frame) -> Result<Self, EventError> {
        let Some(content_type) = frame.content_type() else {
            return Ok(Message::Other(frame));
        };
        if let Some(format) = EventFormat::from_content_type(content_type) {
            let body = frame.body.unwrap_or_default();
            return Event::parse(format, body).map(Message::Event);
        }
        Ok(match content_type {
            "auth/request" => Message::AuthRequest,
            "command/reply" => Message::CommandReply(Reply {
                headers: frame.headers,
            }),
            "api/response" => Message::ApiResponse(frame.body.unwrap_or_default()),
            "log/data" => Message::Log(LogLine {
                level: frame.headers.get("Log-Level").and_then(|l| l.parse().ok()),
                text: frame.body.unwrap_or_default(),
                headers: frame.headers,
            }),
            "text/disconnect-notice" => Message::Disconnect(DisconnectNotice {
                linger: frame
                    .headers
                    .get("Content-Disposition")
                    .is_some_and(|d| d.eq_ignore_ascii_case("linger")),
                text: frame.body.unwrap_or_default(),
            }),
            "text/rude-rejection" => Message::RudeRejection(frame.body.unwrap_or_default()),
            _ => Message::Other(frame),
        })
    }
}

/// Splits an api body into success text or FreeSWITCH's `-ERR` text.
///
/// FreeSWITCH signals failure only in the text: `-ERR ...` (a leading `-ERR` on the first line,
/// e.g. `-ERR Conference 9999 not found\n` or `-ERR no reply\n`). The usage text and other outputs
/// that do not start with `-ERR` are successes.
pub fn api_result(body: &[u8]) -> Result<&[u8], &[u8]> {
    if body.starts_with(b"-ERR") {
        Err(body)
    } else {
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frame::{Limits, decode_all};

    fn one(bytes: &[u8]) -> Message {
        let (mut frames, rest) = decode_all(bytes, Limits::default()).unwrap();
        assert_eq!(rest, 0);
        Message::try_from(frames.remove(0)).unwrap()
    }

    #[test]
    fn log_data() {
        let m = one(b"Content-Type: log/data\nContent-Length: 6\nLog-Level: 7\nText-Channel: 3\nLog-File: switch_core.c\nLog-Func: f\nLog-Line: 12\nUser-Data: \n\nhello\n");
        let Message::Log(log) = m else {
            panic!("{m:?}")
        };
        assert_eq!(log.level, Some(7));
        assert_eq!(&log.text[..], b"hello\n");
        assert_eq!(log.headers.get("Log-File"), Some("switch_core.c"));
    }

    #[test]
    fn linger_notice_and_unknown_types() {
        let m = one(b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\nContent-Length: 0\n\n");
        assert!(matches!(
            m,
            Message::Disconnect(DisconnectNotice { linger: true, .. })
        ));
        let m = one(b"Content-Type: text/x-new\nContent-Length: 2\n\nhi");
        assert!(matches!(m, Message::Other(_)));
        let m = one(b"X: y\n\n");
        assert!(matches!(m, Message::Other(_)));
    }

    #[test]
    fn a_bad_event_body_is_an_error_not_a_panic() {
        let frame = b"Content-Type: text/event-json\nContent-Length: 5\n\n{\"a\":";
        let (mut frames, _) = decode_all(frame, Limits::default()).unwrap();
        assert!(Message::try_from(frames.remove(0)).is_err());
    }
}
