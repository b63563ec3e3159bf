//! Client → server commands: typed encoding for clients, and a decoder for servers (the simulator).
//!
//! A command is one line, optional `Name: value` lines, and an empty line. Anything placed in a
//! command line comes from callers (conference names, user ids): a `\r` or `\n` in it would let
//! them smuggle a second command onto the socket, so encoding refuses them.

use bytes::{Buf, Bytes, BytesMut};

use crate::event::EventFormat;
use crate::headers::{Headers, ValueEncoding};

/// A command the client can send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `auth <password>`.
    Auth { password: String },
    /// `api <command and args>`: runs synchronously; one `api/response`.
    Api { command: String },
    /// `bgapi <command and args>` with our own `Job-UUID`.
    BgApi { command: String, job_uuid: String },
    /// `event <format> <names...>`; after `CUSTOM` every word is a subclass.
    Event {
        format: EventFormat,
        names: Vec<String>,
    },
    /// `nixevent <names...>`.
    NixEvent { names: Vec<String> },
    /// `noevents`.
    NoEvents,
    /// `filter <header> <value>`.
    Filter { header: String, value: String },
    /// `filter delete <header> [<value>]`.
    FilterDelete {
        header: String,
        value: Option<String>,
    },
    /// `filter delete all`.
    FilterDeleteAll,
    /// `exit`.
    Exit,
}

/// A command that cannot be put on the wire.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// CR or LF inside the command would start a new command.
    #[error("ESL command contains a line break: {0:?}")]
    LineBreak(String),
    /// `event`/`nixevent` without a name, or an empty api command.
    #[error("ESL command {0} needs an argument")]
    Empty(&'static str),
}

fn check(part: &str) -> Result<&str, CommandError> {
    if part.contains(['\r', '\n']) {
        Err(CommandError::LineBreak(part.chars().take(80).collect()))
    } else {
        Ok(part)
    }
}

impl Command {
    /// The command verb (for logs and metrics).
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Auth { .. } => "auth",
            Command::Api { .. } => "api",
            Command::BgApi { .. } => "bgapi",
            Command::Event { .. } => "event",
            Command::NixEvent { .. } => "nixevent",
            Command::NoEvents => "noevents",
            Command::Filter { .. } | Command::FilterDelete { .. } | Command::FilterDeleteAll => {
                "filter"
            }
            Command::Exit => "exit",
        }
    }

    /// Writes the command, with its terminating empty line, to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CommandError> {
        let mut line = String::with_capacity(64);
        match self {
            Command::Auth { password } => {
                line.push_str("auth ");
                line.push_str(check(password)?);
            }
            Command::Api { command } => {
                if command.trim().is_empty() {
                    return Err(CommandError::Empty("api"));
                }
                line.push_str("api ");
                line.push_str(check(command)?);
            }
            Command::BgApi { command, job_uuid } => {
                if command.trim().is_empty() {
                    return Err(CommandError::Empty("bgapi"));
                }
                line.push_str("bgapi ");
                line.push_str(check(command)?);
                line.push_str("\nJob-UUID: ");
                line.push_str(check(job_uuid)?);
            }
            Command::Event { format, names } => {
                if names.is_empty() {
                    return Err(CommandError::Empty("event"));
                }
                line.push_str("event ");
                line.push_str(format.as_str());
                for name in names {
                    line.push(' ');
                    line.push_str(check(name)?);
                }
            }
            Command::NixEvent { names } => {
                if names.is_empty() {
                    return Err(CommandError::Empty("nixevent"));
                }
                line.push_str("nixevent");
                for name in names {
                    line.push(' ');
                    line.push_str(check(name)?);
                }
            }
            Command::NoEvents => line.push_str("noevents"),
            Command::Filter { header, value } => {
                line.push_str("filter ");
                line.push_str(check(header)?);
                line.push(' ');
                line.push_str(check(value)?);
            }
            Command::FilterDelete { header, value } => {
                line.push_str("filter delete ");
                line.push_str(check(header)?);
                if let Some(value) = value {
                    line.push(' ');
                    line.push_str(check(value)?);
                }
            }
            Command::FilterDeleteAll => line.push_str("filter delete all"),
            Command::Exit => line.push_str("exit"),
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\n\n");
        Ok(())
    }

    /// The encoded bytes.
    pub fn to_bytes(&self) -> Result<Bytes, CommandError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// A command as a server receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The first line (`api status`, `event plain ALL`, ...).
    pub line: String,
    /// The `Name: value` lines after it.
    pub headers: Headers,
    /// `Content-Length` bytes (`sendevent`, `sendmsg`).
    pub body: Option<Bytes>,
}

/// Why a client's bytes were refused (the server drops the connection).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// The command block grew beyond the limit without a blank line.
    #[error("command block exceeds {0} bytes")]
    TooLarge(usize),
    /// `Content-Length` negative, not a number, or above the limit.
    #[error("rejecting Content-Length {0:?}")]
    BadContentLength(String),
}

