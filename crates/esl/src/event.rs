//! FreeSWITCH events as delivered in `text/event-plain`, `text/event-json` and `text/event-xml`.
//!
//! All three formats parse into the same [`Event`]: ordered, decoded headers plus the event's own
//! body (the api output of a `BACKGROUND_JOB`, for instance). Multi-value (`ARRAY::`) headers keep
//! FreeSWITCH's plain-text form `ARRAY::a|:b` whatever the format, and [`Event::get_array`] splits
//! them.

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use crate::conference::ConferenceEvent;
use crate::headers::{Headers, ValueEncoding};

/// The serialization an event arrived in (or is to be sent in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventFormat {
    /// `text/event-plain`: `Name: url-encoded value` lines.
    Plain,
    /// `text/event-json`: one JSON object.
    Json,
    /// `text/event-xml`: `<event><headers>...`.
    Xml,
}

impl EventFormat {
    /// The word used in the `event` command (`plain`, `json`, `xml`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::Plain => "plain",
            EventFormat::Json => "json",
            EventFormat::Xml => "xml",
        }
    }

    /// The frame `Content-Type` carrying this format.
    pub fn content_type(self) -> &'static str {
        match self {
            EventFormat::Plain => "text/event-plain",
            EventFormat::Json => "text/event-json",
            EventFormat::Xml => "text/event-xml",
        }
    }

    /// The format for a frame `Content-Type`, if it is an event type.
    pub fn from_content_type(content_type: &str) -> Option<EventFormat> {
        match content_type {
            "text/event-plain" => Some(EventFormat::Plain),
            "text/event-json" => Some(EventFormat::Json),
            "text/event-xml" => Some(EventFormat::Xml),
            _ => None,
        }
    }
}

/// An event body that could not be parsed. The frame itself was sound, so the connection can go on.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The plain body claimed more bytes than it has, or a malformed length.
    #[error("event body: {0}")]
    Plain(String),
    /// The JSON body is not a flat object of strings / string arrays.
    #[error("event-json body: {0}")]
    Json(String),
    /// The XML body is not `<event><headers>…`.
    #[error("event-xml body: {0}")]
    Xml(String),
}

/// A FreeSWITCH event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    headers: Headers,
    body: Option<Bytes>,
}

impl Event {
    /// An event made of these headers and body (simulators, tests).
    pub fn new(headers: Headers, body: Option<Bytes>) -> Self {
        Event { headers, body }
    }

    /// Parses an event body in the given format.
    pub fn parse(format: EventFormat, body: Bytes) -> Result<Event, EventError> {
        match format {
            EventFormat::Plain => Event::parse_plain(body),
            EventFormat::Json => Event::parse_json(&body),
            EventFormat::Xml => Event::parse_xml(&body),
        }
    }

