//! The client against byte scripts cut from real FreeSWITCH captures, in virtual time.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use super::*;
use crate::EventFormat;
use crate::serialize;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/freeswitch")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The capture cut at frame boundaries, each frame's bytes exactly as received.
fn frames(name: &str) -> Vec<Bytes> {
    let bytes = fixture(name);
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    let mut start = 0;
    while decoder.decode(&mut buf).unwrap().is_some() {
        let end = bytes.len() - buf.len();
        out.push(Bytes::copy_from_slice(&bytes[start..end]));
        start = end;
    }
    assert!(buf.is_empty(), "{name}: trailing bytes");
    out
}

fn api_frame(body: &str) -> Bytes {
    let mut out = BytesMut::new();
    serialize::api_response(&mut out, body.as_bytes());
    out.freeze()
}

fn reply_frame(text: &str) -> Bytes {
    let mut out = BytesMut::new();
    serialize::command_reply(&mut out, text, &[]);
    out.freeze()
}

fn event_frame(headers: &[(&str, &str)], body: Option<&str>) -> Bytes {
    let event = Event::new(
        headers.iter().copied().collect(),
        body.map(|b| Bytes::copy_from_slice(b.as_bytes())),
    );
    let mut out = BytesMut::new();
    serialize::event_frame(&mut out, EventFormat::Plain, &event);
    out.freeze()
}

const AUTH_REQUEST: &[u8] = b"Content-Type: auth/request\n\n";

/// A client plus virtual time and a record of what it wrote.
struct Harness {
    client: Client,
    now: Instant,
    sent: Vec<u8>,
    /// Outputs drained by `sent_lines`, returned by the next `drain`.
    stash: Vec<Output>,
}

impl Harness {
    fn new(config: ClientConfig) -> Self {
        Harness {
            client: Client::new(config),
            now: Instant::now(),
            sent: Vec::new(),
            stash: Vec::new(),
        }
    }

    /// Connected, authenticated and subscribed (replay answered with `+OK`).
    fn ready(config: ClientConfig) -> Self {
        let mut h = Harness::new(config);
        h.connect();
        h.feed(AUTH_REQUEST);
        h.feed(&reply_frame("+OK accepted"));
        let replay = h.client.pending_replies();
        for _ in 0..replay {
            h.feed(&reply_frame("+OK"));
        }
        let outs = h.drain();
        assert!(
            matches!(&outs[..], [Output::Authenticated, Output::Ready { rejected }] if rejected.is_empty()),
            "{outs:?}"
        );
        h.sent.clear();
        h
    }

    fn connect(&mut self) {
        self.client.handle_input(Input::Connected(self.now));
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.client.handle_input(Input::Receive(self.now, bytes));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_input(Input::Timeout(self.now));
    }

    fn send(&mut self, command: Command, token: u64) {
        self.client.send(command, Token(token), self.now).unwrap();
    }

    fn api(&mut self, command: &str, token: u64) {
        self.send(
            Command::Api {
                command: command.into(),
            },
            token,
        );
    }

    /// Everything but Transmit (recorded in `sent`) and Timeout (which ends the drain).
    fn drain(&mut self) -> Vec<Output> {
        let mut outs = std::mem::take(&mut self.stash);
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::Transmit(bytes) => self.sent.extend_from_slice(&bytes),
                Output::Timeout(_) => break,
                other => outs.push(other),
            }
        }
        outs
    }

    /// The command blocks written since the last call (outputs are kept for `drain`).
    fn sent_lines(&mut self) -> Vec<String> {
        let outs = self.drain();
        self.stash = outs;
        let text = String::from_utf8(std::mem::take(&mut self.sent)).unwrap();
        text.split("\n\n")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Drains, asserting nothing but transmissions came out.
    fn drain_keep(&mut self) {
        let outs = self.drain();
        assert!(outs.is_empty(), "unexpected outputs {outs:?}");
    }
}

fn api_body(out: &Output) -> Option<(u64, String)> {
    match out {
        Output::Reply {
            token,
            result: Ok(Response::Api(body)),
        } => Some((token.0, String::from_utf8_lossy(body).into_owned())),
        _ => None,
    }
}

