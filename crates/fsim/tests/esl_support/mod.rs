//! Shared helpers of fsim's integration tests: a raw ESL client, capture loading, a directory
//! server answering the captured documents, and **the one list of what the conformance
//! comparisons normalise** ([`NORMALISED_HEADERS`], [`normalise_body`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use esl::frame::decode_all;
use esl::{Event, EventFormat, Frame, FrameDecoder, Limits};
use fsim::directory::DirectoryConfig;
use fsim::{NodeConfig, SimNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Captures.

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/freeswitch")
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every frame of a capture.
pub fn frames(name: &str) -> Vec<Frame> {
    let (frames, rest) = decode_all(&read(name), Limits::default()).expect(name);
    assert_eq!(rest, 0, "{name}: trailing bytes");
    frames
}

/// The event of an event frame.
pub fn event_of(frame: &Frame) -> Option<Event> {
    let format = frame
        .content_type()
        .and_then(EventFormat::from_content_type)?;
    Some(Event::parse(format, frame.body.clone().unwrap_or_default()).expect("event"))
}

/// The events of a capture.
pub fn events(name: &str) -> Vec<Event> {
    frames(name).iter().filter_map(event_of).collect()
}

/// Block `n` of xml-curl-responses.txt (the header line ends in `(<len> bytes ...)`).
pub fn captured_response(n: usize) -> String {
    let data = read("xml-curl-responses.txt");
    let text = String::from_utf8_lossy(&data).into_owned();
    let header = format!("===== response to xml_curl request #{n}:");
    let start = text.find(&header).expect("response header");
    let line_end = start + text[start..].find('\n').unwrap();
    let line = &text[start..line_end];
    let open = line.rfind('(').unwrap();
    let len: usize = line[open + 1..].split(' ').next().unwrap().parse().unwrap();
    String::from_utf8(data[line_end + 1..line_end + 1 + len].to_vec()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The directory server: answers users 1001 and 1002 with the captured documents.

/// Starts an HTTP directory server answering like the capture's (responses #3 / #4 for users
/// 1001 / 1002, the not-found document otherwise). Returns its URL.
pub async fn directory_server() -> String {
    use axum::Router;
    use axum::routing::post;
    let user_1001 = captured_response(3);
    let user_1002 = captured_response(4);
    let not_found = captured_response(1);
    let app = Router::new().route(
        "/directory",
        post(move |body: String| {
            let user = body
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "user")
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default();
            let doc = match user.as_str() {
                "1001" => user_1001.clone(),
                "1002" => user_1002.clone(),
                _ => not_found.clone(),
            };
            async move { ([("content-type", "text/xml")], doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/directory")
}

/// A node configured like the captured one (switchname `vm`, the captured IPs and domain),
/// with the directory at `url` and a long heartbeat unless told otherwise.
pub fn capture_config(url: Option<String>) -> NodeConfig {
    let mut cfg = NodeConfig::new("vm");
    cfg.ipv4 = "192.0.2.2".into();
    cfg.ipv6 = "fd00::2".into();
    cfg.domain = "127.0.0.1".into();
    cfg.heartbeat_interval = Duration::from_secs(3600);
    cfg.directory = DirectoryConfig {
        url,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    cfg
}

pub async fn capture_node() -> SimNode {
    let url = directory_server().await;
    SimNode::start(capture_config(Some(url))).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// A raw ESL client.

pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// Every byte received, for byte-exact comparisons.
    pub raw: Vec<u8>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            raw: Vec::new(),
        }
    }

    /// Connects and authenticates (`ClueCon`), checking the two frames.
    pub async fn authed(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let f = c.frame().await;
        assert_eq!(f.content_type(), Some("auth/request"));
        let r = c.command("auth ClueCon").await;
        assert_eq!(r.headers.get("Reply-Text"), Some("+OK accepted"));
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads the next frame, or `None` after `wait`.
    pub async fn try_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            let before = self.buf.len();
            self.buf.reserve(16 * 1024);
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.raw.extend_from_slice(&self.buf[before..]);
        }
    }

    pub async fn frame(&mut self) -> Frame {
        self.try_frame(WAIT).await.expect("a frame in time")
    }

    /// Sends `line\n\n` and returns the next non-event frame (the reply).
    pub async fn command(&mut self, line: &str) -> Frame {
        self.send(format!("{line}\n\n").as_bytes()).await;
        loop {
            let f = self.frame().await;
            if event_of(&f).is_none() {
                return f;
            }
        }
    }

    /// `api <cmd>`: the body.
    pub async fn api(&mut self, cmd: &str) -> String {
        let f = self.command(&format!("api {cmd}")).await;
        assert_eq!(f.content_type(), Some("api/response"), "{cmd}");
        String::from_utf8(f.body_bytes().to_vec()).unwrap()
    }

    /// Reads until the server closes (or `wait` passes); returns whether it closed.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let before = self.buf.len();
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => self.raw.extend_from_slice(&self.buf[before..]),
            }
        }
    }

    /// Keeps reading in the background; frames land in the returned collector.
    pub fn collect(mut self) -> Collector {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&frames);
        tokio::spawn(async move {
            while let Some(f) = self.try_frame(Duration::from_secs(3600)).await {
                sink.lock().unwrap().push(f);
            }
        });
        Collector { frames }
    }
}

/// Frames read by a background task.
#[derive(Clone)]
pub struct Collector {
    frames: Arc<Mutex<Vec<Frame>>>,
}

impl Collector {
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.frames().iter().filter_map(event_of).collect()
    }

    /// Waits until `pred` holds for the collected events.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if pred(&self.events()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until no new frame arrived for `quiet`.
    pub async fn settle(&self, quiet: Duration) {
        let mut last = self.frames.lock().unwrap().len();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.frames.lock().unwrap().len();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation: THE list of everything the conformance comparisons do not compare verbatim.

/// How a normalised header value is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Any value matches (the header must still be there, at the same position).
    Any,
    /// `0` must stay `0`; any other value matches any other non-zero value.
    NonZero,
    /// Only a `;tag=...` parameter may differ (the To tag FreeSWITCH generates).
    ToTag,
}

/// Headers whose values legitimately differ between a real run and an fsim run. Each entry is a
/// header name, or a prefix ending in `*`. Everything else — every other header name, the order
/// of all headers, and every other value — is compared exactly.
pub const NORMALISED_HEADERS: &[(&str, Mask, &str)] = &[
    // Event prelude: per process / per moment.
    ("Core-UUID", Mask::Any, "new per process"),
    ("Event-Date-Local", Mask::Any, "time"),
    ("Event-Date-GMT", Mask::Any, "time"),
    ("Event-Date-Timestamp", Mask::Any, "time"),
    (
        "Event-Sequence",
        Mask::Any,
        "counts every event of the process",
    ),
    // Generated identifiers.
    ("Unique-ID", Mask::Any, "channel uuid"),
    ("Caller-Unique-ID", Mask::Any, "channel uuid"),
    ("Channel-Call-UUID", Mask::Any, "channel uuid"),
    ("Conference-Unique-ID", Mask::Any, "conference uuid"),
    ("Application-UUID", Mask::Any, "application uuid"),
    ("Job-UUID", Mask::Any, "bgapi job uuid"),
    // Channel timestamps (0 = never, which must match).
    ("Caller-Profile-Created-Time", Mask::NonZero, "time"),
    ("Caller-Channel-Created-Time", Mask::NonZero, "time"),
    ("Caller-Channel-Answered-Time", Mask::NonZero, "time"),
    ("Caller-Channel-Progress-Media-Time", Mask::NonZero, "time"),
    ("Caller-Channel-Hangup-Time", Mask::NonZero, "time"),
    // Measured audio energy (fsim has no audio).
    ("Current-Energy", Mask::NonZero, "measured audio"),
    // HEARTBEAT / RE_SCHEDULE: uptime and load of the moment.
    ("Up-Time", Mask::Any, "uptime"),
    ("Uptime-msec", Mask::Any, "uptime"),
    ("Session-Count", Mask::Any, "load"),
    ("Session-Per-Sec", Mask::Any, "load"),
    ("Session-Per-Sec-Last", Mask::Any, "load"),
    ("Session-Per-Sec-Max", Mask::Any, "load"),
    ("Session-Per-Sec-FiveMin", Mask::Any, "load"),
    ("Session-Since-Startup", Mask::Any, "load"),
    ("Session-Peak-Max", Mask::Any, "load"),
    ("Session-Peak-FiveMin", Mask::Any, "load"),
    ("Idle-CPU", Mask::Any, "load"),
    ("Task-Runtime", Mask::Any, "time"),
    // Channel variables: generated ids, times, server-chosen media parameters.
    ("variable_uuid", Mask::Any, "channel uuid"),
    ("variable_call_uuid", Mask::Any, "channel uuid"),
    (
        "variable_other_loopback_leg_uuid",
        Mask::Any,
        "channel uuid",
    ),
    ("variable_app_session_uuid", Mask::Any, "conference uuid"),
    ("variable_conference_uuid", Mask::Any, "conference uuid"),
    ("variable_Core-UUID", Mask::Any, "new per process"),
    ("variable_Event-Date-Local", Mask::Any, "time"),
    ("variable_Event-Date-GMT", Mask::Any, "time"),
    ("variable_Event-Date-Timestamp", Mask::Any, "time"),
    ("variable_Event-Sequence", Mask::Any, "event counter"),
    ("variable_sip_invite_stamp", Mask::Any, "time"),
    ("variable_sip_to_tag", Mask::Any, "generated To tag"),
    ("variable_sip_full_to", Mask::ToTag, "generated To tag"),
    (
        "variable_local_media_port",
        Mask::Any,
        "server-chosen RTP port",
    ),
    ("variable_rtp_use_ssrc", Mask::Any, "random SSRC"),
    (
        "variable_rtp_local_sdp_str",
        Mask::Any,
        "SDP with session id and RTP port",
    ),
    ("variable_*_stamp", Mask::Any, "CDR times"),
    ("variable_*_epoch", Mask::NonZero, "CDR times"),
    ("variable_*_uepoch", Mask::NonZero, "CDR times"),
    ("variable_duration", Mask::Any, "call length"),
    ("variable_billsec", Mask::Any, "call length"),
    ("variable_flow_billsec", Mask::Any, "call length"),
    ("variable_mduration", Mask::Any, "call length"),
    ("variable_billmsec", Mask::Any, "call length"),
    ("variable_flow_billmsec", Mask::Any, "call length"),
    ("variable_uduration", Mask::Any, "call length"),
    ("variable_billusec", Mask::Any, "call length"),
    ("variable_flow_billusec", Mask::Any, "call length"),
    ("variable_answersec", Mask::Any, "call setup time"),
    ("variable_answermsec", Mask::Any, "call setup time"),
    ("variable_answerusec", Mask::Any, "call setup time"),
    ("variable_progress_mediasec", Mask::Any, "call setup time"),
    ("variable_progress_mediamsec", Mask::Any, "call setup time"),
    ("variable_progress_mediausec", Mask::Any, "call setup time"),
    ("variable_rtp_audio_*", Mask::Any, "measured RTP statistics"),
];

fn rule(name: &str) -> Option<Mask> {
    NORMALISED_HEADERS.iter().find_map(|(pattern, mask, _)| {
        let hit = match pattern.split_once('*') {
            Some((pre, suf)) => {
                name.len() >= pre.len() + suf.len() && name.starts_with(pre) && name.ends_with(suf)
            }
            None => *pattern == name,
        };
        hit.then_some(*mask)
    })
}

/// The value of header `name` as compared.
pub fn normalise_header(name: &str, value: &str) -> String {
    match rule(name) {
        None => value.to_owned(),
        Some(Mask::Any) => "<any>".to_owned(),
        Some(Mask::NonZero) => {
            if value == "0" {
                "0".to_owned()
            } else {
                "<non-zero>".to_owned()
            }
        }
        Some(Mask::ToTag) => match value.find(";tag=") {
            Some(pos) => format!("{};tag=<tag>", &value[..pos]),
            None => value.to_owned(),
        },
    }
}

/// Text outputs (api bodies, BACKGROUND_JOB bodies): the only parts masked are
///
/// 1. UUIDs (8-4-4-4-12 hex);
/// 2. local dates `YYYY-MM-DD HH:MM:SS`;
/// 3. the `UP ...` uptime line and the current idle CPU of `status`;
/// 4. the elapsed-seconds fields `run_time`, `join_time`, `last_talking` of `json_list`;
/// 5. the epoch columns of `show` (`created_epoch`, registration `expires`);
/// 6. `EXPSECS(n)` of `sofia status ... reg`.
pub fn normalise_body(text: &str) -> String {
    use regex::Regex;
    let rules: &[(&str, &str)] = &[
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<uuid>",
        ),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "<date>"),
        (r"(?m)^UP .*$", "UP <uptime>"),
        (
            r"min idle cpu (\d+\.\d\d)/\d+\.\d\d",
            "min idle cpu $1/<idle>",
        ),
        (
            r#""(run_time|join_time|last_talking)":(\t?)\d+"#,
            "\"$1\":$2<secs>",
        ),
        (r#""created_epoch":"\d+""#, "\"created_epoch\":\"<epoch>\""),
        (r",1\d{9},", ",<epoch>,"),
        (r"EXPSECS\(\d+\)", "EXPSECS(<secs>)"),
    ];
    let mut out = text.to_owned();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, *replacement)
            .into_owned();
    }
    out
}