/// Server-side decoder of client commands, following mod_event_socket: CR ignored, leading blank
/// lines skipped, the block ends at an empty line, `Content-Length` (0..=`max_body`) reads a body.
#[derive(Debug)]
pub struct RequestDecoder {
    max_block: usize,
    max_body: usize,
    scanned: usize,
    pending: Option<(String, Headers, usize)>,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(1024 * 1024, 16 * 1024 * 1024)
    }
}

impl RequestDecoder {
    /// A decoder refusing blocks above `max_block` and bodies above `max_body` bytes.
    pub fn new(max_block: usize, max_body: usize) -> Self {
        RequestDecoder {
            max_block,
            max_body,
            scanned: 0,
            pending: None,
        }
    }

    /// Takes one whole command off `buf`, or `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, RequestError> {
        if self.pending.is_none() {
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            if skip > 0 {
                buf.advance(skip);
                self.scanned = 0;
            }
            let Some(end) = find_blank_line(buf, self.scanned) else {
                if buf.len() > self.max_block {
                    return Err(RequestError::TooLarge(self.max_block));
                }
                self.scanned = buf.len().saturating_sub(3);
                return Ok(None);
            };
            self.scanned = 0;
            let (block_len, consumed) = end;
            let block = buf.split_to(consumed).freeze();
            let text: Vec<u8> = block[..block_len]
                .iter()
                .copied()
                .filter(|b| *b != b'\r')
                .collect();
            let text = String::from_utf8_lossy(&text).into_owned();
            let (line, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
            let headers = Headers::parse(Bytes::from(rest.to_owned()), ValueEncoding::Verbatim);
            let length = match headers.get("Content-Length") {
                None => 0,
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n <= self.max_body => n,
                    _ => return Err(RequestError::BadContentLength(v.chars().take(32).collect())),
                },
            };
            let has_length = headers.contains("Content-Length");
            let line = line.to_owned();
            if !has_length {
                return Ok(Some(Request {
                    line,
                    headers,
                    body: None,
                }));
            }
            self.pending = Some((line, headers, length));
        }
        let Some((_, _, length)) = &self.pending else {
            return Ok(None);
        };
        if buf.len() < *length {
            return Ok(None);
        }
        let body = buf.split_to(*length).freeze();
        let Some((line, headers, _)) = self.pending.take() else {
            return Ok(None);
        };
        Ok(Some(Request {
            line,
            headers,
            body: Some(body),
        }))
    }
}

/// Finds the end of a command block: `\n\n`, `\n\r\n` (CRs are ignored). Returns the length of
/// the block (without the terminator) and the bytes to consume.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(off) = memchr::memchr(b'\n', &buf[i.min(buf.len())..]) {
        let nl = i + off;
        let mut j = nl + 1;
        while j < buf.len() && buf[j] == b'\r' {
            j += 1;
        }
        if j < buf.len() && buf[j] == b'\n' {
            return Some((nl + 1, j + 1));
        }
        if j >= buf.len() {
            return None;
        }
        i = nl + 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let enc = |c: Command| String::from_utf8(c.to_bytes().unwrap().to_vec()).unwrap();
        assert_eq!(
            enc(Command::Auth {
                password: "ClueCon".into()
            }),
            "auth ClueCon\n\n"
        );
        assert_eq!(
            enc(Command::BgApi {
                command: "conference list".into(),
                job_uuid: "u".into()
            }),
            "bgapi conference list\nJob-UUID: u\n\n"
        );
        assert_eq!(
            enc(Command::Event {
                format: EventFormat::Plain,
                names: vec![
                    "HEARTBEAT".into(),
                    "CUSTOM".into(),
                    "conference::maintenance".into()
                ]
            }),
            "event plain HEARTBEAT CUSTOM conference::maintenance\n\n"
        );
    }

    #[test]
    fn refuses_line_breaks() {
        let c = Command::Api {
            command: "conference x\n\napi shutdown".into(),
        };
        assert!(matches!(c.to_bytes(), Err(CommandError::LineBreak(_))));
    }

    #[test]
    fn decodes_requests_with_cr_and_body() {
        let mut d = RequestDecoder::default();
        let mut buf = BytesMut::from(
            &b"\r\nauth ClueCon\r\n\r\nsendevent X\nContent-Length: 2\n\nhiapi st"[..],
        );
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.line, "auth ClueCon");
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.line, "sendevent X");
        assert_eq!(r.body.as_deref(), Some(&b"hi"[..]));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"atus\n\n");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().line, "api status");
    }

    #[test]
    fn refuses_bad_lengths() {
        for bad in ["-1", "x", "99999999999"] {
            let mut d = RequestDecoder::new(1024, 1024);
            let mut buf =
                BytesMut::from(format!("sendevent X\nContent-Length: {bad}\n\n").as_bytes());
            assert!(d.decode(&mut buf).is_err());
        }
    }
}