#[test]
fn auth_ok_then_subscription_replay_from_capture() {
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    assert!(h.client.poll_output().is_none(), "no transport, no timeout");
    h.connect();
    assert!(matches!(h.client.poll_output(), Some(Output::Timeout(_))));
    h.feed(&fixture("esl-auth-ok.txt"));
    assert!(matches!(&h.drain()[..], [Output::Authenticated]));
    assert_eq!(
        h.sent,
        [
            &fixture("esl-auth-ok.sent.txt")[..],
            b"event plain HEARTBEAT BACKGROUND_JOB\n\n"
        ]
        .concat()
    );
    assert!(h.client.is_authenticated() && !h.client.is_ready());
    h.feed(&frames("esl-bgapi-conference-list.txt")[2]); // +OK event listener enabled plain
    assert!(matches!(&h.drain()[..], [Output::Ready { rejected }] if rejected.is_empty()));
    assert!(h.client.is_ready());
}

#[test]
fn wrong_password_from_capture_is_auth_failed() {
    let mut h = Harness::new(ClientConfig::new("WrongPassword"));
    h.connect();
    h.feed(&fixture("esl-auth-bad.txt"));
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [Output::Disconnected(DisconnectReason::AuthFailed(t))] if t == "-ERR invalid"),
        "{outs:?}"
    );
    assert_eq!(h.sent, fixture("esl-auth-bad.sent.txt"));
    assert!(h.client.poll_output().is_none());
    let err = h.client.send(Command::NoEvents, Token(1), h.now);
    assert_eq!(err, Err(SendError::NotConnected));
}

#[test]
fn auth_reply_split_at_every_byte() {
    let bytes = fixture("esl-auth-ok.txt");
    for split in 0..=bytes.len() {
        let mut h = Harness::new(ClientConfig::new("ClueCon"));
        h.connect();
        h.feed(&bytes[..split]);
        h.feed(&bytes[split..]);
        assert!(
            matches!(&h.drain()[..], [Output::Authenticated]),
            "split {split}"
        );
    }
}

