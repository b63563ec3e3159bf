//! Sans-IO SIP message codec (RFC 3261 §7, §20): parse one message from bytes, serialize one
//! back. No sockets, no clocks: [`parse`] is the fuzz-friendly entry point and never panics.
//!
//! Over WebSocket (RFC 7118) a message is exactly one frame, so `Content-Length` is optional;
//! when present it must fit in the frame (sofia drops a message whose body is truncated) and
//! bytes after it are ignored.

use std::fmt::Write as _;

/// Largest message accepted (sofia's WebSocket buffer is 64 KiB).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes exceeds {MAX_MESSAGE_LEN}")]
    TooLarge(usize),
    #[error("header block is not UTF-8")]
    NotUtf8,
    #[error("bad start line {0:?}")]
    BadStartLine(String),
    #[error("bad header line {0:?}")]
    BadHeader(String),
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("body truncated: Content-Length {declared}, {available} bytes present")]
    Truncated { declared: usize, available: usize },
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
    #[error("bad CSeq {0:?}")]
    BadCSeq(String),
}

/// Header fields in arrival order; names are stored in their full canonical form (compact
/// forms such as `v` or `i` are expanded on parse) and compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

/// RFC 3261 §7.3.3 (+ RFC 3265/3515/4028/3841 and friends) compact forms.
const COMPACT: &[(char, &str)] = &[
    ('a', "Accept-Contact"),
    ('b', "Referred-By"),
    ('c', "Content-Type"),
    ('d', "Request-Disposition"),
    ('e', "Content-Encoding"),
    ('f', "From"),
    ('i', "Call-ID"),
    ('j', "Reject-Contact"),
    ('k', "Supported"),
    ('l', "Content-Length"),
    ('m', "Contact"),
    ('n', "Identity-Info"),
    ('o', "Event"),
    ('r', "Refer-To"),
    ('s', "Subject"),
    ('t', "To"),
    ('u', "Allow-Events"),
    ('v', "Via"),
    ('x', "Session-Expires"),
    ('y', "Identity"),
];

/// Full names whose canonical spelling is not plain title case.
const SPELLINGS: &[&str] = &[
    "Call-ID",
    "CSeq",
    "WWW-Authenticate",
    "MIME-Version",
    "RAck",
    "RSeq",
];

