//! Conformance: fsim replays the stories the captures of a real FreeSWITCH recorded and must
//! produce the same bytes — exactly where nothing legitimately varies, and header for header
//! (same names, same order, same values) after the normalisation listed in
//! `esl_support::NORMALISED_HEADERS` / `normalise_body` otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod esl_support;

use std::time::Duration;

use esl::{Event, Frame};
use esl_support::*;
use fsim::{SimNode, SipUa};

// ---------------------------------------------------------------------------------------------
// Connection handling: byte for byte.

/// Sends the `.sent` bytes of a capture command by command, and returns everything received
/// (until EOF or a quiet period).
async fn replay(node: &SimNode, sent: &[u8]) -> Vec<u8> {
    let mut c = Client::connect(node.esl_addr()).await;
    c.frame().await; // auth/request
    let text = String::from_utf8(sent.to_vec()).unwrap();
    for block in text.split_inclusive("\n\n") {
        c.send(block.as_bytes()).await;
        // One reply per command.
        if c.try_frame(WAIT).await.is_none() {
            break;
        }
    }
    // Whatever follows (disconnect notice), until the server closes or goes quiet.
    c.closed_within(Duration::from_millis(300)).await;
    c.raw
}

#[tokio::test]
async fn connection_handling_is_byte_exact() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    for name in [
        "esl-auth-ok",
        "esl-auth-bad",
        "esl-command-before-auth",
        "esl-exit",
        "esl-filter-nixevent-noevents-stream",
    ] {
        let sent = read(&format!("{name}.sent.txt"));
        let got = replay(&node, &sent).await;
        let want = read(&format!("{name}.txt"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name}"
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn auth_bad_and_exit_close_the_connection() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    for cmd in ["auth WrongPassword", "exit"] {
        let mut c = Client::connect(node.esl_addr()).await;
        c.frame().await;
        c.send(format!("{cmd}\n\n").as_bytes()).await;
        assert!(c.closed_within(WAIT).await, "{cmd}: closed");
    }
    // A command before auth leaves the connection open, and auth still works.
    let mut c = Client::connect(node.esl_addr()).await;
    c.frame().await;
    let r = c.command("api status").await;
    assert_eq!(r.headers.get("Reply-Text"), Some("-ERR command not found"));
    assert!(!c.closed_within(Duration::from_millis(100)).await);
    let r = c.command("auth ClueCon").await;
    assert_eq!(r.headers.get("Reply-Text"), Some("+OK accepted"));
    node.shutdown().await;
}

/// The single-reply captures: the command the README says produced them, after `auth` (and
/// the setup some of them need).
#[tokio::test]
async fn single_replies_are_byte_exact() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "esl-event-plain-subscribe.txt",
            &[],
            "event plain CHANNEL_CREATE CHANNEL_HANGUP HEARTBEAT CUSTOM conference::maintenance",
        ),
        (
            "esl-filter-add.txt",
            &[],
            "filter Event-Name CHANNEL_CREATE",
        ),
        (
            "esl-filter-add-second.txt",
            &[],
            "filter Event-Subclass conference::maintenance",
        ),
        (
            "esl-filter-delete.txt",
            &["filter Event-Name CHANNEL_CREATE"],
            "filter delete Event-Name CHANNEL_CREATE",
        ),
        ("esl-filter-delete-all.txt", &[], "filter delete all"),
        (
            "esl-nixevent.txt",
            &["event plain HEARTBEAT"],
            "nixevent HEARTBEAT",
        ),
        (
            "esl-nixevent-custom.txt",
            &["event plain CUSTOM conference::maintenance"],
            "nixevent CUSTOM conference::maintenance",
        ),
        (
            "esl-nixevent-none-subscribed.txt",
            &["event plain ALL", "noevents"],
            "nixevent CHANNEL_CREATE",
        ),
        ("esl-noevents.txt", &["event plain ALL"], "noevents"),
        (
            "esl-event-bad-format.txt",
            &[],
            "event bogus CHANNEL_CREATE",
        ),
        ("esl-unknown-esl-command.txt", &[], "frobnicate"),
        ("esl-api-version.txt", &[], "api version"),
        (
            "esl-api-show-calls-count-idle.txt",
            &[],
            "api show calls count",
        ),
        (
            "esl-api-show-channels-as-json-idle.txt",
            &[],
            "api show channels as json",
        ),
        (
            "esl-api-conference-list-no-conferences.txt",
            &[],
            "api conference list",
        ),
        (
            "esl-api-conference-9999-list-nonexistent.txt",
            &[],
            "api conference 9999 list",
        ),
        ("esl-api-nosuchcmd.txt", &[], "api nosuchcmd"),
        ("esl-api-eval-no-args.txt", &[], "api eval"),
        ("esl-api-conference-no-args.txt", &[], "api conference"),
    ];
    for (file, setup, cmd) in cases {
        let mut c = Client::authed(node.esl_addr()).await;
        for s in *setup {
            c.command(s).await;
        }
        let before = c.raw.len();
        c.command(cmd).await;
        let got = &c.raw[before..];
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(&read(file)),
            "{file}"
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn conference_usage_fixture_is_the_captured_body() {
    let captured = frames("esl-api-conference-no-args.txt");
    let fixture = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/conference-usage.txt"),
    )
    .unwrap();
    assert_eq!(&body(&captured[0])[..], &fixture[..]);
}