#[test]
fn bgapi_result_from_capture_goes_to_the_job() {
    let script = frames("esl-bgapi-conference-list.txt");
    let job = "6baa71ab-db7c-4836-b56d-1b1413f4120e";
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    h.connect();
    for frame in &script[..3] {
        h.feed(frame);
    }
    assert!(matches!(
        &h.drain()[..],
        [Output::Authenticated, Output::Ready { .. }]
    ));
    h.sent.clear();
    h.send(
        Command::BgApi {
            command: "conference list".into(),
            job_uuid: job.into(),
        },
        7,
    );
    assert_eq!(
        h.sent_lines(),
        vec![format!("bgapi conference list\nJob-UUID: {job}")]
    );
    h.feed(&script[3]);
    h.drain_keep();
    h.feed(&script[4]);
    let outs = h.drain();
    match &outs[..] {
        [
            Output::JobResult {
                token,
                result: Ok(body),
            },
        ] => {
            assert_eq!(*token, Token(7));
            assert_eq!(body.len(), 340);
            assert!(body.starts_with(b"+OK Conference 3000 (2 members"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.client.core_uuid(),
        Some("60521194-8708-47ec-8892-6f189eab12ad")
    );
}

#[test]
fn bgapi_follows_the_job_uuid_the_server_returns() {
    let script = frames("esl-bgapi-conference-list.txt");
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    let ours = h.client.bgapi("conference list", Token(1), h.now).unwrap();
    assert_eq!(uuid::Uuid::parse_str(&ours).unwrap().get_version_num(), 4);
    assert!(h.sent_lines()[0].ends_with(&format!("Job-UUID: {ours}")));
    h.feed(&script[3]); // the capture's reply names another Job-UUID
    h.feed(&script[4]);
    assert!(matches!(
        &h.drain()[..],
        [Output::JobResult {
            token: Token(1),
            result: Ok(_)
        }]
    ));
}

#[test]
fn bgapi_rejected_timeout_and_unmatched_results() {
    let config = ClientConfig {
        dead_after: Duration::from_secs(3600),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::ready(config);
    h.client.bgapi("nope", Token(1), h.now).unwrap();
    h.feed(&reply_frame("-ERR permission denied"));
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [Output::JobResult { token: Token(1), result: Err(ReplyError::Rejected(t)) }] if t == "-ERR permission denied"),
        "{outs:?}"
    );

    let job = h.client.bgapi("originate x", Token(2), h.now).unwrap();
    h.feed(&reply_frame(&format!("+OK Job-UUID: {job}")));
    h.advance(h.client.config().job_timeout - Duration::from_millis(1));
    h.drain_keep();
    h.advance(Duration::from_millis(1));
    assert!(matches!(
        &h.drain()[..],
        [Output::JobResult {
            token: Token(2),
            result: Err(ReplyError::Timeout)
        }]
    ));
    // The late result, and other clients' jobs, are not ours: BACKGROUND_JOB is not subscribed
    // by the user, so they stay out of the event stream.
    h.feed(&event_frame(
        &[("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", &job)],
        Some("+OK late\n"),
    ));
    h.drain_keep();
}

#[test]
fn replies_are_fifo_with_events_in_between() {
    let config = ClientConfig {
        subscription: Subscription::default().with_events(["CUSTOM conference::maintenance"]),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::ready(config);
    let conference = frames("esl-events-plain-conference-maintenance-only.txt");
    let heartbeat = frames("esl-event-plain-heartbeat.txt").pop().unwrap();
    h.api("conference 3000 count", 1);
    h.api("version", 2);
    h.feed(&conference[0]);
    h.feed(&heartbeat); // not asked for: liveness only
    h.feed(&conference[1]);
    h.feed(&frames("esl-api-conference-3000-count.txt")[0]);
    h.feed(&conference[2]);
    h.feed(&frames("esl-api-version.txt")[0]);
    let outs = h.drain();
    let kinds: Vec<&str> = outs
        .iter()
        .map(|o| match o {
            Output::Event(_) => "event",
            Output::Reply { .. } => "reply",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["event", "event", "reply", "event", "reply"]);
    let replies: Vec<_> = outs.iter().filter_map(api_body).collect();
    assert_eq!(replies[0], (1, "2".to_owned()));
    assert_eq!(replies[1].0, 2);
    assert!(replies[1].1.starts_with("FreeSWITCH Version 1.11.3-dev"));
}

#[test]
fn a_timed_out_request_keeps_its_slot() {
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    let timeout = h.client.config().request_timeout;
    h.api("slow", 1);
    h.advance(timeout / 2);
    h.api("fast", 2);
    h.advance(timeout / 2);
    assert!(matches!(
        &h.drain()[..],
        [Output::Reply {
            token: Token(1),
            result: Err(ReplyError::Timeout)
        }]
    ));
    assert_eq!(h.client.pending_replies(), 2);
    h.feed(&api_frame("late reply to slow"));
    h.drain_keep();
    h.feed(&api_frame("fast"));
    let outs = h.drain();
    assert_eq!(
        outs.iter().filter_map(api_body).collect::<Vec<_>>(),
        [(2, "fast".to_owned())]
    );
    assert_eq!(h.client.pending_replies(), 0);
}

#[test]
fn dead_peer_fails_pending_requests_first() {
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    let dead_after = h.client.config().dead_after;
    h.advance(dead_after - Duration::from_millis(1));
    h.feed(&frames("esl-event-plain-heartbeat.txt").pop().unwrap());
    let heard_at = h.now;
    h.advance(dead_after - Duration::from_millis(1));
    h.drain_keep();
    h.client.bgapi("status", Token(1), h.now).unwrap();
    h.api("status", 2);
    h.drain_keep();
    match h.client.poll_output() {
        Some(Output::Timeout(at)) => assert_eq!(at, heard_at + dead_after),
        other => panic!("{other:?}"),
    }
    h.advance(Duration::from_millis(1));
    let outs = h.drain();
    assert!(
        matches!(
            &outs[..],
            [
                Output::JobResult { token: Token(1), result: Err(ReplyError::Disconnected) },
                Output::Reply { token: Token(2), result: Err(ReplyError::Disconnected) },
                Output::Disconnected(DisconnectReason::DeadPeer(d)),
            ] if *d == dead_after
        ),
        "{outs:?}"
    );
    assert!(h.client.poll_output().is_none());
}

#[test]
fn touch_excuses_the_peer_while_we_do_not_read() {
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    let dead_after = h.client.config().dead_after;
    h.now += dead_after * 3;
    h.client.touch(h.now);
    h.advance(dead_after - Duration::from_millis(1));
    h.drain_keep();
    h.advance(Duration::from_millis(1));
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::DeadPeer(_))]
    ));
}