/// The canonical spelling of a header name (compact form expanded).
pub fn canonical_name(name: &str) -> String {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some((_, full)) = COMPACT.iter().find(|(k, _)| k.eq_ignore_ascii_case(&c))
    {
        return (*full).to_owned();
    }
    if let Some(s) = SPELLINGS.iter().find(|s| s.eq_ignore_ascii_case(name)) {
        return (*s).to_owned();
    }
    if let Some((_, full)) = COMPACT.iter().find(|(_, f)| f.eq_ignore_ascii_case(name)) {
        return (*full).to_owned();
    }
    name.to_owned()
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every field named `name`, in order (one per header line).
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name);
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    /// Every comma-separated element of every `name` field (`Via: a, b` + `Via: c` → a, b, c).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get_all(name).flat_map(split_list).collect()
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((canonical_name(name), value.into()));
    }

    /// Replaces every `name` field by one (appended if absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        let value = value.into();
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                self.0[i].1 = value;
                let mut seen = 0;
                self.0.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(&name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        let name = canonical_name(name);
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`).
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            cur.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                let item = cur.trim();
                if !item.is_empty() {
                    out.push(item.to_owned());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    let item = cur.trim();
    if !item.is_empty() {
        out.push(item.to_owned());
    }
    out
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The wire form: CRLF line ends, `Content-Length` always present and exact.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (start, headers, body) = match self {
            Message::Request(r) => (
                format!("{} {} SIP/2.0", r.method, r.uri),
                &r.headers,
                &r.body,
            ),
            Message::Response(r) => (
                format!("SIP/2.0 {} {}", r.status, r.reason),
                &r.headers,
                &r.body,
            ),
        };
        let mut head = start;
        head.push_str("\r\n");
        for (name, value) in headers.iter() {
            if name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

impl Request {
    /// `(sequence number, method)` of the CSeq header.
    pub fn cseq(&self) -> Result<(u32, String), ParseError> {
        parse_cseq(
            self.headers
                .get("CSeq")
                .ok_or(ParseError::Missing("CSeq"))?,
        )
    }

    /// The headers every request needs before sofia will answer it (RFC 3261 §8.1.1), and a
    /// CSeq whose method is the request's.
    pub fn validate(&self) -> Result<(), ParseError> {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.headers.get(name).is_none_or(|v| v.trim().is_empty()) {
                return Err(ParseError::Missing(name));
            }
        }
        let (_, method) = self.cseq()?;
        if method != self.method {
            return Err(ParseError::BadCSeq(format!(
                "method {method} in a {} request",
                self.method
            )));
        }
        Ok(())
    }

    /// `Call-ID`, or empty.
    pub fn call_id(&self) -> &str {
        self.headers.get("Call-ID").unwrap_or_default()
    }
}

fn parse_cseq(value: &str) -> Result<(u32, String), ParseError> {
    let mut parts = value.split_whitespace();
    let (Some(n), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::BadCSeq(value.to_owned()));
    };
    let n: u32 = n
        .parse()
        .map_err(|_| ParseError::BadCSeq(value.to_owned()))?;
    if !is_token(m) {
        return Err(ParseError::BadCSeq(value.to_owned()));
    }
    Ok((n, m.to_owned()))
}

/// RFC 3261 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Parses one SIP message. Never panics, whatever the input.
pub fn parse(input: &[u8]) -> Result<Message, ParseError> {
    if input.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLarge(input.len()));
    }
    // Leading CRLFs are keep-alives / padding (RFC 5626 §4.4.1).
    let start = input
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Empty)?;
    let input = &input[start..];
    let (head, rest) = split_head(input);
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();
    let mut headers = Headers::new();
    let mut last: Option<(String, String)> = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous field (RFC 3261 §7.3.1).
            match &mut last {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Err(ParseError::BadHeader(clip(line))),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::BadHeader(clip(line)));
        };
        let name = name.trim_end();
        if !is_token(name) {
            return Err(ParseError::BadHeader(clip(line)));
        }
        if let Some((n, v)) = last.take() {
            headers.push(&n, v);
        }
        last = Some((name.to_owned(), value.trim().to_owned()));
    }
    if let Some((n, v)) = last {
        headers.push(&n, v);
    }
    let body = match headers.get("Content-Length") {
        None => rest.to_vec(),
        Some(v) => {
            let declared: usize = v
                .trim()
                .parse()
                .map_err(|_| ParseError::BadContentLength(clip(v)))?;
            if declared > rest.len() {
                return Err(ParseError::Truncated {
                    declared,
                    available: rest.len(),
                });
            }
            rest[..declared].to_vec()
        }
    };
    parse_start_line(start_line, headers, body)
}

/// Splits at the empty line ending the header block (CRLFCRLF or LFLF); no empty line means
/// no body.
fn split_head(input: &[u8]) -> (&[u8], &[u8]) {
    let crlf = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = input.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match end {
        Some((i, len)) => (&input[..i], &input[i + len..]),
        None => (input, &[]),
    }
}

fn parse_start_line(line: &str, headers: Headers, body: Vec<u8>) -> Result<Message, ParseError> {
    let bad = || ParseError::BadStartLine(clip(line));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status: u16 = code.parse().map_err(|_| bad())?;
        if !(100..700).contains(&status) {
            return Err(bad());
        }
        return Ok(Message::Response(Response {
            status,
            reason: reason.to_owned(),
            headers,
            body,
        }));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !is_token(method) || uri.is_empty() || !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(bad());
    }
    Ok(Message::Request(Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        headers,
        body,
    }))
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

// ---------------------------------------------------------------------------------------------
// Header values.

/// `name=value` / `name` parameters after `;`.
pub type Params = Vec<(String, Option<String>)>;

/// The value of parameter `name` (case-insensitive), `Some("")` for a flag.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref().unwrap_or(""))
}

fn parse_params(s: &str) -> Params {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (
                n.trim().to_owned(),
                Some(v.trim().trim_matches('"').to_owned()),
            ),
            None => (p.to_owned(), None),
        })
        .collect()
}

/// A SIP URI: `sip:user@host:port;params` (headers after `?` are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Uri {
    pub fn parse(s: &str) -> Option<Uri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        if !matches!(scheme.to_ascii_lowercase().as_str(), "sip" | "sips") {
            return None;
        }
        let rest = rest.split('?').next().unwrap_or_default();
        let (userhost, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (user, hostport) = match userhost.rsplit_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or(u).to_owned()), h),
            None => (None, userhost),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(Uri {
            scheme: scheme.to_ascii_lowercase(),
            user: user.filter(|u| !u.is_empty()),
            host,
            port,
            params: parse_params(params),
        })
    }
}

fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (hostport, None),
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port))
}

/// `"Display" <uri>;params` or `uri;params` (From, To, Contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The URI text as written (between `<>` when bracketed).
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str) -> Option<NameAddr> {
        let value = value.trim();
        if let Some(lt) = value.find('<') {
            let gt = lt + value[lt..].find('>')?;
            let display = value[..lt].trim().trim_matches('"').trim();
            Some(NameAddr {
                display: (!display.is_empty()).then(|| display.to_owned()),
                uri: value[lt + 1..gt].trim().to_owned(),
                params: parse_params(&value[gt + 1..]),
            })
        } else {
            // Without brackets, parameters after the URI belong to the header (§20.10).
            let (uri, params) = value.split_once(';').unwrap_or((value, ""));
            (!uri.is_empty()).then(|| NameAddr {
                display: None,
                uri: uri.to_owned(),
                params: parse_params(params),
            })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").filter(|t| !t.is_empty())
    }

    pub fn parsed_uri(&self) -> Option<Uri> {
        Uri::parse(&self.uri)
    }
}

/// One Via element: `SIP/2.0/WSS host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let value = value.trim();
        let (proto, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        let mut p = proto.split('/');
        let (Some(name), Some(version), Some(transport), None) =
            (p.next(), p.next(), p.next(), p.next())
        else {
            return None;
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return None;
        }
        let (sent_by, params) = rest.trim().split_once(';').unwrap_or((rest.trim(), ""));
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            transport: transport.trim().to_ascii_uppercase(),
            host,
            port,
            params: parse_params(params),
        })
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKa1\r\n\
Max-Forwards: 70\r\n\
To: <sip:1002@127.0.0.1>\r\n\
From: <sip:1002@127.0.0.1>;tag=wstag1\r\n\
Call-ID: ws-reg-call-1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:ws1002@df7jal23ls0d.invalid;transport=ws>;expires=300\r\n\
User-Agent: python-ws-fixture\r\n\
Content-Length: 0\r\n\r\n";

    fn request(m: Message) -> Request {
        match m {
            Message::Request(r) => r,
            Message::Response(r) => panic!("not a request: {r:?}"),
        }
    }

    #[test]
    fn parses_the_captured_ws_register() {
        let r = request(parse(REGISTER.as_bytes()).unwrap());
        assert_eq!(r.method, "REGISTER");
        assert_eq!(r.uri, "sip:127.0.0.1");
        assert_eq!(r.call_id(), "ws-reg-call-1");
        assert_eq!(r.cseq().unwrap(), (1, "REGISTER".to_owned()));
        r.validate().unwrap();
        let from = NameAddr::parse(r.headers.get("from").unwrap()).unwrap();
        assert_eq!(from.tag(), Some("wstag1"));
        let contact = NameAddr::parse(r.headers.get("Contact").unwrap()).unwrap();
        let uri = contact.parsed_uri().unwrap();
        assert_eq!(uri.host, "df7jal23ls0d.invalid");
        assert_eq!(param(&uri.params, "transport"), Some("ws"));
        assert_eq!(param(&contact.params, "expires"), Some("300"));
        let via = Via::parse(r.headers.get("v").unwrap()).unwrap();
        assert_eq!(via.transport, "WS");
        assert_eq!(via.branch(), Some("z9hG4bKa1"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn round_trip_keeps_order_and_fixes_content_length() {
        let mut m = parse(REGISTER.as_bytes()).unwrap();
        if let Message::Request(r) = &mut m {
            r.body = b"hello".to_vec();
        }
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("Content-Length: 5\r\n\r\nhello"), "{text}");
        assert!(text.find("Via:").unwrap() < text.find("To:").unwrap());
        // Serializing what was parsed is stable.
        assert_eq!(parse(&bytes).unwrap().to_bytes(), bytes);
    }

    #[test]
    fn compact_forms_folding_lf_and_multiple_via() {
        let text = "INVITE sip:conf*room1@example.com SIP/2.0\n\
v: SIP/2.0/WSS a.invalid;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\n\
Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK3\n\
f: \"Alice, A.\" <sip:alice@example.com>;tag=1\n\
t: sip:conf*room1@example.com\n\
i: abc\n\
CSeq: 7\n  INVITE\n\
m: <sip:x@y.invalid;transport=ws>\n\
c: application/sdp\n\
l: 4\n\nv=0\r\nIGNORED";
        let r = request(parse(text.as_bytes()).unwrap());
        r.validate().unwrap();
        assert_eq!(r.cseq().unwrap(), (7, "INVITE".to_owned()));
        assert_eq!(r.headers.list("Via").len(), 3);
        assert_eq!(r.headers.get("Content-Type"), Some("application/sdp"));
        assert_eq!(r.body, b"v=0\r");
        let from = NameAddr::parse(r.headers.get("From").unwrap()).unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice, A."));
        let to = NameAddr::parse(r.headers.get("To").unwrap()).unwrap();
        assert_eq!(to.parsed_uri().unwrap().user.as_deref(), Some("conf*room1"));
    }

    #[test]
    fn responses() {
        let m = parse(b"SIP/2.0 401 Unauthorized\r\nCall-ID: x\r\n\r\n").unwrap();
        match m {
            Message::Response(r) => {
                assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized"));
            }
            Message::Request(_) => panic!(),
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"HELLO",
            b"INVITE sip:x SIP/3.0\r\n\r\n",
            b"SIP/2.0 99 Low\r\n\r\n",
            b"SIP/2.0 abc Bad\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\n folded first\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
            b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nBad Name: x\r\n\r\n",
            b"\xff\xfe INVITE",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&vec![b'A'; MAX_MESSAGE_LEN + 1]).is_err());
    }

    #[test]
    fn validate_wants_mandatory_headers_and_matching_cseq() {
        let r = request(parse(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n").unwrap());
        assert!(matches!(r.validate(), Err(ParseError::Missing("Via"))));
        let text = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
        let r = request(parse(text.as_bytes()).unwrap());
        assert!(matches!(r.validate(), Err(ParseError::BadCSeq(_))));
        let text = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: x REGISTER");
        let r = request(parse(text.as_bytes()).unwrap());
        assert!(r.validate().is_err());
    }

    #[test]
    fn header_value_parsers_reject_nonsense_without_panicking() {
        for v in ["", "<", "<sip:", "sip:", "\"x\" <>", "<sip:a@[::1>"] {
            let _ = NameAddr::parse(v).and_then(|n| n.parsed_uri());
        }
        assert!(Uri::parse("mailto:x@y").is_none());
        assert!(Uri::parse("sip:host:99999").is_none());
        assert_eq!(Uri::parse("sip:[::1]:5060").unwrap().port, Some(5060));
        assert!(Via::parse("SIP/2.0/WS").is_none());
        assert!(Via::parse("HTTP/1.1/WS host").is_none());
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        fn prop(data: Vec<u8>) -> bool {
            let _ = parse(&data);
            true
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn parse_never_panics_on_mutated_messages() {
        fn prop(cuts: Vec<(u16, u8)>) -> bool {
            let mut data = REGISTER.as_bytes().to_vec();
            for (pos, byte) in cuts {
                let i = usize::from(pos) % (data.len() + 1);
                if byte % 3 == 0 && i < data.len() {
                    data.remove(i);
                } else {
                    data.insert(i, byte);
                }
            }
            if let Ok(m) = parse(&data) {
                // Whatever parses must serialize and parse again.
                return parse(&m.to_bytes()).is_ok();
            }
            true
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<(u16, u8)>) -> bool);
    }
}
