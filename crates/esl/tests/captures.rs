//! Every capture of a real FreeSWITCH decodes into the right frames, whatever way the bytes are
//! split, and re-serializing each event gives back the exact bytes.

use std::path::PathBuf;

use bytes::BytesMut;
use esl::frame::decode_all;
use esl::serialize;
use esl::{Action, Event, EventFormat, Frame, FrameDecoder, Limits, Message};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/freeswitch")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The captures FreeSWITCH sent over ESL (what we received), excluding what we sent.
fn esl_captures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("esl-") && n.ends_with(".txt") && !n.ends_with(".sent.txt"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 60,
        "expected the whole capture set, got {}",
        names.len()
    );
    names
}

fn messages(name: &str) -> Vec<Message> {
    let bytes = read(name);
    let (frames, rest) = decode_all(&bytes, Limits::default()).expect(name);
    assert_eq!(rest, 0, "{name}: trailing bytes");
    frames
        .into_iter()
        .map(|f| Message::try_from(f).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

fn feed(bytes: &[u8], chunks: &[usize]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in chunks.iter().chain(std::iter::once(&bytes.len())) {
        buf.extend_from_slice(&bytes[start..end]);
        start = end;
        while let Some(frame) = decoder.decode(&mut buf).expect("decode") {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty());
    frames
}

#[test]
fn every_capture_decodes_completely() {
    for name in esl_captures() {
        let msgs = messages(&name);
        assert!(!msgs.is_empty(), "{name}");
        for m in &msgs {
            assert!(
                !matches!(m, Message::Other(_)),
                "{name}: unexpected frame {m:?}"
            );
        }
    }
}

#[test]
fn every_split_point_gives_the_same_frames() {
    for name in esl_captures() {
        let bytes = read(&name);
        let whole = feed(&bytes, &[]);
        if bytes.len() <= 24 * 1024 {
            for split in 0..=bytes.len() {
                assert_eq!(feed(&bytes, &[split]), whole, "{name} split at {split}");
            }
        } else {
            // Large streams (quadratic if split whole): the decoder keeps no state from one
            // frame to the next (after yielding a frame it is back to its initial state), so
            // splitting the stream at offset k only affects the frame that contains k. Every
            // offset of every frame is therefore tried on that frame alone, which is the same
            // as every split point of the stream, in linear-times-frame-size time.
            let mut start = 0;
            for frame in &whole {
                let mut b = BytesMut::new();
                serialize_frame_raw(frame, &mut b);
                let end = start + b.len();
                let bytes_of_frame = &bytes[start..end];
                assert_eq!(
                    bytes_of_frame,
                    &b[..],
                    "{name}: frame at {start} re-serializes"
                );
                for split in 0..=bytes_of_frame.len() {
                    let got = feed(bytes_of_frame, &[split]);
                    assert_eq!(got.len(), 1, "{name} split at {}", start + split);
                    assert_eq!(&got[0], frame, "{name} split at {}", start + split);
                }
                start = end;
            }
            assert_eq!(start, bytes.len(), "{name}: frames cover the stream");
            // And the whole stream byte by byte (every prefix presented once).
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(feed(&bytes, &every_byte), whole, "{name} byte by byte");
        }
    }
}

/// Re-encodes a frame's outer headers and body as FreeSWITCH did (header order kept).
fn serialize_frame_raw(frame: &Frame, out: &mut BytesMut) {
    for (name, value) in frame.headers.iter() {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.extend_from_slice(b"\n");
    out.extend_from_slice(frame.body_bytes());
}

#[test]
fn frames_reserialize_to_the_captured_bytes() {
    for name in esl_captures() {
        let bytes = read(&name);
        let (frames, _) = decode_all(&bytes, Limits::default()).expect("decode");
        let mut out = BytesMut::new();
        for frame in &frames {
            serialize_frame_raw(frame, &mut out);
        }
        assert_eq!(&out[..], &bytes[..], "{name}");
    }
}

#[test]
fn events_reserialize_byte_for_byte() {
    let mut checked = 0;
    for name in esl_captures() {
        let bytes = read(&name);
        let (frames, _) = decode_all(&bytes, Limits::default()).expect("decode");
        for frame in frames {
            let Some(format) = frame
                .content_type()
                .and_then(EventFormat::from_content_type)
            else {
                continue;
            };
            let body = frame.body.clone().expect("event body");
            let event = Event::parse(format, body.clone()).expect("event");
            let mut out = Vec::new();
            serialize::event_body(&mut out, format, &event);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&body),
                "{name}: event {:?}",
                event.event_name()
            );
            let mut framed = BytesMut::new();
            serialize::event_frame(&mut framed, format, &event);
            let mut original = BytesMut::new();
            serialize_frame_raw(&frame, &mut original);
            assert_eq!(framed, original, "{name}");
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} events checked");
}

#[test]
fn connection_handling_captures() {
    use Message::*;
    let m = messages("esl-auth-ok.txt");
    assert!(matches!(&m[..], [AuthRequest, CommandReply(r)] if r.text() == "+OK accepted"));

    let m = messages("esl-auth-bad.txt");
    match &m[..] {
        [AuthRequest, CommandReply(r), Disconnect(d)] => {
            assert_eq!(r.text(), "-ERR invalid");
            assert!(!r.is_ok());
            assert_eq!(&d.text[..], serialize::GOODBYE.as_bytes());
            assert!(!d.linger);
        }
        other => panic!("{other:?}"),
    }

    let m = messages("esl-exit.txt");
    assert!(
        matches!(&m[..], [AuthRequest, CommandReply(_), CommandReply(r), Disconnect(_)] if r.text() == "+OK bye")
    );

    let m = messages("esl-command-before-auth.txt");
    assert!(
        matches!(&m[..], [AuthRequest, CommandReply(r)] if r.text() == "-ERR command not found")
    );
}

#[test]
fn api_replies() {
    let body = |name: &str| match messages(name).pop() {
        Some(Message::ApiResponse(b)) => String::from_utf8(b.to_vec()).expect("utf8"),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(body("esl-api-conference-3000-count.txt"), "2");
    assert_eq!(body("esl-api-show-calls-count.txt"), "\n2 total.\n");
    assert_eq!(body("esl-api-conference-3000-mute.txt"), "+OK mute 1\n");
    assert_eq!(
        body("esl-api-conference-3000-mute-nonexistent-member.txt"),
        "-ERR Non-Existant ID 999\n"
    );
    assert_eq!(
        body("esl-api-nosuchcmd.txt"),
        "-ERR nosuchcmd Command not found!\n"
    );
    assert!(esl::api_result(body("esl-api-eval-no-args.txt").as_bytes()).is_err());
    assert!(esl::api_result(body("esl-api-version.txt").as_bytes()).is_ok());
}

#[test]
fn bgapi_result_is_a_background_job_event() {
    let m = messages("esl-bgapi-conference-list.txt");
    let Some(Message::CommandReply(reply)) = m.get(3) else {
        panic!("{m:?}")
    };
    let job = reply.job_uuid().expect("Job-UUID header");
    assert_eq!(reply.text(), format!("+OK Job-UUID: {job}"));
    let Some(Message::Event(event)) = m.get(4) else {
        panic!("{m:?}")
    };
    assert_eq!(event.event_name(), Some("BACKGROUND_JOB"));
    assert_eq!(event.job_uuid(), Some(job));
    assert_eq!(event.get("Job-Command-Arg"), Some("list"));
    let text = event.body_text().expect("body");
    assert!(text.starts_with("+OK Conference 3000 (2 members"), "{text}");
    assert_eq!(event.body().map(|b| b.len()), Some(340));

    let m = messages("esl-bgapi-conference-list-json.txt");
    let Some(Message::Event(event)) = m.last() else {
        panic!()
    };
    assert_eq!(event.event_name(), Some("BACKGROUND_JOB"));
    assert_eq!(event.body().map(|b| b.len()), Some(218));

    // Without a BACKGROUND_JOB subscription the result never comes.
    let m = messages("esl-bgapi-conference-list-unsubscribed.txt");
    assert!(!m.iter().any(|m| matches!(m, Message::Event(_))));
}

#[test]
fn heartbeat_is_the_same_in_all_three_formats() {
    let last_event = |name: &str| match messages(name).pop() {
        Some(Message::Event(e)) => e,
        other => panic!("{other:?}"),
    };
    let plain = last_event("esl-event-plain-heartbeat.txt");
    let json = last_event("esl-event-json-heartbeat.txt");
    let xml = last_event("esl-event-xml-heartbeat.txt");
    assert_eq!(plain, json);
    assert_eq!(plain, xml);
    assert_eq!(plain.event_name(), Some("HEARTBEAT"));
    assert_eq!(plain.get("FreeSWITCH-IPv6"), Some("fd00::2"));
    assert_eq!(plain.get("Idle-CPU"), Some("98.700000"));
    assert_eq!(plain.get("Event-Info"), Some("System Ready"));
}

#[test]
fn conference_stream_counts() {
    let events: Vec<Event> = messages("esl-events-plain-all-conference-session.txt")
        .into_iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 220);
    let conf: Vec<_> = events.iter().filter_map(Event::conference).collect();
    assert_eq!(conf.len(), 51);
    let count = |a: Action| conf.iter().filter(|c| c.action() == a).count();
    assert_eq!(count(Action::ConferenceCreate), 1);
    assert_eq!(count(Action::AddMember), 4);
    assert_eq!(count(Action::DelMember), 4);
    assert_eq!(count(Action::StartTalking), 10);
    assert_eq!(count(Action::StopTalking), 7);
    assert_eq!(count(Action::FloorChange), 13);
    assert_eq!(count(Action::MuteMember), 1);
    assert_eq!(count(Action::UnmuteMember), 1);
    assert_eq!(count(Action::KickMember), 1);
    assert_eq!(count(Action::ConferenceDestroy), 1);

    let first_add = conf
        .iter()
        .find(|c| c.action() == Action::AddMember)
        .expect("add");
    assert_eq!(first_add.name(), "3000");
    assert_eq!(first_add.member_id(), Some(1));
    assert_eq!(first_add.size(), Some(1));
    assert_eq!(first_add.caller_username(), Some("1001"));
    assert_eq!(first_add.speak(), Some(true));
    assert_eq!(first_add.talking(), Some(false));
    assert_eq!(
        first_add.event().get("Channel-Name"),
        Some("sofia/internal/1001@127.0.0.1")
    );

    let mute = conf
        .iter()
        .find(|c| c.action() == Action::MuteMember)
        .expect("mute");
    assert_eq!(mute.speak(), Some(false));

    // floor-change with a new holder repeats the conference block; with none, no member block.
    let floor = conf
        .iter()
        .find(|c| c.action() == Action::FloorChange && c.new_floor_id().is_some())
        .expect("floor");
    assert_eq!(
        floor.event().headers().get_all("Conference-Name").count(),
        2
    );
    assert_eq!(floor.floor(), Some(true));

    let json: Vec<Event> = messages("esl-events-json-conference-session.txt")
        .into_iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(json.len(), 66);
    let dp = json
        .iter()
        .find_map(|e| e.get_array("variable_DP_MATCH"))
        .expect("array variable");
    assert_eq!(dp, vec!["3000", "3000"]);

    let only: Vec<Message> = messages("esl-events-plain-conference-maintenance-only.txt");
    assert_eq!(only.len(), 51);
}