#[test]
fn handshake_timeout_when_the_server_says_nothing() {
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    h.connect();
    h.advance(Duration::from_secs(10));
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::HandshakeTimeout(_))]
    ));
}

#[test]
fn server_side_endings() {
    // ACL refusal: rude-rejection then the goodbye notice.
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    h.connect();
    let mut bytes = BytesMut::new();
    serialize::rude_rejection(&mut bytes);
    serialize::disconnect_notice(&mut bytes, serialize::GOODBYE);
    h.feed(&bytes);
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [Output::Disconnected(DisconnectReason::Rejected(t))] if t == "Access Denied, go away."),
        "{outs:?}"
    );

    // Shutdown notice while a request waits.
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.api("status", 1);
    let mut bytes = BytesMut::new();
    serialize::disconnect_notice(&mut bytes, serialize::SHUTTING_DOWN);
    h.feed(&bytes);
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [
            Output::Reply { token: Token(1), result: Err(ReplyError::Disconnected) },
            Output::Disconnected(DisconnectReason::Notice(t)),
        ] if t == "The system is being shut down."),
        "{outs:?}"
    );

    // Garbage: a decode error ends the connection.
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.feed(b"Content-Length: lots\n\n");
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::Decode(
            FrameError::BadContentLength(_)
        ))]
    ));

    // A reply nobody waits for means we lost track: protocol error.
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.feed(&api_frame("?"));
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::Protocol(_))]
    ));

    // EOF from the IO layer.
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.client
        .handle_input(Input::Disconnected(DisconnectReason::Closed));
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::Closed)]
    ));
}

#[test]
fn exit_from_capture() {
    let script = frames("esl-exit.txt");
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    h.connect();
    h.feed(&script[0]);
    h.feed(&script[1]);
    h.feed(&reply_frame("+OK event listener enabled plain"));
    h.drain();
    h.sent.clear();
    h.send(Command::Exit, 9);
    assert_eq!(h.sent_lines(), ["exit"]);
    h.feed(&script[2]);
    h.feed(&script[3]);
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [
            Output::Reply { token: Token(9), result: Ok(Response::Command(r)) },
            Output::Disconnected(DisconnectReason::Exit),
        ] if r.text() == "+OK bye"),
        "{outs:?}"
    );
}

#[test]
fn send_refuses_bad_commands_and_auth() {
    let mut h = Harness::new(ClientConfig::new("ClueCon"));
    let now = h.now;
    let smuggle = Command::Api {
        command: "status\n\napi shutdown".into(),
    };
    assert!(matches!(
        h.client.send(smuggle.clone(), Token(1), now),
        Err(SendError::Command(CommandError::LineBreak(_)))
    ));
    assert_eq!(
        h.client.send(Command::NoEvents, Token(1), now),
        Err(SendError::NotConnected)
    );
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    assert!(matches!(
        h.client.send(smuggle, Token(1), now),
        Err(SendError::Command(_))
    ));
    assert_eq!(
        h.client.send(
            Command::Auth {
                password: "x".into()
            },
            Token(1),
            now
        ),
        Err(SendError::Auth)
    );
    assert!(h.sent_lines().is_empty());
}