    /// Parses a `text/event-plain` body: URL-encoded headers, a blank line, and, when the last
    /// header is `Content-Length: N`, N raw body bytes.
    pub fn parse_plain(body: Bytes) -> Result<Event, EventError> {
        // The header block ends at the first `\n\n`, found while indexing its lines.
        let (headers, blank) = Headers::parse_prefix(&body, ValueEncoding::UrlEncoded, true);
        let rest = match blank {
            Some(at) => body.slice(at + 1..),
            None => Bytes::new(),
        };
        let length = headers
            .last()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.trim().to_owned());
        match length {
            None => Ok(Event {
                headers,
                body: None,
            }),
            Some(text) => {
                let n: usize = text
                    .parse()
                    .map_err(|_| EventError::Plain(format!("bad Content-Length {text:?}")))?;
                if n > rest.len() {
                    return Err(EventError::Plain(format!(
                        "Content-Length {n} but only {} bytes follow",
                        rest.len()
                    )));
                }
                let mut headers = headers;
                headers.pop();
                Ok(Event {
                    headers,
                    body: Some(rest.slice(..n)),
                })
            }
        }
    }

    /// Parses a `text/event-json` body. Duplicate keys are kept; arrays become `ARRAY::a|:b`;
    /// `_body` becomes the body and the `Content-Length` key is dropped.
    pub fn parse_json(body: &[u8]) -> Result<Event, EventError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let pairs = de
            .deserialize_map(PairsVisitor)
            .map_err(|e| EventError::Json(e.to_string()))?;
        de.end().map_err(|e| EventError::Json(e.to_string()))?;
        let mut headers = Headers::new();
        let mut event_body = None;
        for (name, value) in pairs {
            match name.as_str() {
                "_body" => event_body = Some(Bytes::from(value)),
                "Content-Length" => {}
                _ => headers.push(&name, &value),
            }
        }
        Ok(Event {
            headers,
            body: event_body,
        })
    }

    /// Parses a `text/event-xml` body: `<event><headers><Name>url-encoded</Name>…</headers>
    /// [<Content-Length>n</Content-Length><body>…</body>]</event>`.
    pub fn parse_xml(body: &[u8]) -> Result<Event, EventError> {
        use quick_xml::events::Event as X;
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut headers = Headers::new();
        let mut event_body = None;
        let mut path: Vec<Vec<u8>> = Vec::new();
        let mut text = Vec::new();
        let err = |e: &dyn std::fmt::Display| EventError::Xml(e.to_string());
        loop {
            match reader.read_event().map_err(|e| err(&e))? {
                X::Start(start) => {
                    path.push(start.name().as_ref().to_vec());
                    text.clear();
                    if path.len() > 3 {
                        return Err(EventError::Xml("elements nested too deep".into()));
                    }
                }
                X::Text(t) => {
                    let s = t.decode().map_err(|e| err(&e))?;
                    let s = quick_xml::escape::unescape(&s).map_err(|e| err(&e))?;
                    text.extend_from_slice(s.as_bytes());
                }
                X::GeneralRef(r) => {
                    let name = r.decode().map_err(|e| err(&e))?;
                    let entity = format!("&{name};");
                    let s = quick_xml::escape::unescape(&entity).map_err(|e| err(&e))?;
                    text.extend_from_slice(s.as_bytes());
                }
                X::CData(c) => text.extend_from_slice(&c),
                X::End(_) => {
                    let Some(name) = path.pop() else {
                        return Err(EventError::Xml("unbalanced end tag".into()));
                    };
                    let parent = path.last().map(Vec::as_slice);
                    match (path.len(), parent, name.as_slice()) {
                        (2, Some(b"headers"), _) => {
                            let name = String::from_utf8_lossy(&name);
                            headers.push_bytes(&name, &crate::urlencode::decode(&text));
                        }
                        (1, Some(b"event"), b"body") => {
                            event_body = Some(Bytes::from(std::mem::take(&mut text)));
                        }
                        _ => {}
                    }
                    text.clear();
                }
                X::Empty(e)
                    if path.len() == 2 && path.last().map(Vec::as_slice) == Some(b"headers") =>
                {
                    headers.push(&String::from_utf8_lossy(e.name().as_ref()), "");
                }
                X::Eof => break,
                _ => {}
            }
        }
        if !path.is_empty() {
            return Err(EventError::Xml("truncated document".into()));
        }
        Ok(Event {
            headers,
            body: event_body,
        })
    }

    /// All headers, in the order FreeSWITCH sent them.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of a header (case-insensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The exact decoded bytes of a header (values may be any bytes).
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get_bytes(name)
    }

    /// The values of a multi-value header (`ARRAY::a|:b` → `[a, b]`); a plain value is one item.
    pub fn get_array(&self, name: &str) -> Option<Vec<&str>> {
        let value = self.get(name)?;
        Some(match value.strip_prefix("ARRAY::") {
            Some(items) => items.split("|:").collect(),
            None => vec![value],
        })
    }

    /// `Event-Name` (`CUSTOM` for subclassed events).
    pub fn event_name(&self) -> Option<&str> {
        self.get("Event-Name")
    }

    /// `Event-Subclass` of a CUSTOM event, e.g. `conference::maintenance`.
    pub fn subclass(&self) -> Option<&str> {
        self.get("Event-Subclass")
    }

    /// `Core-UUID`: changes each time FreeSWITCH restarts.
    pub fn core_uuid(&self) -> Option<&str> {
        self.get("Core-UUID")
    }

    /// `Job-UUID` of a BACKGROUND_JOB.
    pub fn job_uuid(&self) -> Option<&str> {
        self.get("Job-UUID")
    }

    /// `Unique-ID` of the channel the event is about.
    pub fn unique_id(&self) -> Option<&str> {
        self.get("Unique-ID")
    }

    /// `Event-Sequence` (assigned at creation, so not strictly monotonic on the wire).
    pub fn sequence(&self) -> Option<u64> {
        self.get("Event-Sequence")?.parse().ok()
    }

    /// The event's own body (api output of BACKGROUND_JOB, message text, ...).
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }

    /// The body as text (lossy for non-UTF-8 bytes).
    pub fn body_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.body.as_deref().map(String::from_utf8_lossy)
    }

    /// A view on a `conference::maintenance` event, or `None` for any other event.
    pub fn conference(&self) -> Option<ConferenceEvent<'_>> {
        ConferenceEvent::new(self)
    }

    /// Splits the event into headers and body.
    pub fn into_parts(self) -> (Headers, Option<Bytes>) {
        (self.headers, self.body)
    }
}