/// Differences between two events (empty when they match after normalisation).
pub fn diff_events(actual: &Event, expected: &Event) -> Vec<String> {
    let mut diffs = Vec::new();
    let a: Vec<(&str, &str)> = actual.headers().iter().collect();
    let e: Vec<(&str, &str)> = expected.headers().iter().collect();
    for i in 0..a.len().max(e.len()) {
        match (a.get(i), e.get(i)) {
            (Some((an, av)), Some((en, ev))) => {
                if an != en {
                    diffs.push(format!("#{i}: header {an:?} where the capture has {en:?}"));
                    break;
                }
                let (na, ne) = (normalise_header(an, av), normalise_header(en, ev));
                if na != ne {
                    diffs.push(format!("#{i} {an}: {av:?} != captured {ev:?}"));
                }
            }
            (Some((an, _)), None) => diffs.push(format!("#{i}: extra header {an:?}")),
            (None, Some((en, _))) => diffs.push(format!("#{i}: missing header {en:?}")),
            (None, None) => {}
        }
    }
    let body = |e: &Event| e.body_text().map(|b| normalise_body(&b));
    if body(actual) != body(expected) {
        diffs.push(format!(
            "body {:?} != captured {:?}",
            actual.body_text(),
            expected.body_text()
        ));
    }
    diffs
}

