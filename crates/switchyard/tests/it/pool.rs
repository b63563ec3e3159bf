//! The node pool against simulated FreeSWITCH nodes (fsim), one replica, in-process live state:
//! the nodes API, health states, placement, draining, node loss, reconciliation, metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::broadcast;

use fsim::directory::DirectoryConfig;
use fsim::{NodeConfig as SimConfig, SimNode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::Config;
use switchyard::events::Event;
use switchyard::http::{ConferenceBody, NodeBody, NodeList};
use switchyard::live::{Change, LeaveReason};
use switchyard::nodes::NodeState;
use switchyard::store::EndReason;

use crate::support::api::{
    ADMIN_KEY, FS_PASSWORD, FS_USER, READER_KEY, configure, issue, problem, put_user,
};
use crate::support::db::test_dbs;
use crate::support::spawn::{TestApp, client};

/// Short timings so that health transitions happen within a test's patience.
pub fn pool_config(config: &mut Config) {
    configure(config);
    config.esl.dead_after_secs = 1;
    config.esl.backoff_min_ms = 50;
    config.esl.backoff_max_ms = 200;
    config.esl.connect_timeout_ms = 500;
    config.pool.heartbeat_late_secs = 2;
    config.pool.probe_interval_secs = 1;
    config.pool.node_down_grace_secs = 1;
    config.pool.sync_interval_secs = 1;
    config.pool.lease_ttl_secs = 3;
}

/// An fsim node whose directory is `app`'s, with a 200 ms HEARTBEAT.
pub async fn sim_node(app: &TestApp, name: &str) -> SimNode {
    sim_node_with_directory(&app.url(""), name).await
}

/// An fsim node whose directory is the Switchyard at `base` (`http://host:port`).
pub async fn sim_node_with_directory(base: &str, name: &str) -> SimNode {
    let mut config = SimConfig::new(name);
    config.heartbeat_interval = Duration::from_millis(200);
    // The profiles freeswitch-conf/ defines.
    config.conference_profiles.extend([
        fsim::conference::ConferenceProfile::new("audio", 48000, false),
        fsim::conference::ConferenceProfile::new("video", 48000, true),
    ]);
    config.directory = DirectoryConfig {
        url: Some(format!("{base}/freeswitch/directory")),
        credentials: Some((FS_USER.to_owned(), FS_PASSWORD.to_owned())),
        timeout: Duration::from_secs(5),
    };
    SimNode::start(config).await.expect("fsim node starts")
}

/// Polls `check` until it returns `Some`, or fails after 15 s saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /v1/nodes` for an fsim node; panics unless 201.
pub async fn add_node(app: &TestApp, id: &str, sim: &SimNode, labels: Value) -> NodeBody {
    let response = client()
        .post(app.url("/v1/nodes"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({
            "id": id,
            "esl_addr": sim.esl_addr().to_string(),
            "esl_password": "ClueCon",
            "wss_url": format!("wss://{id}.example.com:7443"),
            "capacity": 10,
            "labels": labels,
        }))
        .send()
        .await
        .expect("POST /v1/nodes");
    assert_eq!(response.status(), StatusCode::CREATED, "add node {id}");
    response.json().await.expect("node JSON")
}

pub async fn node(app: &TestApp, id: &str) -> NodeBody {
    try_node(app, id)
        .await
        .unwrap_or_else(|| panic!("node {id} not found"))
}

/// The node, or `None` while this replica does not know it.
pub async fn try_node(app: &TestApp, id: &str) -> Option<NodeBody> {
    let response = client()
        .get(app.url(&format!("/v1/nodes/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET node");
    match response.status() {
        StatusCode::OK => Some(response.json().await.expect("node JSON")),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET node {id}: {other}"),
    }
}

pub async fn wait_state(app: &TestApp, id: &str, state: NodeState) -> NodeBody {
    eventually(&format!("node {id} {state:?}"), || async {
        let n = try_node(app, id).await?;
        (n.state == state).then_some(n)
    })
    .await
}

pub async fn put_conference(app: &TestApp, name: &str, body: Value) -> reqwest::Response {
    client()
        .put(app.url(&format!("/v1/conferences/{name}")))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .expect("PUT conference")
}

/// Places `name`; panics unless 200/201. Returns the node id.
pub async fn place(app: &TestApp, name: &str, body: Value) -> String {
    let response = put_conference(app, name, body).await;
    assert!(
        response.status().is_success(),
        "place {name}: {}",
        response.status()
    );
    let conference: ConferenceBody = response.json().await.expect("conference JSON");
    conference.node.id
}

pub async fn get_conference(app: &TestApp, name: &str) -> Option<ConferenceBody> {
    let response = client()
        .get(app.url(&format!("/v1/conferences/{name}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET conference");
    match response.status() {
        StatusCode::OK => Some(response.json().await.expect("conference JSON")),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET conference {name}: {other}"),
    }
}

/// Waits until conference `name` shows exactly `members` members.
pub async fn wait_members(app: &TestApp, name: &str, members: usize) -> ConferenceBody {
    eventually(&format!("{members} members in {name}"), || async {
        get_conference(app, name)
            .await
            .filter(|c| c.members.as_ref().is_some_and(|m| m.len() == members))
    })
    .await
}

/// A user with a fresh SIP credential: (username, password).
pub async fn sip_user(app: &TestApp, id: &str) -> (String, String) {
    put_user(app, id, id, true).await;
    let cred = issue(app, id).await;
    (cred.username, cred.password)
}

/// The events announced so far (non-blocking).
pub fn drain_events(app: &mut TestApp) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(event) = app.events.try_recv() {
        out.push(event);
    }
    out
}

/// Receives events until `done` holds for everything received so far (15 s at most): the
/// store changes before the event is published, so polling the API alone races the bus.
pub async fn events_until(
    app: &mut TestApp,
    what: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut out = drain_events(app);
    while !done(&out) {
        match tokio::time::timeout_at(deadline, app.events.recv()).await {
            Ok(Ok(event)) => out.push(event),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                panic!("{what}: the test fell {n} events behind")
            }
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                panic!("timed out waiting for {what}: {out:?}")
            }
        }
    }
    out
}

#[tokio::test]
async fn nodes_api_requires_keys_and_validates_input() {
    let app = TestApp::spawn_configured(None, pool_config).await;
    let unauthenticated = client()
        .get(app.url("/v1/nodes"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let reader = client()
        .get(app.url("/v1/nodes"))
        .bearer_auth(READER_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(reader.status(), StatusCode::FORBIDDEN);

    for (body, needle) in [
        (json!({}), "missing field"),
        (
            json!({"id": "Bad Id", "esl_addr": "nope", "esl_password": "", "wss_url": "http://x", "capacity": 0}),
            "id:",
        ),
        (
            json!({"id": "ok", "esl_addr": "127.0.0.1:1", "esl_password": "p", "wss_url": "wss://x", "labels": {"Region": "eu"}}),
            "labels:",
        ),
        (json!([1, 2]), "invalid type"),
    ] {
        let response = client()
            .post(app.url("/v1/nodes"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let p = problem(response).await;
        assert_eq!(p.code, "invalid_request");
        assert!(p.detail.contains(needle), "{}: {}", body, p.detail);
    }
    // Every field problem at once.
    let response = client()
        .post(app.url("/v1/nodes"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": "Bad Id", "esl_addr": "nope", "esl_password": "", "wss_url": "http://x", "capacity": 0}))
        .send()
        .await
        .expect("POST");
    let detail = problem(response).await.detail;
    for field in ["id:", "esl_addr:", "esl_password:", "wss_url:", "capacity:"] {
        assert!(detail.contains(field), "{detail}");
    }
    let garbage = client()
        .post(app.url("/v1/nodes"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, b'{'])
        .send()
        .await
        .expect("POST");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

    for (method, path) in [
        (reqwest::Method::GET, "/v1/nodes/nope"),
        (reqwest::Method::POST, "/v1/nodes/nope/drain"),
        (reqwest::Method::DELETE, "/v1/nodes/nope"),
        (reqwest::Method::GET, "/v1/nodes/..%2Fetc"),
    ] {
        let response = client()
            .request(method.clone(), app.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(problem(response).await.code, "node_not_found");
    }
    for (name, code) in [
        ("bad name", "invalid_conference_name"),
        ("a@b", "invalid_conference_name"),
    ] {
        let response = put_conference(&app, &name.replace(' ', "%20"), json!({})).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem(response).await.code, code);
    }
    let response = put_conference(&app, "room", json!({"profile": "karaoke"})).await;
    assert_eq!(problem(response).await.code, "invalid_request");
    let response = put_conference(&app, "room", json!({})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let p = problem(response).await;
    assert_eq!(p.code, "no_node_available");
    assert!(p.detail.contains("no nodes"), "{}", p.detail);
    app.stop().await.expect("clean shutdown");
}

/// Nodes added at runtime come up with their HEARTBEAT figures; placement is sticky, prefers
/// the less loaded node, honours labels and drain, and says why each node was rejected.
#[tokio::test]
async fn placement_is_sticky_balanced_and_explains_rejections() {
    for db in test_dbs().await {
        let backend = db.backend();
        let app = TestApp::spawn_configured(Some(&db.url), pool_config).await;
        let (sim_a, sim_b) = (sim_node(&app, "fs-a").await, sim_node(&app, "fs-b").await);
        let added = add_node(&app, "fs-a", &sim_a, json!({"region": "eu"})).await;
        assert_eq!(added.source, switchyard::store::NodeSource::Api);
        add_node(&app, "fs-b", &sim_b, json!({"region": "us"})).await;
        for id in ["fs-a", "fs-b"] {
            let n = eventually(&format!("{id} up with a heartbeat"), || async {
                let n = node(&app, id).await;
                (n.state == NodeState::Up && n.last_heartbeat.is_some()).then_some(n)
            })
            .await;
            let hb = n.last_heartbeat.expect("heartbeat");
            assert_eq!(hb.max_sessions, Some(1000), "{backend}");
            assert!(hb.idle_cpu.is_some() && hb.core_uuid.is_some(), "{backend}");
            assert!(n.owned_here, "one replica owns every node");
        }
        let list: NodeList = client()
            .get(app.url("/v1/nodes"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("list");
        assert_eq!(list.nodes.len(), 2);

        // A user joins room1 on its node: that node now carries a member.
        let (user, password) = sip_user(&app, "alice").await;
        let first = place(&app, "room1", json!({"profile": "video"})).await;
        let sim_first = if first == "fs-a" { &sim_a } else { &sim_b };
        sim_first
            .call(&user, &password, "room1", "video")
            .await
            .expect("alice joins room1");
        let room1 = wait_members(&app, "room1", 1).await;
        let alice = &room1.members.as_ref().expect("members")[0];
        assert_eq!(alice.user_id.as_deref(), Some("alice"), "{backend}");
        // The placement's figures follow right after the live state.
        eventually("room1 busy with a peak of 1", || async {
            get_conference(&app, "room1")
                .await
                .filter(|c| c.peak_members == 1 && c.idle_since.is_none())
        })
        .await;

        // Sticky: the same name always gets the same node, answered 200 not 201.
        for _ in 0..3 {
            let again = put_conference(&app, "room1", json!({})).await;
            assert_eq!(again.status(), StatusCode::OK, "{backend}");
        }
        assert_eq!(place(&app, "room1", json!({})).await, first);
        // Balanced: the next conference goes to the empty node.
        let second = place(&app, "room2", json!({})).await;
        assert_ne!(second, first, "{backend}: the less loaded node wins");

        // Labels: region=eu can only be fs-a.
        assert_eq!(
            place(&app, "eu-room", json!({"labels": {"region": "eu"}})).await,
            "fs-a"
        );

        // Drain fs-a: no new conferences there, existing ones stay.
        let drained = client()
            .post(app.url("/v1/nodes/fs-a/drain"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("drain");
        assert_eq!(drained.status(), StatusCode::OK);
        let a: NodeBody = drained.json().await.expect("node");
        assert_eq!(a.state, NodeState::Draining);
        assert!(
            a.draining && !a.drained,
            "{backend}: eu-room is still on it"
        );
        let response = put_conference(&app, "eu-room-2", json!({"labels": {"region": "eu"}})).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend}"
        );
        let p = problem(response).await;
        assert_eq!(p.code, "no_node_available");
        let rejections = p.extensions["rejections"].as_array().expect("rejections");
        let reasons: BTreeMap<&str, &str> = rejections
            .iter()
            .map(|r| {
                (
                    r["node"].as_str().unwrap_or(""),
                    r["reason"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            BTreeMap::from([("fs-a", "draining"), ("fs-b", "label_mismatch")]),
            "{backend}"
        );
        assert!(
            p.detail.contains("fs-b: label region=us, wanted eu"),
            "{}",
            p.detail
        );
        assert_eq!(
            place(&app, "eu-room", json!({})).await,
            "fs-a",
            "existing stays"
        );
        let new = place(&app, "room3", json!({})).await;
        assert_eq!(new, "fs-b", "{backend}: draining node gets nothing new");
        let undrained = client()
            .post(app.url("/v1/nodes/fs-a/undrain"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("undrain");
        assert_eq!(undrained.status(), StatusCode::OK);
        assert_eq!(
            place(&app, "eu-room-2", json!({"labels": {"region": "eu"}})).await,
            "fs-a"
        );

        // Removing a node that carries conferences needs force; ending them says why.
        let refused = client()
            .delete(app.url("/v1/nodes/fs-a"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let p = problem(refused).await;
        assert_eq!(p.code, "node_not_empty");
        assert!(p.extensions["conferences"].as_u64() >= Some(2), "{p:?}");
        let forced = client()
            .delete(app.url("/v1/nodes/fs-a?force=true"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(forced.status(), StatusCode::NO_CONTENT);
        let gone = client()
            .get(app.url("/v1/nodes/fs-a"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("GET");
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert!(get_conference(&app, "eu-room").await.is_none(), "{backend}");
        // A node with nothing on it goes without force.
        let sim_c = sim_node(&app, "fs-c").await;
        add_node(&app, "fs-c", &sim_c, json!({})).await;
        let removed = client()
            .delete(app.url("/v1/nodes/fs-c"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(removed.status(), StatusCode::NO_CONTENT);
        let duplicate = client()
            .post(app.url("/v1/nodes"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"id": "fs-b", "esl_addr": "127.0.0.1:1", "esl_password": "p", "wss_url": "wss://x"}))
            .send()
            .await
            .expect("POST");
        assert_eq!(problem(duplicate).await.code, "node_exists");

        app.stop().await.expect("clean shutdown");
        for sim in [sim_a, sim_b, sim_c] {
            sim.shutdown().await;
        }
    }
}

/// A blip shorter than the grace period keeps everything; a node down for longer loses its
/// conferences (`node_down`), and new conferences go elsewhere.
#[tokio::test]
async fn a_node_down_past_the_grace_loses_its_conferences() {
    let mut app = TestApp::spawn_configured(None, |c| {
        pool_config(c);
        c.pool.node_down_grace_secs = 2;
    })
    .await;
    let (sim_a, sim_b) = (sim_node(&app, "fs-a").await, sim_node(&app, "fs-b").await);
    add_node(&app, "fs-a", &sim_a, json!({"role": "first"})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    let (user, password) = sip_user(&app, "alice").await;
    assert_eq!(
        place(&app, "room", json!({"labels": {"role": "first"}})).await,
        "fs-a"
    );
    sim_a
        .call(&user, &password, "room", "audio")
        .await
        .expect("join");
    wait_members(&app, "room", 1).await;
    add_node(&app, "fs-b", &sim_b, json!({})).await;
    wait_state(&app, "fs-b", NodeState::Up).await;

    // Blip: the connection drops and comes back at once.
    let before = node(&app, "fs-a").await.connections;
    sim_a.drop_esl_connections();
    eventually("reconnect", || async {
        let n = node(&app, "fs-a").await;
        (n.connections > before && n.state == NodeState::Up).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    wait_members(&app, "room", 1).await;
    drain_events(&mut app);

    // Down for good.
    sim_a.shutdown().await;
    let down = wait_state(&app, "fs-a", NodeState::Down).await;
    assert!(down.down_since.is_some());
    let refused = put_conference(&app, "room", json!({})).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem(refused).await.code, "conference_node_unavailable");
    eventually("room ended", || async {
        get_conference(&app, "room").await.is_none().then_some(())
    })
    .await;
    events_until(
        &mut app,
        "alice left and room ended (node_down)",
        |events| {
            events.iter().any(|e| {
                matches!(e,
            Event::Live { change: Change::MemberLeft { member, reason: LeaveReason::NodeDown } }
                if member.user_id.as_deref() == Some("alice"))
            }) && events.iter().any(|e| {
                matches!(e,
                Event::ConferenceEnded { conference, reason: EndReason::NodeDown }
                    if conference.name == "room")
            })
        },
    )
    .await;
    // The name is free again and goes to a live node.
    assert_eq!(place(&app, "room", json!({})).await, "fs-b");
    app.stop().await.expect("clean shutdown");
    sim_b.shutdown().await;
}

/// Whatever happened while the connection was down is read back: members gone leave with
/// `reconciled`, new ones join, conferences started outside Switchyard are adopted; a node
/// that restarted loses its conferences with `node_restarted`.
#[tokio::test]
async fn reconnects_reconcile_and_restarts_end_conferences() {
    let mut app = TestApp::spawn_configured(None, |c| {
        pool_config(c);
        c.pool.node_down_grace_secs = 60;
    })
    .await;
    let sim = sim_node(&app, "fs-a").await;
    let (alice, alice_pw) = sip_user(&app, "alice").await;
    let (bob, bob_pw) = sip_user(&app, "bob").await;
    // A conference already running before Switchyard knows the node: adopted.
    let outside = sim
        .call(&alice, &alice_pw, "lobby", "default")
        .await
        .expect("alice");
    add_node(&app, "fs-a", &sim, json!({})).await;
    let lobby = wait_members(&app, "lobby", 1).await;
    assert_eq!(lobby.origin, "adopted");
    assert_eq!(lobby.node.id, "fs-a");
    drain_events(&mut app);

    // Frozen: the connection dies (dead peer); meanwhile alice leaves and bob joins.
    sim.freeze();
    wait_state(&app, "fs-a", NodeState::Down).await;
    sim.hangup(&outside.uuid).await.expect("alice leaves");
    sim.call(&bob, &bob_pw, "lobby", "default")
        .await
        .expect("bob");
    sim.unfreeze();
    let lobby = eventually("bob alone in the lobby", || async {
        get_conference(&app, "lobby").await.filter(|c| {
            c.members
                .as_ref()
                .is_some_and(|m| m.len() == 1 && m[0].user_id.as_deref() == Some("bob"))
        })
    })
    .await;
    assert_eq!(lobby.node.state, Some(NodeState::Up));
    events_until(
        &mut app,
        "alice left and bob joined (reconciled)",
        |events| {
            events.iter().any(|e| {
                matches!(e,
            Event::Live { change: Change::MemberLeft { member, reason: LeaveReason::Reconciled } }
                if member.user_id.as_deref() == Some("alice"))
            }) && events.iter().any(|e| {
                matches!(e,
                Event::Live { change: Change::MemberJoined { member, reconciled: true } }
                    if member.user_id.as_deref() == Some("bob"))
            })
        },
    )
    .await;

    // Restart: new Core-UUID, nothing running; the conference ends explicitly.
    sim.restart().await;
    eventually("lobby ended by the restart", || async {
        get_conference(&app, "lobby").await.is_none().then_some(())
    })
    .await;
    events_until(
        &mut app,
        "lobby ended, bob left (node_restarted)",
        |events| {
            events.iter().any(|e| {
                matches!(e,
            Event::ConferenceEnded { conference, reason: EndReason::NodeRestarted }
                if conference.name == "lobby")
            }) && events.iter().any(|e| {
                matches!(
                    e,
                    Event::Live {
                        change: Change::MemberLeft {
                            reason: LeaveReason::NodeRestarted,
                            ..
                        }
                    }
                )
            })
        },
    )
    .await;
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}

#[tokio::test]
async fn metrics_expose_the_pool() {
    let app = TestApp::spawn_configured(None, pool_config).await;
    let sim = sim_node(&app, "fs-a").await;
    add_node(&app, "fs-a", &sim, json!({})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    let (user, password) = sip_user(&app, "alice").await;
    place(&app, "room", json!({})).await;
    sim.call(&user, &password, "room", "audio")
        .await
        .expect("join");
    wait_members(&app, "room", 1).await;
    eventually("a heartbeat", || async {
        node(&app, "fs-a").await.last_heartbeat.map(|_| ())
    })
    .await;
    let failed = put_conference(&app, "other", json!({"labels": {"region": "mars"}})).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);

    let response = client().get(app.url("/metrics")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text")),
    );
    let text = response.text().await.expect("text");
    for line in [
        "switchyard_node_state{node=\"fs-a\",state=\"up\"} 1",
        "switchyard_node_state{node=\"fs-a\",state=\"down\"} 0",
        "switchyard_node_members{node=\"fs-a\"} 1",
        "switchyard_node_conferences{node=\"fs-a\"} 1",
        "switchyard_node_placements{node=\"fs-a\"} 1",
        "switchyard_node_capacity{node=\"fs-a\"} 10",
        "switchyard_node_owned{node=\"fs-a\"} 1",
        "switchyard_esl_connections_total{node=\"fs-a\"} 1",
        "switchyard_placements_total{node=\"fs-a\"} 1",
        "switchyard_placement_failures_total 1",
        "switchyard_placement_rejections_total{reason=\"label_mismatch\"} 1",
        "switchyard_reconciliations_total{node=\"fs-a\",outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("switchyard_node_heartbeat_age_seconds{node=\"fs-a\"}"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics terminator");
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}

/// Late HEARTBEATs make a node `degraded`: no new conferences, but the ones it has stay.
#[tokio::test]
async fn late_heartbeats_degrade_without_moving_conferences() {
    let app = TestApp::spawn_configured(None, |c| {
        pool_config(c);
        c.pool.heartbeat_late_secs = 1;
        // Probes keep bytes flowing; no dead-peer verdict while the heartbeat is late.
        c.esl.dead_after_secs = 30;
    })
    .await;
    let mut config = SimConfig::new("fs-slow");
    config.heartbeat_interval = Duration::from_secs(3600);
    let sim = SimNode::start(config).await.expect("fsim");
    add_node(&app, "fs-slow", &sim, json!({})).await;
    // Right after connecting the node counts as fresh; place while it is.
    eventually("first placement", || async {
        put_conference(&app, "early", json!({}))
            .await
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let degraded = wait_state(&app, "fs-slow", NodeState::Degraded).await;
    assert_eq!(
        degraded.degraded_reason,
        Some(switchyard::nodes::health::DegradedReason::HeartbeatLate)
    );
    let refused = put_conference(&app, "late", json!({})).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let p = problem(refused).await;
    assert_eq!(p.extensions["rejections"][0]["reason"], "degraded");
    assert_eq!(
        put_conference(&app, "early", json!({})).await.status(),
        StatusCode::OK,
        "a degraded node keeps its conferences"
    );
    app.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}

/// A placement nobody joins ends after the idle timeout; config nodes cannot be deleted
/// through the API; `/readyz` reports node states.
#[tokio::test]
async fn idle_placements_end_and_config_nodes_stay() {
    let probe = sim_node_with_directory("http://127.0.0.1:9", "fs-conf").await;
    let mut app = TestApp::spawn_configured(None, |c| {
        pool_config(c);
        c.pool.idle_timeout_secs = 1;
        c.nodes = vec![switchyard::config::NodeConfig {
            id: "fs-conf".to_owned(),
            esl_addr: probe.esl_addr().to_string(),
            esl_password: secrecy::SecretString::from("ClueCon"),
            wss_url: "wss://fs-conf.example.com:7443".to_owned(),
            capacity: 5,
            labels: Default::default(),
        }];
    })
    .await;
    let up = wait_state(&app, "fs-conf", NodeState::Up).await;
    assert_eq!(up.source, switchyard::store::NodeSource::Config);
    place(&app, "nobody-comes", json!({})).await;
    eventually("idle placement ended", || async {
        get_conference(&app, "nobody-comes")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    events_until(&mut app, "nobody-comes ended (idle_timeout)", |events| {
        events.iter().any(|e| {
            matches!(e,
            Event::ConferenceEnded { conference, reason: EndReason::IdleTimeout }
                if conference.name == "nobody-comes")
        })
    })
    .await;
    let refused = client()
        .delete(app.url("/v1/nodes/fs-conf"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(problem(refused).await.code, "node_in_config");
    let ready: Value = client()
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["nodes"][0]["id"], "fs-conf");
    assert_eq!(ready["nodes"][0]["state"], "up");
    app.stop().await.expect("clean shutdown");
    probe.shutdown().await;
}

#[tokio::test]
async fn conference_bodies_are_checked() {
    let app = TestApp::spawn_configured(None, pool_config).await;
    for body in [
        &b"{"[..],
        b"[]",
        b"{\"profile\": 3}",
        b"{\"extra\": 1}",
        b"\xff\xfe",
    ] {
        let response = client()
            .put(app.url("/v1/conferences/room"))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(problem(response).await.code, "invalid_request");
    }
    let missing = client()
        .get(app.url("/v1/conferences/none-here"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(problem(missing).await.code, "conference_not_found");
    let unauthorized = client()
        .put(app.url("/v1/conferences/room"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let forbidden = client()
        .put(app.url("/v1/conferences/room"))
        .bearer_auth(READER_KEY)
        .send()
        .await
        .expect("PUT");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    app.stop().await.expect("clean shutdown");
}