/// Reads a JSON object into ordered (name, value) pairs, keeping duplicate keys.
struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(key) = map.next_key::<String>()? {
            let value: JsonValue = map.next_value()?;
            pairs.push((key, value.0));
        }
        Ok(pairs)
    }
}

/// A JSON header value: a string, a scalar (kept as text) or an array (→ `ARRAY::a|:b`).
struct JsonValue(String);

impl<'de> serde::Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or array of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
                Ok(JsonValue(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
                Ok(JsonValue(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
                Ok(JsonValue(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
                Ok(JsonValue(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<JsonValue, E> {
                Ok(JsonValue(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
                Ok(JsonValue(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<JsonValue, E> {
                Ok(JsonValue(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
                let mut out = String::from("ARRAY::");
                let mut first = true;
                while let Some(item) = seq.next_element::<JsonValue>()? {
                    if !first {
                        out.push_str("|:");
                    }
                    first = false;
                    out.push_str(&item.0);
                }
                Ok(JsonValue(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_nested_body() {
        let body = Bytes::from_static(
            b"Event-Name: BACKGROUND_JOB\nJob-Command-Arg: 3000%20list\nContent-Length: 3\n\n+OK",
        );
        let e = Event::parse_plain(body).unwrap();
        assert_eq!(e.event_name(), Some("BACKGROUND_JOB"));
        assert_eq!(e.get("Job-Command-Arg"), Some("3000 list"));
        assert!(!e.headers().contains("Content-Length"));
        assert_eq!(e.body().map(|b| &b[..]), Some(&b"+OK"[..]));
    }

    #[test]
    fn plain_body_too_short_is_an_error() {
        let body = Bytes::from_static(b"Event-Name: X\nContent-Length: 9\n\nab");
        assert!(Event::parse_plain(body).is_err());
    }

    #[test]
    fn json_arrays_and_duplicates() {
        let e = Event::parse_json(
            br#"{"Event-Name":"CUSTOM","A":"1","A":"2","variable_DP_MATCH":["3000","3000"],"Content-Length":"2","_body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(e.get_all_for_test("A"), vec!["1", "2"]);
        assert_eq!(e.get("variable_DP_MATCH"), Some("ARRAY::3000|:3000"));
        assert_eq!(e.get_array("variable_DP_MATCH"), Some(vec!["3000", "3000"]));
        assert_eq!(e.body_text().as_deref(), Some("hi"));
    }

    #[test]
    fn xml_headers_are_unescaped_and_decoded() {
        let e = Event::parse_xml(
            b"<event>\n  <headers>\n    <Event-Name>HEARTBEAT</Event-Name>\n    <A>x%20&amp;%20y</A>\n  </headers>\n  <Content-Length>5</Content-Length>\n  <body>a&lt;b\n</body>\n</event>\n",
        )
        .unwrap();
        assert_eq!(e.event_name(), Some("HEARTBEAT"));
        assert_eq!(e.get("A"), Some("x & y"));
        assert_eq!(e.body_text().as_deref(), Some("a<b\n"));
    }

    impl Event {
        fn get_all_for_test(&self, name: &str) -> Vec<String> {
            self.headers.get_all(name).map(str::to_owned).collect()
        }
    }
}