#[test]
fn subscription_changes_are_replayed_after_reconnect() {
    let config = ClientConfig {
        subscription: Subscription::new(EventFormat::Plain)
            .with_events(["CHANNEL_CREATE", "CUSTOM", "conference::maintenance"])
            .with_filter("Unique-ID", "abc"),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::new(config);
    h.connect();
    h.feed(AUTH_REQUEST);
    h.feed(&reply_frame("+OK accepted"));
    assert_eq!(
        h.sent_lines(),
        [
            "auth ClueCon",
            "event plain HEARTBEAT BACKGROUND_JOB CHANNEL_CREATE CUSTOM conference::maintenance",
            "filter Event-Name HEARTBEAT",
            "filter Event-Name BACKGROUND_JOB",
            "filter Unique-ID abc",
        ]
    );
    for _ in 0..4 {
        h.feed(&reply_frame("+OK"));
    }
    assert!(matches!(
        &h.drain()[..],
        [Output::Authenticated, Output::Ready { .. }]
    ));

    // Changes accepted by the server become part of the subscription; refused ones do not.
    h.send(
        Command::Event {
            format: EventFormat::Json,
            names: vec!["CHANNEL_HANGUP_COMPLETE".into()],
        },
        1,
    );
    h.send(
        Command::Filter {
            header: "Unique-ID".into(),
            value: "def".into(),
        },
        2,
    );
    h.send(
        Command::Filter {
            header: "Bad".into(),
            value: "x".into(),
        },
        3,
    );
    h.send(
        Command::NixEvent {
            names: vec!["CHANNEL_CREATE".into()],
        },
        4,
    );
    assert_eq!(
        h.sent_lines(),
        [
            "event json CHANNEL_HANGUP_COMPLETE",
            "filter Unique-ID def",
            "filter Bad x",
            "nixevent CHANNEL_CREATE",
            "event json HEARTBEAT BACKGROUND_JOB",
        ]
    );
    h.feed(&reply_frame("+OK event listener enabled json"));
    h.feed(&reply_frame("+OK filter added. [Unique-ID]=[def]"));
    h.feed(&reply_frame("-ERR invalid syntax"));
    h.feed(&reply_frame("+OK events nixed"));
    h.feed(&reply_frame("+OK event listener enabled json"));
    let outs = h.drain();
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Output::Reply { result: Ok(_), .. }))
            .count(),
        4
    );
    let sub = h.client.subscription().clone();
    assert_eq!(sub.format(), EventFormat::Json);
    assert_eq!(
        sub.events().collect::<Vec<_>>(),
        ["CHANNEL_HANGUP_COMPLETE", "CUSTOM"]
    );
    assert_eq!(sub.filters().len(), 2);

    // The connection drops; the next one gets the same subscription.
    h.client
        .handle_input(Input::Disconnected(DisconnectReason::Closed));
    assert!(matches!(
        &h.drain()[..],
        [Output::Disconnected(DisconnectReason::Closed)]
    ));
    h.now += Duration::from_secs(1);
    h.connect();
    h.feed(AUTH_REQUEST);
    h.feed(&reply_frame("+OK accepted"));
    assert_eq!(
        h.sent_lines(),
        [
            "auth ClueCon",
            "event json HEARTBEAT BACKGROUND_JOB CHANNEL_HANGUP_COMPLETE CUSTOM conference::maintenance",
            "filter Event-Name HEARTBEAT",
            "filter Event-Name BACKGROUND_JOB",
            "filter Unique-ID abc",
            "filter Unique-ID def",
        ]
    );
}