/// A one-line summary of an event for sequence comparisons.
pub fn summary(e: &Event) -> String {
    let g = |n: &str| e.get(n).unwrap_or("").to_owned();
    let mut s = g("Event-Name");
    for (label, name) in [
        ("", "Event-Subclass"),
        ("", "Action"),
        ("member=", "Member-ID"),
        ("old=", "Old-ID"),
        ("new=", "New-ID"),
        ("", "Channel-Name"),
        ("", "Channel-State"),
        ("", "API-Command"),
        ("", "Application"),
    ] {
        let v = g(name);
        if !v.is_empty() {
            s.push(' ');
            s.push_str(label);
            s.push_str(&v);
        }
    }
    s
}

/// Compares two event sequences: same length, same summaries, then header by header.
pub fn assert_same_events(what: &str, actual: &[Event], expected: &[Event]) {
    let a: Vec<String> = actual.iter().map(summary).collect();
    let e: Vec<String> = expected.iter().map(summary).collect();
    if a != e {
        let first = a
            .iter()
            .zip(&e)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(e.len()));
        let lo = first.saturating_sub(3);
        panic!(
            "{what}: event sequences differ at #{first} (fsim {} events, capture {})\n fsim:    {:#?}\n capture: {:#?}",
            a.len(),
            e.len(),
            &a[lo..(first + 4).min(a.len())],
            &e[lo..(first + 4).min(e.len())],
        );
    }
    let mut report = Vec::new();
    for (i, (x, y)) in actual.iter().zip(expected).enumerate() {
        let d = diff_events(x, y);
        if !d.is_empty() {
            report.push(format!("event #{i} {}:\n  {}", a[i], d.join("\n  ")));
        }
    }
    assert!(report.is_empty(), "{what}:\n{}", report.join("\n"));
}

/// The body of an api/response frame.
pub fn body(frame: &Frame) -> Bytes {
    frame.body.clone().unwrap_or_default()
}