// ---------------------------------------------------------------------------------------------
// HEARTBEAT in the three formats.

#[tokio::test]
async fn heartbeat_in_plain_json_and_xml() {
    let mut cfg = capture_config(None);
    cfg.heartbeat_interval = Duration::from_millis(300);
    let node = SimNode::start(cfg).await.unwrap();
    for format in ["plain", "json", "xml"] {
        let name = format!("esl-event-{format}-heartbeat");
        let sent = read(&format!("{name}.sent.txt"));
        let mut c = Client::connect(node.esl_addr()).await;
        c.frame().await;
        let text = String::from_utf8(sent).unwrap();
        for block in text.split_inclusive("\n\n") {
            c.send(block.as_bytes()).await;
            c.frame().await;
        }
        let heartbeat = c.frame().await;
        let expected = frames(&format!("{name}.txt"));
        // Everything before the event is byte-exact.
        let replies: Vec<u8> = read(&format!("{name}.txt"));
        let prefix_len = replies.len() - frame_len(expected.last().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&c.raw[..prefix_len]),
            String::from_utf8_lossy(&replies[..prefix_len]),
            "{name}"
        );
        assert_eq!(
            heartbeat.content_type(),
            expected.last().unwrap().content_type()
        );
        let got = event_of(&heartbeat).unwrap();
        let want = event_of(expected.last().unwrap()).unwrap();
        let diffs = diff_events(&got, &want);
        assert!(diffs.is_empty(), "{name}: {diffs:#?}");
        // Each HEARTBEAT is followed by its RE_SCHEDULE (not subscribed here).
    }
    node.shutdown().await;
}

fn frame_len(f: &Frame) -> usize {
    let mut n = 1;
    for (name, value) in f.headers.iter() {
        n += name.len() + 2 + value.len() + 1;
    }
    n + f.body_bytes().len()
}

