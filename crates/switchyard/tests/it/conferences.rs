//! Conferences over REST against fsim nodes: invitations, live members, uninviting, ending,
//! limits, history, bad input.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::events::Event;
use switchyard::http::{InvitationList, InvitationResult, MemberList, Page, StayBody};
use switchyard::live::{Change, LeaveReason};
use switchyard::nodes::NodeState;

use crate::pool::{
    add_node, drain_events, events_until, eventually, get_conference, pool_config, sim_node,
    sip_user, wait_members, wait_state,
};
use crate::support::api::{ADMIN_KEY, FS_PASSWORD, FS_USER, READER_KEY, delete, problem};
use crate::support::db::test_dbs;
use crate::support::spawn::{TestApp, client};

async fn invite(app: &TestApp, name: &str, body: Value) -> reqwest::Response {
    client()
        .post(app.url(&format!("/v1/conferences/{name}/invitations")))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .expect("POST invitation")
}

async fn get_json<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str) -> T {
    let response = client()
        .get(app.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.expect("JSON")
}

fn left_with(events: &[Event], user: &str, reason: LeaveReason) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::Live { change: Change::MemberLeft { member, reason: r } }
            if member.user_id.as_deref() == Some(user) && *r == reason)
    })
}

/// Five invited users join one node; the members table follows talking; uninviting kicks;
/// ending hangs everyone up; history keeps every stay with its reason.
#[tokio::test]
async fn five_invitations_one_node_members_uninvite_end_history() {
    for db in test_dbs().await {
        let backend = db.backend();
        let mut app = TestApp::spawn_configured(Some(&db.url), pool_config).await;
        let (sim_a, sim_b) = (sim_node(&app, "fs-a").await, sim_node(&app, "fs-b").await);
        add_node(&app, "fs-a", &sim_a, json!({})).await;
        add_node(&app, "fs-b", &sim_b, json!({})).await;
        wait_state(&app, "fs-a", NodeState::Up).await;
        wait_state(&app, "fs-b", NodeState::Up).await;

        let users = ["u1", "u2", "u3", "u4", "u5"];
        let mut creds = Vec::new();
        let mut node = None;
        for user in users {
            creds.push(sip_user(&app, user).await);
            let response = invite(
                &app,
                "team",
                json!({"user_id": user, "caller_id": "Boss", "message": "Стендап 🚀", "profile": "video"}),
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::CREATED,
                "{backend}: invite {user}"
            );
            let result: InvitationResult = response.json().await.expect("JSON");
            assert_eq!(result.dial.destination, "conf*team");
            assert_eq!(result.dial.uri, "sip:conf*team@127.0.0.1");
            assert_eq!(result.invitation.message, "Стендап 🚀");
            assert_eq!(result.invitation.profile, "video");
            assert!(result.node.wss_url.starts_with("wss://"));
            let n = node.get_or_insert(result.node.id.clone());
            assert_eq!(*n, result.node.id, "{backend}: all invitations on one node");
        }
        // Re-inviting is idempotent.
        let again = invite(&app, "team", json!({"user_id": "u1", "caller_id": "Other"})).await;
        assert_eq!(again.status(), StatusCode::OK);
        let again: InvitationResult = again.json().await.expect("JSON");
        assert_eq!(
            again.invitation.caller_id, "Boss",
            "the first invitation stays"
        );
        let list: InvitationList = get_json(&app, "/v1/conferences/team/invitations").await;
        assert_eq!(list.invitations.len(), 5);
        let events = drain_events(&mut app);
        let invited = events
            .iter()
            .filter(|e| matches!(e, Event::Invited { .. }))
            .count();
        assert_eq!(
            invited, 5,
            "{backend}: one invited event per new invitation"
        );

        let node = node.expect("node");
        let sim = if node == "fs-a" { &sim_a } else { &sim_b };
        let mut calls = Vec::new();
        for (user, password) in &creds {
            calls.push(
                sim.call(user, password, "team", "video")
                    .await
                    .expect("join"),
            );
        }
        wait_members(&app, "team", 5).await;
        let members: MemberList = get_json(&app, "/v1/conferences/team/members").await;
        let ids: Vec<&str> = members
            .members
            .iter()
            .filter_map(|m| m.user_id.as_deref())
            .collect();
        assert_eq!(ids, users, "{backend}");
        assert!(
            members
                .members
                .iter()
                .all(|m| m.node == node && m.last_talking.is_none())
        );

        // Talking follows the node's events.
        sim.start_talking(&calls[1].uuid).await.expect("talk");
        eventually("u2 talking", || async {
            let m: MemberList = get_json(&app, "/v1/members?user_id=u2").await;
            m.members
                .first()
                .filter(|m| m.talking && m.last_talking == Some(0))
                .map(|_| ())
        })
        .await;
        sim.stop_talking(&calls[1].uuid).await.expect("quiet");
        eventually("u2 quiet", || async {
            let m: MemberList = get_json(&app, "/v1/members?user_id=u2").await;
            m.members
                .first()
                .filter(|m| !m.talking && m.last_talking.is_some())
                .map(|_| ())
        })
        .await;

        // Uninviting removes the user from the live conference.
        let response = delete(&app, "/v1/conferences/team/invitations/u3").await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{backend}");
        wait_members(&app, "team", 4).await;
        let gone = delete(&app, "/v1/conferences/team/invitations/u3").await;
        assert_eq!(problem(gone).await.code, "invitation_not_found");

        // A hangup is a plain leave.
        sim.hangup(&calls[4].uuid).await.expect("bye");
        wait_members(&app, "team", 3).await;

        // Ending the conference hangs everyone up.
        let response = delete(&app, "/v1/conferences/team").await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(get_conference(&app, "team").await.is_none());
        let list: InvitationList = get_json(&app, "/v1/conferences/team/invitations").await;
        assert!(
            list.invitations.is_empty(),
            "invitations end with the conference"
        );
        eventually("everyone gone from the node", || async {
            sim.snapshot().conferences.is_empty().then_some(())
        })
        .await;
        events_until(&mut app, "every stay ended with its reason", |events| {
            left_with(events, "u3", LeaveReason::Uninvited)
                && left_with(events, "u5", LeaveReason::Hangup)
                && ["u1", "u2", "u4"]
                    .iter()
                    .all(|user| left_with(events, user, LeaveReason::Ended))
        })
        .await;

        // History: every stay with its reason; the conference with its end.
        let stays: Page<StayBody> = eventually("stays closed", || async {
            let page: Page<StayBody> = get_json(&app, "/v1/history/members?name=team").await;
            (page.items.len() == 5 && page.items.iter().all(|s| s.stay.left_at.is_some()))
                .then_some(page)
        })
        .await;
        let reason = |user: &str| {
            stays
                .items
                .iter()
                .find(|s| s.stay.user_id.as_deref() == Some(user))
                .and_then(|s| s.stay.reason.clone())
        };
        assert_eq!(reason("u3").as_deref(), Some("uninvited"), "{backend}");
        assert_eq!(reason("u5").as_deref(), Some("hangup"));
        assert_eq!(reason("u1").as_deref(), Some("ended"));
        assert!(stays.items.iter().all(|s| s.stay.conference_id.is_some()));
        let history: Value = get_json(&app, "/v1/history/conferences?name=team").await;
        assert_eq!(history["items"][0]["end_reason"], "ended");
        assert_eq!(history["items"][0]["peak_members"], 5);
        assert_eq!(history["items"][0]["state"], "ended");

        app.stop().await.expect("clean shutdown");
        sim_a.shutdown().await;
        sim_b.shutdown().await;
    }
}