#[test]
fn liveness_filters_come_and_go_with_user_filters() {
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.send(
        Command::Filter {
            header: "Unique-ID".into(),
            value: "abc".into(),
        },
        1,
    );
    assert_eq!(
        h.sent_lines(),
        [
            "filter Event-Name HEARTBEAT",
            "filter Event-Name BACKGROUND_JOB",
            "filter Unique-ID abc",
        ]
    );
    for _ in 0..3 {
        h.feed(&reply_frame("+OK filter added."));
    }
    assert_eq!(h.drain().len(), 1);
    h.send(
        Command::FilterDelete {
            header: "Unique-ID".into(),
            value: None,
        },
        2,
    );
    h.feed(&reply_frame("+OK filter deleted."));
    assert_eq!(
        h.sent_lines(),
        [
            "filter delete Unique-ID",
            "filter delete Event-Name HEARTBEAT",
            "filter delete Event-Name BACKGROUND_JOB",
        ]
    );
    // A refused first filter does not leave ours behind.
    h.feed(&reply_frame("+OK filter deleted."));
    h.feed(&reply_frame("+OK filter deleted."));
    h.send(
        Command::Filter {
            header: "X".into(),
            value: "".into(),
        },
        3,
    );
    h.feed(&reply_frame("+OK filter added."));
    h.feed(&reply_frame("+OK filter added."));
    h.feed(&reply_frame("-ERR invalid syntax"));
    let lines = h.sent_lines();
    assert_eq!(
        &lines[3..],
        [
            "filter delete Event-Name HEARTBEAT",
            "filter delete Event-Name BACKGROUND_JOB",
        ]
    );
    assert!(h.client.subscription().filters().is_empty());
}

