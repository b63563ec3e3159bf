//! Node behaviour beyond the captures: many nodes in one process, the fault modes, slow
//! consumers, timeouts, and the conference api commands the captures do not show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod esl_support;

use std::time::Duration;

use esl::Event;
use esl_support::*;
use fsim::directory::AuthFailure;
use fsim::{CallError, NodeConfig, SimNode};

fn reply_text(f: &esl::Frame) -> &str {
    f.headers.get("Reply-Text").unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_100_nodes() {
    let mut nodes = Vec::new();
    for i in 0..100 {
        let mut cfg = NodeConfig::new(format!("fs{i:03}"));
        cfg.heartbeat_interval = Duration::from_millis(500);
        nodes.push(SimNode::start(cfg).await.unwrap());
    }
    let mut ports: Vec<u16> = nodes.iter().map(|n| n.esl_addr().port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 100, "each node has its own port");
    let mut uuids: Vec<String> = nodes.iter().map(SimNode::core_uuid).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 100, "each node has its own Core-UUID");

    let mut clients = Vec::new();
    for node in &nodes {
        let mut c = Client::authed(node.esl_addr()).await;
        c.command("event plain HEARTBEAT").await;
        clients.push(c);
    }
    for (node, c) in nodes.iter().zip(clients.iter_mut()) {
        // Every node beats and answers on its own.
        let hb = event_of(&c.frame().await).unwrap();
        assert_eq!(hb.event_name(), Some("HEARTBEAT"));
        assert_eq!(hb.get("FreeSWITCH-Hostname"), Some(node.name()));
        assert_eq!(hb.core_uuid(), Some(node.core_uuid().as_str()));
        let status = c.api("status").await;
        assert!(status.starts_with("UP 0 years, 0 days"), "{status}");
        // And runs conferences of its own.
        let out = c
            .api("originate loopback/4000/default &conference(4000)")
            .await;
        assert!(out.starts_with("+OK "), "{out}");
    }
    for node in &nodes {
        let snap = node.snapshot();
        assert_eq!(snap.conferences.len(), 1);
        assert_eq!(snap.conferences[0].members.len(), 2);
        assert_eq!(
            snap.conferences[0].members[0].id, 1,
            "member ids are per node"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn shutdown_sends_shutdown_event_then_notice() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.command("event plain SHUTDOWN").await;
    node.shutdown().await;
    let e = event_of(&c.frame().await).unwrap();
    assert_eq!(e.event_name(), Some("SHUTDOWN"));
    assert_eq!(e.get("Event-Info"), Some("System Shutting Down"));
    let notice = c.frame().await;
    assert_eq!(notice.content_type(), Some("text/disconnect-notice"));
    assert_eq!(notice.body_bytes(), b"The system is being shut down.\n");
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn drop_esl_connections_closes_abruptly_and_accepts_new_ones() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut a = Client::authed(node.esl_addr()).await;
    let mut b = Client::connect(node.esl_addr()).await;
    b.frame().await;
    node.drop_esl_connections();
    assert!(a.closed_within(WAIT).await);
    assert!(b.closed_within(WAIT).await);
    assert!(
        !String::from_utf8_lossy(&a.raw).contains("disconnect-notice"),
        "no notice on an abrupt close"
    );
    let mut c = Client::authed(node.esl_addr()).await;
    assert_eq!(
        c.api("version").await,
        "FreeSWITCH Version 1.11.3-dev~64bit ( 64bit)\n"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn freeze_accepts_but_answers_nothing() {
    let mut cfg = capture_config(None);
    cfg.heartbeat_interval = Duration::from_millis(100);
    let node = SimNode::start(cfg).await.unwrap();
    let mut a = Client::authed(node.esl_addr()).await;
    a.command("event plain HEARTBEAT").await;
    a.frame().await;
    node.freeze();
    assert!(node.snapshot().frozen);
    // Drain what was already on its way, then silence.
    while a.try_frame(Duration::from_millis(150)).await.is_some() {}
    a.send(b"api version\n\n").await;
    assert!(a.try_frame(Duration::from_millis(400)).await.is_none());
    // New connections are accepted but get no auth/request.
    let mut b = Client::connect(node.esl_addr()).await;
    assert!(b.try_frame(Duration::from_millis(200)).await.is_none());
    node.unfreeze();
    // The pending api answers, heartbeats resume, the new connection is greeted.
    let mut got_api = false;
    let mut got_heartbeat = false;
    while !(got_api && got_heartbeat) {
        let f = a.frame().await;
        match f.content_type() {
            Some("api/response") => got_api = true,
            Some("text/event-plain") => got_heartbeat = true,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b.frame().await.content_type(), Some("auth/request"));
    node.shutdown().await;
}

#[tokio::test]
async fn restart_resets_core_uuid_counters_and_conferences() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let before = node.core_uuid();
    let mut c = Client::authed(node.esl_addr()).await;
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    assert_eq!(node.snapshot().conferences[0].members.len(), 4);
    node.restart().await;
    assert!(c.closed_within(WAIT).await, "connections dropped");
    let snap = node.snapshot();
    assert_ne!(snap.core_uuid, before);
    assert!(snap.conferences.is_empty() && snap.channels.is_empty());
    assert!(snap.uptime < Duration::from_secs(1));
    let mut c = Client::authed(node.esl_addr()).await;
    c.command("event plain CUSTOM conference::maintenance")
        .await;
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    let first_add = loop {
        let e = event_of(&c.frame().await).unwrap();
        if e.get("Action") == Some("add-member") {
            break e;
        }
    };
    assert_eq!(
        first_add.get("Member-ID"),
        Some("1"),
        "member ids restart at 1"
    );
    assert_eq!(first_add.core_uuid(), Some(snap.core_uuid.as_str()));
    node.shutdown().await;
}

#[tokio::test]
async fn first_command_timeout_sends_goodbye() {
    let mut cfg = capture_config(None);
    cfg.auth_timeout = Duration::from_millis(200);
    let node = SimNode::start(cfg).await.unwrap();
    let mut c = Client::connect(node.esl_addr()).await;
    c.frame().await;
    let notice = c.frame().await;
    assert_eq!(notice.content_type(), Some("text/disconnect-notice"));
    assert_eq!(
        notice.body_bytes(),
        b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    );
    assert!(c.closed_within(WAIT).await);
    // After a first (unauthenticated) command there is no timeout any more.
    let mut c = Client::connect(node.esl_addr()).await;
    c.frame().await;
    c.command("api status").await;
    assert!(!c.closed_within(Duration::from_millis(400)).await);
    node.shutdown().await;
}

#[tokio::test]
async fn slow_listener_is_killed() {
    let mut cfg = capture_config(None);
    cfg.event_queue_len = 10;
    let node = SimNode::start(cfg).await.unwrap();
    let mut slow = Client::authed(node.esl_addr()).await;
    slow.command("event plain ALL").await;
    node.freeze(); // the listener stops reading its queue
    for _ in 0..40 {
        node.api("originate loopback/3000/default &conference(3000)");
    }
    node.unfreeze();
    let mut killed = false;
    while let Some(f) = slow.try_frame(WAIT).await {
        if f.content_type() == Some("text/disconnect-notice") {
            assert_eq!(f.body_bytes(), b"killed listener because of lost events\n");
            killed = true;
            break;
        }
    }
    assert!(killed);
    assert!(slow.closed_within(WAIT).await);
    node.shutdown().await;
}

#[tokio::test]
async fn api_blocks_events_and_bgapi_honours_job_uuid() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.command("event plain BACKGROUND_JOB CUSTOM conference::maintenance")
        .await;
    c.send(b"bgapi originate loopback/3000/default &conference(3000)\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n")
        .await;
    let reply = c.frame().await;
    assert_eq!(
        reply_text(&reply),
        "+OK Job-UUID: 11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(
        reply.headers.get("Job-UUID"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    let mut job = None;
    for _ in 0..10 {
        let e = event_of(&c.frame().await).unwrap();
        if e.event_name() == Some("BACKGROUND_JOB") {
            job = Some(e);
            break;
        }
    }
    let job = job.unwrap();
    assert_eq!(job.job_uuid(), Some("11111111-2222-3333-4444-555555555555"));
    assert_eq!(job.get("Job-Command"), Some("originate"));
    assert_eq!(
        job.get("Job-Command-Arg"),
        Some("loopback/3000/default &conference(3000)")
    );
    assert!(job.body_text().unwrap().starts_with("+OK "));
    // Replies come in command order; events only between them.
    c.send(b"api conference 3000 count\n\napi conference 3000 lock\n\n")
        .await;
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let f = c.frame().await;
        if f.content_type() == Some("api/response") {
            bodies.push(String::from_utf8(f.body_bytes().to_vec()).unwrap());
        }
    }
    assert_eq!(bodies, ["2", "+OK 3000 locked\n"]);
    node.shutdown().await;
}

/// Conference commands the captures do not show: outputs from the protocol notes (§2.4).
#[tokio::test]
async fn conference_api_commands() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    let mut events = Client::authed(node.esl_addr()).await;
    events
        .command("event plain CUSTOM conference::maintenance")
        .await;
    let events = events.collect();
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    let n = |evs: &[Event], action: &str| {
        evs.iter()
            .filter(|e| e.get("Action") == Some(action))
            .count()
    };

    assert_eq!(
        c.api("conference 3000").await,
        "Conference command, not specified.\nTry 'help'\n"
    );
    assert_eq!(
        c.api("conference 3000 frob").await,
        "-ERR Conference command 'frob' not found.\n"
    );
    assert_eq!(c.api("conference count").await, "1");
    assert_eq!(c.api("conference 3000 list count").await, "2");
    assert_eq!(c.api("conference 3000 deaf 1").await, "+OK deaf 1\n");
    assert_eq!(c.api("conference 3000 undeaf 1").await, "+OK undeaf 1\n");
    assert_eq!(c.api("conference 3000 vmute last").await, "+OK vmute 2\n");
    assert_eq!(c.api("conference 3000 unvmute 2").await, "+OK unvmute 2\n");
    assert_eq!(
        c.api("conference 3000 mute all").await,
        "+OK mute 2\n+OK mute 1\n"
    );
    assert_eq!(
        c.api("conference 3000 mute 7").await,
        "-ERR Non-Existant ID 7\n"
    );
    assert!(
        c.api("conference 3000 mute")
            .await
            .starts_with("-ERR Usage: <conf name> mute ")
    );
    assert_eq!(c.api("conference 3000 lock").await, "+OK 3000 locked\n");
    assert!(
        c.api("conference list")
            .await
            .starts_with("+OK Conference 3000 (2 members rate: 8000 locked flags: locked|running|")
    );
    assert_eq!(c.api("conference 3000 unlock").await, "+OK 3000 unlocked\n");
    assert_eq!(
        c.api("conference 3000 record /tmp/a.wav").await,
        "+OK Record file /tmp/a.wav\n"
    );
    assert_eq!(
        c.api("conference 3000 record /tmp/a.wav").await,
        "-ERR file [/tmp/a.wav] is already being used for recording.\n"
    );
    assert!(c.api("conference list").await.contains("|recording|"));
    assert_eq!(
        c.api("conference 3000 norecord /tmp/b.wav").await,
        "-ERR non-existant recording '/tmp/b.wav'\n"
    );
    assert_eq!(
        c.api("conference 3000 norecord all").await,
        "+OK Stopped recording 1 file\n"
    );
    assert_eq!(c.api("conference 3000 vid-floor 1").await, "+OK floor 1\n");
    assert_eq!(
        c.api("conference 3000 vid-floor 2").await,
        "-ERR floor is held by 1\n"
    );
    assert_eq!(
        c.api("conference 3000 vid-floor 2 force").await,
        "+OK floor 2\n"
    );
    assert_eq!(
        c.api("conference 3000 vid-layout 2x2").await,
        "-ERR Conference is not in mixing mode\n"
    );
    let xml = c.api("conference 3000 xml_list").await;
    assert!(
        xml.contains("<conference name=\"3000\" member-count=\"2\""),
        "{xml}"
    );
    let compact = c.api("conference 3000 json_list compact").await;
    assert!(compact.starts_with("[{\"conference_name\":\"3000\",\"member_count\":2,"));
    // The member after the recording node got id 4: recordings draw member ids.
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    let list = c.api("conference 3000 list").await;
    assert!(list.starts_with("5;loopback/3000-a;"), "{list}");
    assert_eq!(c.api("conference 3000 hup 5").await, "+OK hup 5\n");
    events
        .wait_for("hup", |evs| n(evs, "del-member") == 2)
        .await;
    assert_eq!(
        c.api("conference 3000 kick all").await,
        "+OK kicked 2\n+OK kicked 1\n"
    );
    events
        .wait_for("destroy", |evs| n(evs, "conference-destroy") == 1)
        .await;
    let evs = events.events();
    for action in [
        "deaf-member",
        "undeaf-member",
        "vmute-member",
        "unvmute-member",
        "lock",
        "unlock",
        "start-recording",
        "stop-recording",
        "video-floor-change",
        "hup-member",
        "kick-member",
    ] {
        assert!(n(&evs, action) >= 1, "{action}");
    }
    // kick-member precedes del-member of the same member; destroy comes last.
    let kick = evs
        .iter()
        .position(|e| e.get("Action") == Some("kick-member"))
        .unwrap();
    let del = evs
        .iter()
        .rposition(|e| e.get("Action") == Some("del-member"))
        .unwrap();
    assert!(kick < del);
    assert_eq!(
        evs.last().unwrap().get("Action"),
        Some("conference-destroy")
    );
    assert_eq!(
        c.api("conference list").await,
        "+OK No active conferences.\n"
    );
    assert_eq!(c.api("conference json_list").await, "[]");
    node.shutdown().await;
}

#[tokio::test]
async fn video_mux_profile_allows_vid_layout() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.api("originate loopback/3000/default &conference(room@video-mcu-stereo)")
        .await;
    assert_eq!(
        c.api("conference room vid-layout 2x2").await,
        "+OK Change canvas 1 to layout [2x2]\n"
    );
    assert!(c
        .api("conference list")
        .await
        .contains("+OK Conference room (1 member rate: 48000 flags: running|answered|enforce_min|dynamic|exit_sound|enter_sound|video_muxing|json_status)"));
    node.shutdown().await;
}

#[tokio::test]
async fn calls_through_the_directory() {
    let node = capture_node().await;
    // Unknown user and wrong password are refused by the directory / digest check.
    assert!(matches!(
        node.call("1003", "x", "3000", "default").await,
        Err(CallError::Auth(AuthFailure::NotFound))
    ));
    assert!(matches!(
        node.call("1001", "wrong", "3000", "default").await,
        Err(CallError::Auth(AuthFailure::WrongPassword))
    ));
    assert!(node.register("1002", "secret1002").await.is_ok());
    assert_eq!(node.snapshot().registrations, ["1002@127.0.0.1"]);

    let mut c = Client::authed(node.esl_addr()).await;
    let mut watcher = Client::authed(node.esl_addr()).await;
    watcher
        .command("event plain CHANNEL_HANGUP_COMPLETE CUSTOM conference::maintenance")
        .await;
    let watcher = watcher.collect();
    let call = node
        .call("1001", "secret1001", "3000", "wideband")
        .await
        .unwrap();
    let snap = node.snapshot();
    let conf = &snap.conferences[0];
    assert_eq!(
        (conf.name.as_str(), conf.profile.as_str()),
        ("3000", "wideband")
    );
    // Without a display name: the directory's effective caller id.
    assert_eq!(conf.members[0].caller_id_name, "Extension 1001");
    assert_eq!(conf.members[0].caller_id_number, "1001");
    assert!(c.api("conference list").await.contains("rate: 16000"));
    assert_eq!(c.api("show calls count").await, "\n1 total.\n");
    assert_eq!(c.api(&format!("uuid_exists {}", call.uuid)).await, "true");

    // Talking moves the floor; stop keeps it.
    let second = node
        .call("1002", "secret1002", "3000", "wideband")
        .await
        .unwrap();
    node.start_talking(&second.uuid).await.unwrap();
    assert_eq!(node.snapshot().conferences[0].floor, Some(second.member_id));
    node.stop_talking(&second.uuid).await.unwrap();
    assert_eq!(node.snapshot().conferences[0].floor, Some(second.member_id));

    // uuid_kill: FreeSWITCH ends the call.
    assert_eq!(c.api(&format!("uuid_kill {}", second.uuid)).await, "+OK\n");
    assert_eq!(c.api("uuid_kill nope").await, "-ERR No such channel!\n");
    // The floor went to the only member left.
    assert_eq!(node.snapshot().conferences[0].floor, Some(call.member_id));
    node.hangup(&call.uuid).await.unwrap();
    assert!(matches!(
        node.hangup(&call.uuid).await,
        Err(CallError::NoSuchChannel(_))
    ));
    let complete = |evs: &[Event]| -> Vec<Event> {
        evs.iter()
            .filter(|e| e.event_name() == Some("CHANNEL_HANGUP_COMPLETE"))
            .cloned()
            .collect()
    };
    watcher
        .wait_for("two hangups", |evs| complete(evs).len() == 2)
        .await;
    let hangups = complete(&watcher.events());
    assert_eq!(hangups[0].get("variable_conference_name"), Some("3000"));
    assert_eq!(
        hangups[0].get("variable_conference_member_id"),
        Some(second.member_id.to_string().as_str())
    );
    assert_eq!(
        hangups[0].get("variable_sip_hangup_disposition"),
        Some("send_bye")
    );
    assert_eq!(
        hangups[1].get("variable_sip_hangup_disposition"),
        Some("recv_bye")
    );
    assert!(node.snapshot().conferences.is_empty());
    node.shutdown().await;
}

#[tokio::test]
async fn max_sessions_and_locked_conferences() {
    let url = directory_server().await;
    let mut cfg = capture_config(Some(url));
    cfg.max_sessions = 1;
    let node = SimNode::start(cfg).await.unwrap();
    let call = node
        .call("1001", "secret1001", "3000", "default")
        .await
        .unwrap();
    assert!(matches!(
        node.call("1002", "secret1002", "3000", "default").await,
        Err(CallError::MaxSessions(1))
    ));
    node.api("conference 3000 lock");
    node.hangup(&call.uuid).await.unwrap();
    // The conference is gone with its last member, so a new one (unlocked) starts.
    assert!(
        node.call("1002", "secret1002", "3000", "default")
            .await
            .is_ok()
    );
    node.api("conference 3000 lock");
    let mut cfg2 = capture_config(Some(directory_server().await));
    cfg2.max_sessions = 10;
    let node2 = SimNode::start(cfg2).await.unwrap();
    node2
        .call("1001", "secret1001", "5000", "default")
        .await
        .unwrap();
    node2.api("conference 5000 lock");
    assert!(matches!(
        node2.call("1002", "secret1002", "5000", "default").await,
        Err(CallError::Locked(_))
    ));
    assert_eq!(
        node2.snapshot().channels.len(),
        1,
        "the refused caller is gone"
    );
    node.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test]
async fn slow_directory_times_out() {
    let url = directory_server().await;
    let mut cfg = capture_config(Some(url));
    cfg.directory.timeout = Duration::from_millis(200);
    let node = SimNode::start(cfg).await.unwrap();
    node.set_directory_delay(Duration::from_millis(500));
    assert!(matches!(
        node.register("1001", "secret1001").await,
        Err(AuthFailure::Timeout)
    ));
    node.set_directory_delay(Duration::ZERO);
    assert!(node.register("1001", "secret1001").await.is_ok());
    node.shutdown().await;
}

#[tokio::test]
async fn no_directory_means_no_calls() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    assert!(matches!(
        node.register("1001", "secret1001").await,
        Err(AuthFailure::NoDirectory)
    ));
    node.shutdown().await;
}

#[tokio::test]
async fn events_in_xml_and_filters() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.command("event xml CUSTOM conference::maintenance").await;
    let r = c.command("filter Action add-member").await;
    assert_eq!(reply_text(&r), "+OK filter added. [Action]=[add-member]");
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    let a = c.frame().await;
    let b = c.frame().await;
    assert_eq!(a.content_type(), Some("text/event-xml"));
    let (a, b) = (event_of(&a).unwrap(), event_of(&b).unwrap());
    assert_eq!(a.get("Action"), Some("add-member"));
    assert_eq!(b.get("Action"), Some("add-member"));
    assert_eq!(a.get("Member-ID"), Some("1"));
    assert_eq!(b.get("Member-ID"), Some("2"));
    // Nothing else passed the filter (conference-create, floor-change).
    assert!(c.try_frame(Duration::from_millis(100)).await.is_none());
    node.shutdown().await;
}

#[tokio::test]
async fn hupall_and_show_channels() {
    let node = SimNode::start(capture_config(None)).await.unwrap();
    let mut c = Client::authed(node.esl_addr()).await;
    c.api("originate loopback/3000/default &conference(3000)")
        .await;
    let json = c.api("show channels as json").await;
    assert!(
        json.starts_with("{\"row_count\":2,\"rows\":[{\"uuid\":"),
        "{json}"
    );
    let csv = c.api("show channels").await;
    assert!(csv.starts_with("uuid,direction,created,"));
    assert!(csv.ends_with("\n\n2 total.\n"));
    assert_eq!(
        c.api("hupall").await,
        "+OK hangup all channels with cause MANAGER_REQUEST\n"
    );
    assert_eq!(c.api("show channels count").await, "\n0 total.\n");
    assert!(node.snapshot().conferences.is_empty());
    node.shutdown().await;
}