/// `max_members` makes the dialplan refuse the next caller; `max_duration_secs` hangs
/// everyone up; `open` admits callers without an invitation.
#[tokio::test]
async fn limits_and_open_conferences() {
    let mut app = TestApp::spawn_configured(None, pool_config).await;
    let sim = sim_node(&app, "fs-a").await;
    add_node(&app, "fs-a", &sim, json!({})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    let (u1, p1) = sip_user(&app, "u1").await;
    sip_user(&app, "u2").await;
    sip_user(&app, "stranger").await;
    let first = invite(&app, "small", json!({"user_id": "u1", "max_members": 1})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    invite(&app, "small", json!({"user_id": "u2"})).await;
    sim.call(&u1, &p1, "small", "audio")
        .await
        .expect("u1 joins");
    wait_members(&app, "small", 1).await;
    eventually("member count stored, conference full", || async {
        get_conference(&app, "small")
            .await
            .filter(|c| c.member_count == 1 && c.full)
            .map(|_| ())
    })
    .await;
    let dialplan = |user: &str, conference: &str| {
        let body = format!(
            "hostname=fs-a&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS\
             &Caller-Context=default&Caller-Destination-Number=conf*{conference}\
             &Hunt-Context=default&Hunt-Destination-Number=conf*{conference}&variable_switchyard_user_id={user}"
        );
        let url = app.url("/freeswitch/dialplan");
        async move {
            client()
                .post(url)
                .basic_auth(FS_USER, Some(FS_PASSWORD))
                .body(body)
                .send()
                .await
                .expect("POST")
                .text()
                .await
                .expect("text")
        }
    };
    let refused = dialplan("u2", "small").await;
    assert!(
        refused.contains("data=\"486 Busy Here\""),
        "the next caller is refused: {refused}"
    );
    assert!(
        dialplan("stranger", "small")
            .await
            .contains("data=\"403 Forbidden\"")
    );

    // Open: anyone with credentials.
    let open = client()
        .put(app.url("/v1/conferences/lobby"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"open": true, "profile": "video"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(open.status(), StatusCode::CREATED);
    assert!(
        dialplan("stranger", "lobby")
            .await
            .contains("data=\"lobby@video\"")
    );

    // Max duration: hung up, placement ended.
    let (u3, p3) = sip_user(&app, "u3").await;
    invite(
        &app,
        "short",
        json!({"user_id": "u3", "max_duration_secs": 1}),
    )
    .await;
    sim.call(&u3, &p3, "short", "audio")
        .await
        .expect("u3 joins");
    wait_members(&app, "short", 1).await;
    eventually("short ended", || async {
        get_conference(&app, "short").await.is_none().then_some(())
    })
    .await;
    eventually("u3 hung up on the node", || async {
        sim.snapshot()
            .conferences
            .iter()
            .all(|c| c.name != "short")
            .then_some(())
    })
    .await;
    events_until(&mut app, "u3 left (duration_exceeded)", |events| {
        left_with(events, "u3", LeaveReason::DurationExceeded)
    })
    .await;
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}

#[tokio::test]
async fn conference_endpoints_refuse_bad_input() {
    let app = TestApp::spawn_configured(None, pool_config).await;
    sip_user(&app, "alice").await;
    crate::support::api::put_user(&app, "off", "Off", false).await;
    for (body, status, code) in [
        (json!({}), 400, "invalid_request"),
        (json!({"user_id": 5}), 400, "invalid_request"),
        (json!({"user_id": "bad id"}), 400, "invalid_user_id"),
        (json!({"user_id": "nobody"}), 404, "user_not_found"),
        (json!({"user_id": "off"}), 409, "user_disabled"),
        (
            json!({"user_id": "alice", "profile": "4k"}),
            400,
            "invalid_request",
        ),
        (
            json!({"user_id": "alice", "max_members": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"user_id": "alice", "max_members": -1}),
            400,
            "invalid_request",
        ),
        (
            json!({"user_id": "alice", "message": "x".repeat(2000)}),
            400,
            "invalid_request",
        ),
        (
            json!({"user_id": "alice", "caller_id": "a\u{0}b"}),
            400,
            "invalid_request",
        ),
        (
            json!({"user_id": "alice", "surprise": true}),
            400,
            "invalid_request",
        ),
        (json!({"user_id": "alice"}), 503, "no_node_available"),
    ] {
        let response = invite(&app, "room", body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        assert_eq!(problem(response).await.code, code, "{body}");
    }
    let huge = client()
        .post(app.url("/v1/conferences/room/invitations"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .expect("POST");
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem(huge).await.code, "payload_too_large");
    for path in [
        "/v1/conferences/bad%20name/members",
        "/v1/conferences/a@b/invitations",
        "/v1/conferences?state=maybe",
        "/v1/conferences?limit=0",
        "/v1/conferences?limit=501",
        "/v1/conferences?cursor=garbage",
        "/v1/conferences?surprise=1",
        "/v1/members",
        "/v1/members?user_id=bad%20id",
        "/v1/history/members?cursor=1.x%27",
        "/v1/history/members?name=a%2Fb",
    ] {
        let response = client()
            .get(app.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let code = problem(response).await.code;
        assert!(
            [
                "invalid_request",
                "invalid_conference_name",
                "invalid_user_id"
            ]
            .contains(&code.as_str()),
            "{path}: {code}"
        );
    }
    for path in ["/v1/conferences/none", "/v1/conferences/none/members"] {
        let response = client()
            .get(app.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("GET");
        assert_eq!(
            problem(response).await.code,
            "conference_not_found",
            "{path}"
        );
    }
    assert_eq!(
        problem(delete(&app, "/v1/conferences/none").await)
            .await
            .code,
        "conference_not_found"
    );
    let forbidden = client()
        .post(app.url("/v1/conferences/room/invitations"))
        .bearer_auth(READER_KEY)
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    // Pagination walks the whole list without repeats.
    let sim = sim_node(&app, "fs-a").await;
    add_node(&app, "fs-a", &sim, json!({})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    for i in 0..5 {
        let r = invite(&app, &format!("room{i}"), json!({"user_id": "alice"})).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/conferences?limit=2&state=live&cursor={c}"),
            None => "/v1/conferences?limit=2&state=live".to_owned(),
        };
        let page: Value = get_json(&app, &path).await;
        for item in page["items"].as_array().expect("items") {
            seen.push(item["name"].as_str().expect("name").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["room0", "room1", "room2", "room3", "room4"]);
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}

/// Control commands reach the node; its reply decides the answer; the state follows events.
#[tokio::test]
async fn control_commands_reach_the_node() {
    let mut app = TestApp::spawn_configured(None, pool_config).await;
    let sim = sim_node(&app, "fs-a").await;
    add_node(&app, "fs-a", &sim, json!({})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    let (u1, p1) = sip_user(&app, "u1").await;
    let (u2, p2) = sip_user(&app, "u2").await;
    for user in ["u1", "u2"] {
        invite(&app, "ctl", json!({"user_id": user, "profile": "video"})).await;
    }
    let c1 = sim.call(&u1, &p1, "ctl", "video").await.expect("u1");
    let c2 = sim.call(&u2, &p2, "ctl", "video").await.expect("u2");
    wait_members(&app, "ctl", 2).await;
    let base = app.url("");
    let post = |path: String, body: Option<Value>| {
        let url = format!("{base}{path}");
        async move {
            let mut request = client().post(url).bearer_auth(ADMIN_KEY);
            if let Some(body) = body {
                request = request.json(&body);
            }
            request.send().await.expect("POST")
        }
    };
    let member = |user: &'static str| {
        let app = &app;
        async move {
            let m: MemberList = get_json(app, &format!("/v1/members?user_id={user}")).await;
            m.members.into_iter().next()
        }
    };

    // Mute: FreeSWITCH's reply comes back, the member is muted by the node's event.
    let response = post(
        format!("/v1/conferences/ctl/members/{}/mute", c1.member_id),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.expect("JSON");
    assert_eq!(result["reply"], format!("+OK mute {}", c1.member_id));
    eventually("u1 muted", || async {
        member("u1").await.filter(|m| m.muted)
    })
    .await;
    post(
        format!("/v1/conferences/ctl/members/{}/unmute", c1.member_id),
        None,
    )
    .await;
    eventually("u1 unmuted", || async {
        member("u1").await.filter(|m| !m.muted)
    })
    .await;
    post(
        format!("/v1/conferences/ctl/members/{}/deaf", c1.member_id),
        None,
    )
    .await;
    eventually("u1 deaf", || async {
        member("u1").await.filter(|m| m.deaf)
    })
    .await;

    // Errors from the node.
    let missing = post("/v1/conferences/ctl/members/99/mute".to_owned(), None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let p = problem(missing).await;
    assert_eq!(p.code, "member_not_found");
    assert!(p.detail.contains("Non-Existant ID 99"), "{}", p.detail);
    let dance = post("/v1/conferences/ctl/members/1/dance".to_owned(), None).await;
    assert_eq!(problem(dance).await.code, "invalid_request");
    let not_a_number = post("/v1/conferences/ctl/members/x/mute".to_owned(), None).await;
    assert_eq!(not_a_number.status(), StatusCode::BAD_REQUEST);

    // Lock, layout, play, floor.
    let locked: Value = post("/v1/conferences/ctl/lock".to_owned(), None)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(locked["reply"], "+OK ctl locked");
    post("/v1/conferences/ctl/unlock".to_owned(), None).await;
    let layout = post(
        "/v1/conferences/ctl/layout".to_owned(),
        Some(json!({"layout": "2x2"})),
    )
    .await;
    assert_eq!(layout.status(), StatusCode::OK);
    let group = post(
        "/v1/conferences/ctl/layout".to_owned(),
        Some(json!({"layout": "group:grid"})),
    )
    .await;
    let group: Value = group.json().await.expect("JSON");
    assert_eq!(group["reply"], "+OK Change to layout group [grid]");
    let bad_layout = post(
        "/v1/conferences/ctl/layout".to_owned(),
        Some(json!({"layout": "a b"})),
    )
    .await;
    assert_eq!(problem(bad_layout).await.code, "invalid_request");
    let played = post(
        "/v1/conferences/ctl/play".to_owned(),
        Some(json!({"file": "tone_stream://%(100,0,440)"})),
    )
    .await;
    assert_eq!(played.status(), StatusCode::OK);
    let missing_file = post(
        "/v1/conferences/ctl/play".to_owned(),
        Some(json!({"file": "/nope.wav"})),
    )
    .await;
    assert_eq!(missing_file.status(), StatusCode::CONFLICT);
    let p = problem(missing_file).await;
    assert_eq!(p.code, "node_refused");
    assert!(
        p.detail.contains("(play) File: /nope.wav not found."),
        "{}",
        p.detail
    );
    let floor = post(
        format!("/v1/conferences/ctl/members/{}/floor", c2.member_id),
        None,
    )
    .await;
    assert_eq!(floor.status(), StatusCode::OK);

    // Recording and broadcast: started, listed, stopped.
    let started = post("/v1/conferences/ctl/recordings".to_owned(), None).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let started: Value = started.json().await.expect("JSON");
    let path = started["path"].as_str().expect("path").to_owned();
    assert!(
        path.starts_with("/var/lib/freeswitch/recordings/ctl/ctl-") && path.ends_with(".mp4"),
        "{path}"
    );
    let bad_url = post(
        "/v1/conferences/ctl/broadcasts".to_owned(),
        Some(json!({"url": "http://x/live"})),
    )
    .await;
    assert_eq!(problem(bad_url).await.code, "invalid_request");
    let cast = post(
        "/v1/conferences/ctl/broadcasts".to_owned(),
        Some(json!({"url": "rtmp://127.0.0.1/live/ctl"})),
    )
    .await;
    assert_eq!(cast.status(), StatusCode::ACCEPTED);
    eventually("both listed", || async {
        let list: Value = get_json(&app, "/v1/conferences/ctl/recordings").await;
        let kinds: Vec<&str> = list["recordings"]
            .as_array()?
            .iter()
            .filter(|r| r["stopped_at"].is_null())
            .filter_map(|r| r["kind"].as_str())
            .collect();
        (kinds.len() == 2 && kinds.contains(&"file") && kinds.contains(&"broadcast")).then_some(())
    })
    .await;
    let stopped = delete(&app, "/v1/conferences/ctl/recordings").await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let stopped = delete(&app, "/v1/conferences/ctl/broadcasts").await;
    assert_eq!(stopped.status(), StatusCode::OK);
    eventually("both stopped", || async {
        let list: Value = get_json(&app, "/v1/conferences/ctl/recordings").await;
        let all = list["recordings"].as_array()?;
        (all.len() == 2 && all.iter().all(|r| !r["stopped_at"].is_null())).then_some(())
    })
    .await;

    // Kick: the member leaves with reason kicked.
    drain_events(&mut app);
    let kicked = post(
        format!("/v1/conferences/ctl/members/{}/kick", c2.member_id),
        None,
    )
    .await;
    assert_eq!(kicked.status(), StatusCode::OK);
    wait_members(&app, "ctl", 1).await;
    events_until(&mut app, "u2 left (kicked)", |events| {
        left_with(events, "u2", LeaveReason::Kicked)
    })
    .await;

    // A placed conference that is not running on its node.
    let placed = client()
        .put(app.url("/v1/conferences/empty"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("PUT");
    assert_eq!(placed.status(), StatusCode::CREATED);
    let response = post("/v1/conferences/empty/lock".to_owned(), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(response).await.code, "conference_not_running");
    let response = post("/v1/conferences/none/lock".to_owned(), None).await;
    assert_eq!(problem(response).await.code, "conference_not_found");
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}