#[tokio::test]
async fn heartbeat_is_followed_by_re_schedule_and_carries_the_load() {
    let url = directory_server().await;
    let mut cfg = capture_config(Some(url));
    cfg.heartbeat_interval = Duration::from_millis(400);
    let node = SimNode::start(cfg).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.command("event plain HEARTBEAT RE_SCHEDULE").await;
    node.call("1001", "secret1001", "3000", "default")
        .await
        .unwrap();
    node.call("1002", "secret1002", "3000", "default")
        .await
        .unwrap();
    // The first HEARTBEAT after both calls (an earlier one may have been on its way).
    let (a, b) = loop {
        let a = event_of(&c.frame().await).unwrap();
        let b = event_of(&c.frame().await).unwrap();
        assert_eq!(a.event_name(), Some("HEARTBEAT"));
        if a.get("Session-Since-Startup") == Some("2") {
            break (a, b);
        }
    };
    assert_eq!(a.get("Session-Count"), Some("2"));
    assert_eq!(a.get("Session-Since-Startup"), Some("2"));
    assert_eq!(a.get("Max-Sessions"), Some("1000"));
    let idle: f64 = a.get("Idle-CPU").unwrap().parse().unwrap();
    assert!((idle - 98.7).abs() < 1e-9, "{idle}");
    assert_eq!(b.event_name(), Some("RE_SCHEDULE"));
    assert_eq!(b.get("Task-Desc"), Some("heartbeat"));
    assert_eq!(b.get("Task-ID"), Some("1"));
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The conference story of the captures.

/// The user agent of a captured SIP call, read from its CHANNEL_CREATE / CHANNEL_HANGUP.
fn captured_ua(user: &str) -> SipUa {
    let all = events("esl-events-plain-all-conference-session.txt");
    let of_user = |name: &str| {
        all.iter()
            .find(|e| e.event_name() == Some(name) && e.get("Caller-Username") == Some(user))
            .unwrap()
    };
    let create = of_user("CHANNEL_CREATE");
    let hangup = of_user("CHANNEL_HANGUP");
    let v = |e: &Event, n: &str| e.get(&format!("variable_{n}")).unwrap().to_owned();
    let branch = |via: String| via.split("branch=").nth(1).unwrap().to_owned();
    let sdp = v(create, "switch_r_sdp");
    let rtp_port = sdp
        .split("m=audio ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    SipUa {
        transport: v(create, "sip_via_protocol"),
        ip: v(create, "sip_network_ip"),
        port: v(create, "sip_network_port").parse().unwrap(),
        user_agent: v(create, "sip_user_agent"),
        display_name: Some(v(create, "sip_from_display")),
        call_id: Some(v(create, "sip_call_id")),
        from_tag: Some(v(create, "sip_from_tag")),
        branches: Some((
            branch(v(create, "sip_full_via")),
            branch(v(hangup, "sip_full_via")),
        )),
        rtp_port,
        sdp: Some(sdp),
    }
}

/// The user agent of a captured REGISTER, from its `sofia::register` event.
fn captured_register_ua(user: &str) -> SipUa {
    let all = events("esl-events-plain-all-conference-session.txt");
    let reg = all
        .iter()
        .find(|e| e.subclass() == Some("sofia::register") && e.get("from-user") == Some(user))
        .unwrap();
    SipUa {
        port: reg.get("network-port").unwrap().parse().unwrap(),
        user_agent: reg.get("user-agent").unwrap().to_owned(),
        call_id: Some(reg.get("call-id").unwrap().to_owned()),
        ..SipUa::default()
    }
}

/// What the story produced on each connection.
struct Story {
    /// `event plain ALL`.
    all: Vec<Event>,
    /// `event json CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE HEARTBEAT CUSTOM
    /// conference::maintenance`.
    json: Vec<Event>,
    /// The api connection: every byte.
    api_stream: Vec<u8>,
    /// The three bgapi connections (subscribed plain, subscribed json, unsubscribed).
    bgapi: Vec<Vec<u8>>,
}

/// Replays the capture session (capture-timeline.txt): the idle api queries, two REGISTERs,
/// 1001 and 1002 calling 3000 and talking, the api queries and mute/unmute, three bgapi, a
/// loopback originate adding members 3 and 4, `kick 4`, then both callers hanging up. The
/// floor changes FreeSWITCH made from measured energy are replayed with `take_floor`.
async fn story() -> Story {
    let node = capture_node().await;
    let addr = node.esl_addr();
    // The captured node still had a registration of 1001 from an earlier run when the session
    // began (esl-api-sofia-status-profile-internal-reg-empty.txt shows it).
    let stale = SipUa {
        call_id: Some("1-15318@127.0.0.1".into()),
        ..captured_register_ua("1001")
    };
    node.register_with("1001", "secret1001", &stale)
        .await
        .unwrap();
    let mut all = Client::authed(addr).await;
    all.command("event plain ALL").await;
    let all = all.collect();
    let mut json = Client::authed(addr).await;
    json.command(
        "event json CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE HEARTBEAT CUSTOM conference::maintenance",
    )
    .await;
    let json = json.collect();

    let mut api = Client::connect(addr).await;
    api.frame().await;
    api.command("auth ClueCon").await;
    let mut q = async |cmd: &str| api.api(cmd).await;

    for cmd in [
        "version",
        "status",
        "show calls count",
        "show channels as json",
        "conference list",
        "sofia status profile internal reg",
        "sofia status",
    ] {
        q(cmd).await;
    }
    node.register_with("1001", "secret1001", &captured_register_ua("1001"))
        .await
        .unwrap();
    node.register_with("1002", "secret1002", &captured_register_ua("1002"))
        .await
        .unwrap();
    q("sofia status profile internal reg").await;
    q("show registrations").await;

    let c1 = node
        .call_with(
            "1001",
            "secret1001",
            "3000",
            "default",
            &captured_ua("1001"),
        )
        .await
        .unwrap();
    assert_eq!(c1.member_id, 1);
    node.start_talking(&c1.uuid).await.unwrap();
    q("conference list").await;
    let c2 = node
        .call_with(
            "1002",
            "secret1002",
            "3000",
            "default",
            &captured_ua("1002"),
        )
        .await
        .unwrap();
    assert_eq!(c2.member_id, 2);
    node.start_talking(&c2.uuid).await.unwrap();
    node.take_floor(&c2.uuid).await.unwrap();
    node.stop_talking(&c1.uuid).await.unwrap();
    node.stop_talking(&c2.uuid).await.unwrap();
    node.start_talking(&c1.uuid).await.unwrap();
    node.start_talking(&c2.uuid).await.unwrap();
    for cmd in [
        "conference list",
        "conference 3000 json_list",
        "conference 3000 list",
        "conference 3000 count",
        "show calls count",
        "show channels count",
        "show channels as json",
        "show calls as json",
        "show channels",
        "conference 3000 mute 1",
        "conference 3000 list",
        "conference 3000 unmute 1",
        "conference 3000 mute 999",
    ] {
        q(cmd).await;
    }

    // bgapi on three connections, each job awaited on the ALL stream.
    let mut bgapi = Vec::new();
    for (sub, cmd) in [
        (Some("event plain BACKGROUND_JOB"), "bgapi conference list"),
        (
            Some("event json BACKGROUND_JOB"),
            "bgapi conference 3000 list",
        ),
        (None, "bgapi conference list"),
    ] {
        let mut c = Client::authed(addr).await;
        if let Some(sub) = sub {
            c.command(sub).await;
        }
        let reply = c.command(cmd).await;
        let job = reply.headers.get("Job-UUID").unwrap().to_owned();
        all.wait_for("BACKGROUND_JOB", |evs| {
            evs.iter().any(|e| e.job_uuid() == Some(job.as_str()))
        })
        .await;
        if sub.is_some() {
            c.frame().await;
        } else {
            assert!(c.try_frame(Duration::from_millis(100)).await.is_none());
        }
        bgapi.push(c.raw.clone());
    }

    node.stop_talking(&c2.uuid).await.unwrap();
    node.start_talking(&c1.uuid).await.unwrap();
    node.start_talking(&c2.uuid).await.unwrap();

    let out = q("originate loopback/3000/default &conference(3000)").await;
    let a_leg = out.trim().strip_prefix("+OK ").unwrap().to_owned();
    let snapshot = node.snapshot();
    let conf = &snapshot.conferences[0];
    let member = |id: u32| {
        conf.members
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .channel_uuid
            .clone()
    };
    assert_eq!(member(4), a_leg);
    let b_leg = member(3);
    node.start_talking(&a_leg).await.unwrap();
    node.start_talking(&b_leg).await.unwrap();
    node.take_floor(&a_leg).await.unwrap();
    node.take_floor(&b_leg).await.unwrap();
    node.take_floor(&c2.uuid).await.unwrap();
    for cmd in [
        "conference 3000 list",
        "conference 3000 json_list",
        "conference 3000 kick 4",
    ] {
        q(cmd).await;
    }
    node.stop_talking(&c1.uuid).await.unwrap();
    node.stop_talking(&c2.uuid).await.unwrap();
    node.start_talking(&c1.uuid).await.unwrap();
    for cmd in [
        "conference 3000 list",
        "conference 9999 list",
        "nosuchcmd",
        "conference",
    ] {
        q(cmd).await;
    }
    node.start_talking(&c2.uuid).await.unwrap();
    node.take_floor(&c2.uuid).await.unwrap();
    node.stop_talking(&c1.uuid).await.unwrap();
    node.stop_talking(&c2.uuid).await.unwrap();
    node.hangup(&c2.uuid).await.unwrap();
    node.hangup(&c1.uuid).await.unwrap();
    for cmd in [
        "conference 3000 list",
        "conference list",
        "show calls count",
    ] {
        q(cmd).await;
    }
    // Everything was queued before the last api reply; wait until both streams have it.
    all.wait_for("the last API event", |evs| {
        evs.iter()
            .rposition(|e| e.get("API-Command") == Some("show"))
            .zip(
                evs.iter()
                    .position(|e| e.get("Action") == Some("conference-destroy")),
            )
            .is_some_and(|(show, destroy)| show > destroy)
    })
    .await;
    json.wait_for("conference-destroy", |evs| {
        evs.iter()
            .any(|e| e.get("Action") == Some("conference-destroy"))
    })
    .await;
    all.settle(Duration::from_millis(50)).await;
    let api_stream = api.raw.clone();
    let (all, json) = (all.events(), json.events());
    node.shutdown().await;
    Story {
        all,
        json,
        api_stream,
        bgapi,
    }
}

/// Events fsim does not produce: HEARTBEAT / RE_SCHEDULE (timer-driven), the prompts'
/// `play-file` / `play-file-done` (no sound files, no media), and the loopback legs' own
/// channel events (their conference events are kept and compared).
fn comparable(e: &Event) -> bool {
    let name = e.event_name().unwrap_or("");
    if matches!(name, "HEARTBEAT" | "RE_SCHEDULE") {
        return false;
    }
    if e.get("Action").is_some_and(|a| a.starts_with("play-file")) {
        return false;
    }
    !(name != "CUSTOM"
        && e.get("Channel-Name")
            .is_some_and(|n| n.starts_with("loopback/")))
}

#[tokio::test]
async fn conference_story_matches_the_captures() {
    let story = story().await;

    // 1. The conference::maintenance frames (esl-events-plain-conference-maintenance-only.txt).
    let maintenance = |evs: Vec<Event>| -> Vec<Event> {
        evs.into_iter()
            .filter(|e| e.subclass() == Some("conference::maintenance") && comparable(e))
            .collect()
    };
    let got = maintenance(story.all.clone());
    let want = maintenance(events("esl-events-plain-conference-maintenance-only.txt"));
    assert_eq!(want.len(), 51 - 8, "capture minus play-file(-done)");
    assert_same_events("conference::maintenance", &got, &want);

    // 2. The whole `event plain ALL` stream.
    let got: Vec<Event> = story
        .all
        .iter()
        .filter(|e| comparable(e))
        .cloned()
        .collect();
    let want: Vec<Event> = events("esl-events-plain-all-conference-session.txt")
        .into_iter()
        .filter(comparable)
        .collect();
    assert_same_events("event plain ALL", &got, &want);

    // 3. The JSON stream.
    let got: Vec<Event> = story
        .json
        .iter()
        .filter(|e| comparable(e))
        .cloned()
        .collect();
    let want: Vec<Event> = events("esl-events-json-conference-session.txt")
        .into_iter()
        .filter(comparable)
        .collect();
    assert_same_events("event json", &got, &want);

    // 4. The api connection: every reply, bodies normalised (esl-api-session-stream.txt).
    let (got, _) = esl::frame::decode_all(&story.api_stream, esl::Limits::default()).unwrap();
    let want = frames("esl-api-session-stream.txt");
    assert_eq!(got.len(), want.len(), "api stream frame count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.headers.get("Content-Type"),
            w.headers.get("Content-Type"),
            "api frame {i}"
        );
        assert_eq!(
            g.headers.get("Reply-Text"),
            w.headers.get("Reply-Text"),
            "api frame {i}"
        );
        assert_eq!(
            normalise_body(&String::from_utf8_lossy(g.body_bytes())),
            normalise_body(&String::from_utf8_lossy(w.body_bytes())),
            "api frame {i}"
        );
    }

    // 5. The bgapi connections.
    for (raw, file) in story.bgapi.iter().zip([
        "esl-bgapi-conference-list.txt",
        "esl-bgapi-conference-list-json.txt",
        "esl-bgapi-conference-list-unsubscribed.txt",
    ]) {
        let (got, _) = esl::frame::decode_all(raw, esl::Limits::default()).unwrap();
        let want = frames(file);
        assert_eq!(got.len(), want.len(), "{file}");
        for (g, w) in got.iter().zip(&want) {
            match (event_of(g), event_of(w)) {
                (Some(ge), Some(we)) => {
                    let d = diff_events(&ge, &we);
                    assert!(d.is_empty(), "{file}: {d:#?}");
                }
                _ => {
                    let norm = |f: &Frame| {
                        f.headers
                            .iter()
                            .map(|(n, v)| (n.to_owned(), normalise_body(v)))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(norm(g), norm(w), "{file}");
                }
            }
        }
    }
}