#[test]
fn noevents_keeps_liveness_and_user_subscribed_heartbeats_pass() {
    let config = ClientConfig {
        subscription: Subscription::default().with_events(["HEARTBEAT"]),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::ready(config);
    let heartbeat = frames("esl-event-plain-heartbeat.txt").pop().unwrap();
    h.feed(&heartbeat);
    assert!(matches!(&h.drain()[..], [Output::Event(e)] if e.event_name() == Some("HEARTBEAT")));
    h.send(Command::NoEvents, 1);
    assert_eq!(
        h.sent_lines(),
        ["noevents", "event plain HEARTBEAT BACKGROUND_JOB"]
    );
    h.feed(&reply_frame("+OK no longer listening for events"));
    h.feed(&reply_frame("+OK event listener enabled plain"));
    assert_eq!(h.drain().len(), 1);
    h.feed(&heartbeat);
    h.drain_keep();
}

#[test]
fn undecodable_event_bodies_are_reported_and_skipped() {
    let mut h = Harness::ready(ClientConfig::new("ClueCon"));
    h.api("status", 1);
    h.feed(b"Content-Length: 2\nContent-Type: text/event-json\n\n{x");
    h.feed(&api_frame("UP"));
    let outs = h.drain();
    assert!(
        matches!(&outs[..], [Output::EventError(_), Output::Reply { .. }]),
        "{outs:?}"
    );
}

#[test]
fn json_events_from_capture() {
    let config = ClientConfig {
        subscription: Subscription::new(EventFormat::Json).with_events(["ALL"]),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::ready(config);
    let stream = frames("esl-events-json-conference-session.txt");
    let stream: Vec<Bytes> = stream
        .into_iter()
        .filter(|f| f.starts_with(b"Content-Length"))
        .collect();
    let mut events = 0;
    for frame in &stream {
        h.feed(frame);
        events += h
            .drain()
            .iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .count();
    }
    assert_eq!(events, 66);
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// A server script: for each of `n` api commands, some events, then the reply; fed in chunks.
#[derive(Clone, Debug)]
struct Script {
    events_before: Vec<u8>,
    chunks: Vec<u16>,
}

impl Arbitrary for Script {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 40 + 1;
        Script {
            events_before: (0..n).map(|_| u8::arbitrary(g) % 4).collect(),
            chunks: Vec::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let chunks = self.chunks.clone();
        Box::new(
            self.events_before
                .shrink()
                .filter(|e| !e.is_empty())
                .map(move |events_before| Script {
                    events_before,
                    chunks: chunks.clone(),
                }),
        )
    }
}

fn feed_chunked(h: &mut Harness, bytes: &[u8], chunks: &[u16]) {
    let mut rest = bytes;
    for size in chunks.iter().map(|c| usize::from(*c % 700) + 1) {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        h.feed(now);
        rest = later;
    }
    h.feed(rest);
}

/// Every request gets its own reply, in order, however events interleave and bytes split.
#[test]
fn fifo_replies_whatever_the_interleaving() {
    fn prop(script: Script) -> bool {
        let config = ClientConfig {
            subscription: Subscription::default().with_events(["CHANNEL_CREATE"]),
            ..ClientConfig::new("ClueCon")
        };
        let mut h = Harness::ready(config);
        let mut server = Vec::new();
        let mut expected_events = 0;
        for (i, events) in script.events_before.iter().enumerate() {
            h.api(&format!("echo {i}"), i as u64);
            for e in 0..*events {
                let name = if e % 2 == 0 {
                    "CHANNEL_CREATE"
                } else {
                    "HEARTBEAT"
                };
                expected_events += usize::from(e % 2 == 0);
                server.extend_from_slice(&event_frame(&[("Event-Name", name)], None));
            }
            server.extend_from_slice(&api_frame(&i.to_string()));
        }
        feed_chunked(&mut h, &server, &script.chunks);
        let outs = h.drain();
        let replies: Vec<_> = outs.iter().filter_map(api_body).collect();
        let events = outs
            .iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .count();
        let in_order = replies
            .iter()
            .enumerate()
            .all(|(i, (token, body))| *token == i as u64 && *body == i.to_string());
        replies.len() == script.events_before.len() && in_order && events == expected_events
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Script) -> bool);
}

/// Requests sent 1 ms apart, a timeout somewhere in between: the expired ones get Timeout and
/// nothing else, the others get exactly their own reply.
#[test]
fn timeouts_never_shift_replies() {
    fn prop(n: u8, wait_ms: u16, chunks: Vec<u16>) -> TestResult {
        let n = u64::from(n % 50) + 1;
        let config = ClientConfig {
            request_timeout: Duration::from_millis(100),
            ..ClientConfig::new("ClueCon")
        };
        let mut h = Harness::ready(config);
        let start = h.now;
        for i in 0..n {
            h.now = start + Duration::from_millis(i);
            h.api(&format!("echo {i}"), i);
        }
        h.advance(Duration::from_millis(u64::from(wait_ms % 250)));
        let waited = h.now - start;
        let mut outs = h.drain();
        let mut server = Vec::new();
        for i in 0..n {
            server.extend_from_slice(&api_frame(&i.to_string()));
        }
        feed_chunked(&mut h, &server, &chunks);
        outs.extend(h.drain());
        for i in 0..n {
            let timed_out = Duration::from_millis(i + 100) <= waited;
            let mine: Vec<&Output> = outs
                .iter()
                .filter(|o| matches!(o, Output::Reply { token, .. } if token.0 == i))
                .collect();
            let ok = match (timed_out, &mine[..]) {
                (
                    true,
                    [
                        Output::Reply {
                            result: Err(ReplyError::Timeout),
                            ..
                        },
                    ],
                ) => true,
                (false, [reply]) => api_body(reply) == Some((i, i.to_string())),
                _ => false,
            };
            if !ok {
                return TestResult::error(format!(
                    "request {i} (timed out: {timed_out}): {mine:?}"
                ));
            }
        }
        TestResult::from_bool(h.client.pending_replies() == 0)
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(u8, u16, Vec<u16>) -> TestResult);
}

#[test]
fn refused_replay_commands_are_reported_with_ready() {
    let config = ClientConfig {
        subscription: Subscription::default().with_filter("X", "y"),
        ..ClientConfig::new("ClueCon")
    };
    let mut h = Harness::new(config);
    h.connect();
    h.feed(AUTH_REQUEST);
    h.feed(&reply_frame("+OK accepted"));
    for text in ["+OK event listener enabled plain", "+OK", "+OK"] {
        h.feed(&reply_frame(text));
    }
    assert!(!h.client.is_ready());
    h.feed(&reply_frame("-ERR invalid syntax"));
    let outs = h.drain();
    match &outs[..] {
        [Output::Authenticated, Output::Ready { rejected }] => assert_eq!(
            rejected,
            &[("filter X y".to_owned(), "-ERR invalid syntax".to_owned())]
        ),
        other => panic!("{other:?}"),
    }
    assert!(h.client.is_ready());
}
