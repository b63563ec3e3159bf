//! Webhooks end to end: a real HTTP receiver that checks every signature; events of a
//! conference on an fsim node; a receiver down for 30 s; deliveries across a restart; a node
//! that dies; the outbox queries on both backends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use switchyard::config::WebhookEndpointConfig;
use switchyard::events::{Bus, Event};
use switchyard::live::Change;
use switchyard::nodes::NodeState;
use switchyard::nodes::health::Health;
use switchyard::store::{NewWebhookDelivery, Store};
use switchyard::{App, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pool::{
    add_node, eventually, pool_config, sim_node, sip_user, wait_members, wait_state,
};
use crate::support::api::ADMIN_KEY;
use crate::support::db::{TestDb, sqlite, test_dbs};
use crate::support::spawn::{TestApp, client};

const SECRET: &str = "whsec-test-0123456789abcdef";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    header_id: String,
    attempt: u32,
    signature_ok: bool,
    body: Value,
}

impl Received {
    fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// What the receiver has seen, and what it answers.
#[derive(Clone)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    status: AxumStatus,
}

impl Inbox {
    fn new() -> Self {
        Self::answering(AxumStatus::NO_CONTENT)
    }

    fn answering(status: AxumStatus) -> Self {
        Self {
            received: Arc::default(),
            status,
        }
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("inbox").clone()
    }

    fn of_type(&self, kind: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    /// Waits for a delivery of `kind` whose body matches `check`.
    async fn wait_for(&self, kind: &str, check: impl Fn(&Value) -> bool) -> Received {
        eventually(&format!("a {kind} webhook"), || async {
            self.of_type(kind).into_iter().find(|r| check(&r.body))
        })
        .await
    }
}

/// The signature check a receiver does, written independently of Switchyard's code.
fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (
        header("switchyard-webhook-timestamp"),
        header("switchyard-webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let Some(hex) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(bytes) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    mac.verify_slice(&bytes).is_ok()
}

async fn hook(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    let received = Received {
        header_id: header("switchyard-webhook-id"),
        attempt: header("switchyard-webhook-attempt").parse().unwrap_or(0),
        signature_ok: signature_ok(&headers, &body),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    inbox.received.lock().expect("inbox").push(received);
    inbox.status
}

/// A running receiver; [`Receiver::stop`] closes its port (connections included).
struct Receiver {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: SocketAddr, inbox: &Inbox) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inbox.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("receiver serves");
        });
        Self { addr, stop, task }
    }

    fn url(&self) -> String {
        url(self.addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("receiver stops")
            .expect("receiver task");
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/hook")
}

/// A free port on loopback (nothing listens on it when this returns).
async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

fn endpoint(url: &str, talking: bool) -> WebhookEndpointConfig {
    WebhookEndpointConfig {
        id: "test".to_owned(),
        url: SecretString::from(url.to_owned()),
        secret: SecretString::from(SECRET),
        events: None,
        talking,
    }
}

/// Webhooks to `url`, with short retries.
fn hooks(config: &mut Config, url: &str, talking: bool) {
    config.webhooks.endpoints = vec![endpoint(url, talking)];
    config.webhooks.timeout_ms = 2_000;
    config.webhooks.retry_min_ms = 500;
    config.webhooks.retry_max_ms = 2_000;
    config.webhooks.talking_debounce_ms = 200;
}

/// A service (on `db`) sending webhooks to `url`, and its bus to announce events on.
async fn spawn_with_bus(db: &TestDb, url: &str) -> (TestApp, Bus) {
    let mut bus = None;
    let app = TestApp::spawn_full(
        Some(&db.url),
        |c| hooks(c, url, false),
        |app: &App| bus = Some(app.bus.clone()),
    )
    .await;
    ready(&app).await;
    (app, bus.expect("bus"))
}

/// Waits until the service answers HTTP: by then `run` has started the webhook tasks, which
/// see everything announced afterwards.
async fn ready(app: &TestApp) {
    eventually("the service serving", || async {
        let response = client().get(app.url("/healthz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

fn node_health(node: &str, from: Health, to: Health) -> Event {
    Event::NodeHealth {
        node: node.to_owned(),
        from,
        to,
        owner: true,
    }
}

async fn wait_no_pending(store: &Store) {
    eventually("no pending webhook deliveries", || async {
        store
            .pending_webhooks()
            .await
            .expect("pending")
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Every delivery is signed, has the body shape and an id of its own that the header repeats.
fn assert_well_formed(received: &[Received]) {
    let mut ids = HashSet::new();
    for r in received {
        assert!(r.signature_ok, "bad signature: {r:?}");
        let body = r.body.as_object().expect("JSON object");
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "type", "created_at", "data"], "{r:?}");
        let id = body["id"].as_str().expect("id");
        assert_eq!(id, r.header_id);
        assert!(
            id.len() == 35
                && id.starts_with("wh_")
                && id[3..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().expect("created_at"))
            .expect("RFC 3339 created_at");
        assert!(body["data"].is_object(), "{r:?}");
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), received.len(), "ids are unique: {received:?}");
}

/// A user joins a conference on an fsim node, talks, is recorded, hangs up; the conference is
/// ended through the API. The receiver gets each event, signed.
#[tokio::test]
async fn conference_events_are_signed_and_delivered() {
    for db in test_dbs().await {
        let backend = db.backend();
        let inbox = Inbox::new();
        let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), &inbox).await;
        let hook_url = receiver.url();
        let app = TestApp::spawn_configured(Some(&db.url), |c| {
            pool_config(c);
            hooks(c, &hook_url, true);
        })
        .await;
        let sim = sim_node(&app, "fs-w").await;
        add_node(&app, "fs-w", &sim, json!({})).await;
        wait_state(&app, "fs-w", NodeState::Up).await;
        // (Its `node.up` is best effort at the first connection: the supervisor may announce
        // it before it has taken ownership of the node.)

        let (user, password) = sip_user(&app, "alice").await;
        let response = client()
            .post(app.url("/v1/conferences/standup/invitations"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"user_id": "alice"}))
            .send()
            .await
            .expect("invite");
        assert_eq!(response.status(), StatusCode::CREATED, "{backend}");
        let call = sim
            .call(&user, &password, "standup", "audio")
            .await
            .expect("join");
        wait_members(&app, "standup", 1).await;
        let started = inbox
            .wait_for("conference.started", |b| {
                b["data"]["conference"] == "standup"
            })
            .await;
        assert_eq!(started.body["data"]["node"], "fs-w");
        let joined = inbox
            .wait_for("member.joined", |b| b["data"]["conference"] == "standup")
            .await;
        let data = &joined.body["data"];
        assert_eq!(data["node"], "fs-w");
        assert_eq!(data["reconciled"], false);
        assert_eq!(data["member"]["user_id"], "alice");
        assert_eq!(data["member"]["member_id"], call.member_id);
        assert_eq!(data["member"]["channel_uuid"], call.uuid.as_str());

        // Talking (opt-in, debounced): one true, one false.
        sim.start_talking(&call.uuid).await.expect("talk");
        inbox
            .wait_for("member.talking", |b| b["data"]["talking"] == true)
            .await;
        sim.stop_talking(&call.uuid).await.expect("quiet");
        inbox
            .wait_for("member.talking", |b| b["data"]["talking"] == false)
            .await;
        assert_eq!(inbox.of_type("member.talking").len(), 2, "{backend}");

        // Recording.
        let path = "/tmp/standup.wav";
        let out = sim.api(&format!("conference standup record {path}"));
        assert!(out.starts_with("+OK Record file"), "{out}");
        inbox
            .wait_for("recording.started", |b| b["data"]["path"] == path)
            .await;
        sim.api(&format!("conference standup norecord {path}"));
        inbox
            .wait_for("recording.stopped", |b| b["data"]["path"] == path)
            .await;

        // Hanging up is a plain leave; ending the conference through the API ends it.
        sim.hangup(&call.uuid).await.expect("bye");
        let left = inbox
            .wait_for("member.left", |b| b["data"]["member"]["user_id"] == "alice")
            .await;
        assert_eq!(left.body["data"]["reason"], "hangup", "{backend}");
        let response = client()
            .delete(app.url("/v1/conferences/standup"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let ended = inbox
            .wait_for("conference.ended", |b| b["data"]["conference"] == "standup")
            .await;
        assert_eq!(ended.body["data"]["reason"], "ended", "{backend}");
        assert_eq!(ended.body["data"]["node"], "fs-w");
        assert!(ended.body["data"]["conference_id"].is_string());

        wait_no_pending(&app.store).await;
        let all = inbox.all();
        assert_well_formed(&all);
        assert!(
            all.iter().all(|r| r.attempt == 1),
            "{backend}: first attempts only: {all:?}"
        );
        app.stop().await.expect("clean shutdown");
        sim.shutdown().await;
        receiver.stop().await;
    }
}

/// The receiver is down for 30 s; what happened meanwhile arrives once it is back, on the same
/// port. Both backends run side by side.
#[tokio::test]
async fn deliveries_arrive_after_the_receiver_was_down_for_30_s() {
    let mut runs = Vec::new();
    for db in test_dbs().await {
        runs.push(tokio::spawn(async move {
            let backend = db.backend();
            let inbox = Inbox::new();
            let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), &inbox).await;
            let addr = receiver.addr;
            let (app, bus) = spawn_with_bus(&db, &receiver.url()).await;
            bus.publish(node_health("fs-1", Health::Up, Health::Down));
            inbox.wait_for("node.down", |_| true).await;

            receiver.stop().await;
            bus.publish(node_health("fs-1", Health::Down, Health::Up));
            bus.publish(node_health("fs-2", Health::Degraded, Health::Down));
            bus.publish(Event::Live {
                change: Change::ConferenceStarted {
                    node: "fs-2".to_owned(),
                    name: "late".to_owned(),
                    uuid: None,
                },
            });
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert_eq!(inbox.all().len(), 1, "{backend}: the receiver was down");
            assert_eq!(
                app.store.pending_webhooks().await.expect("pending"),
                [("test".to_owned(), 3)],
                "{backend}"
            );

            let receiver = Receiver::start(addr, &inbox).await;
            inbox
                .wait_for("node.up", |b| b["data"]["node"] == "fs-1")
                .await;
            inbox
                .wait_for("node.down", |b| b["data"]["node"] == "fs-2")
                .await;
            inbox
                .wait_for("conference.started", |b| b["data"]["conference"] == "late")
                .await;
            wait_no_pending(&app.store).await;
            let all = inbox.all();
            assert_eq!(all.len(), 4, "{backend}: {all:?}");
            assert_well_formed(&all);
            for r in &all[1..] {
                // 30 s of 0.5, 1, 2, 2, … s backoff: many attempts.
                assert!(r.attempt >= 5, "{backend}: {r:?}");
            }
            app.stop().await.expect("clean shutdown");
            receiver.stop().await;
        }));
    }
    for run in runs {
        run.await.expect("backend run");
    }
}

/// Deliveries queued while the receiver is unreachable survive a restart of Switchyard; events
/// announced right before shutdown are still queued.
#[tokio::test]
async fn deliveries_survive_a_restart() {
    for db in test_dbs().await {
        let backend = db.backend();
        let addr = free_addr().await;
        let (app, bus) = spawn_with_bus(&db, &url(addr)).await;
        bus.publish(node_health("fs-1", Health::Up, Health::Down));
        eventually("a failed attempt", || async {
            let pending = app.store.pending_webhooks().await.expect("pending");
            (pending == [("test".to_owned(), 1)]).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        bus.publish(node_health("fs-2", Health::Up, Health::Down));
        app.stop().await.expect("clean shutdown");
        assert_eq!(
            db.store.pending_webhooks().await.expect("pending"),
            [("test".to_owned(), 2)],
            "{backend}: queued before shutdown"
        );

        let inbox = Inbox::new();
        let receiver = Receiver::start(addr, &inbox).await;
        let app = TestApp::spawn_configured(Some(&db.url), |c| hooks(c, &url(addr), false)).await;
        for node in ["fs-1", "fs-2"] {
            inbox
                .wait_for("node.down", |b| b["data"]["node"] == node)
                .await;
        }
        wait_no_pending(&app.store).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let all = inbox.all();
        assert_eq!(all.len(), 2, "{backend}: {all:?}");
        assert_well_formed(&all);
        let first = all.iter().find(|r| r.body["data"]["node"] == "fs-1");
        assert!(
            first.is_some_and(|r| r.attempt >= 2),
            "{backend}: tried before the restart: {all:?}"
        );
        app.stop().await.expect("clean shutdown");
        receiver.stop().await;
    }
}

/// A node that dies: its member leaves with `node_down`, its conference ends with `node_down`,
/// and the node is reported down.
#[tokio::test]
async fn node_death_sends_member_left_conference_ended_and_node_down() {
    let db = sqlite().await;
    let inbox = Inbox::new();
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), &inbox).await;
    let hook_url = receiver.url();
    let app = TestApp::spawn_configured(Some(&db.url), |c| {
        pool_config(c);
        hooks(c, &hook_url, false);
    })
    .await;
    let sim = sim_node(&app, "fs-d").await;
    add_node(&app, "fs-d", &sim, json!({})).await;
    wait_state(&app, "fs-d", NodeState::Up).await;
    let (user, password) = sip_user(&app, "bob").await;
    let response = client()
        .post(app.url("/v1/conferences/doomed/invitations"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"user_id": "bob"}))
        .send()
        .await
        .expect("invite");
    assert_eq!(response.status(), StatusCode::CREATED);
    sim.call(&user, &password, "doomed", "audio")
        .await
        .expect("join");
    wait_members(&app, "doomed", 1).await;
    inbox
        .wait_for("member.joined", |b| b["data"]["member"]["user_id"] == "bob")
        .await;

    sim.shutdown().await;
    let down = inbox
        .wait_for("node.down", |b| b["data"]["node"] == "fs-d")
        .await;
    assert_eq!(down.body["data"]["previous"], "up");
    let left = inbox
        .wait_for("member.left", |b| b["data"]["member"]["user_id"] == "bob")
        .await;
    assert_eq!(left.body["data"]["reason"], "node_down");
    assert_eq!(left.body["data"]["conference"], "doomed");
    let ended = inbox
        .wait_for("conference.ended", |b| b["data"]["conference"] == "doomed")
        .await;
    assert_eq!(ended.body["data"]["reason"], "node_down");
    assert!(
        inbox.of_type("member.talking").is_empty(),
        "member.talking is opt-in"
    );
    assert_well_formed(&inbox.all());
    app.stop().await.expect("clean shutdown");
    receiver.stop().await;
}

/// A receiver that refuses (HTTP 500) gets `max_attempts` attempts, then the delivery is given
/// up with the receiver's answer as its last error.
#[tokio::test]
async fn refused_deliveries_are_given_up_after_max_attempts() {
    let db = sqlite().await;
    let inbox = Inbox::answering(AxumStatus::INTERNAL_SERVER_ERROR);
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), &inbox).await;
    let mut bus = None;
    let app = TestApp::spawn_full(
        Some(&db.url),
        |c| {
            hooks(c, &receiver.url(), false);
            c.webhooks.retry_min_ms = 100;
            c.webhooks.retry_max_ms = 200;
            c.webhooks.max_attempts = 3;
        },
        |app: &App| bus = Some(app.bus.clone()),
    )
    .await;
    ready(&app).await;
    bus.expect("bus")
        .publish(node_health("fs-1", Health::Up, Health::Down));
    eventually("three attempts", || async {
        (inbox.all().len() >= 3).then_some(())
    })
    .await;
    wait_no_pending(&app.store).await;
    let all = inbox.all();
    assert_eq!(
        all.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2, 3],
        "{all:?}"
    );
    let ids: HashSet<&str> = all.iter().map(|r| r.header_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "retries keep their id");
    let id = all[0].header_id.clone();
    let record = app
        .store
        .webhook_delivery(&id)
        .await
        .expect("query")
        .expect("row");
    assert!(record.failed_at.is_some() && record.delivered_at.is_none());
    assert_eq!(record.attempts, 3);
    assert_eq!(
        record.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox.all().len(), 3, "no attempt after giving up");
    app.stop().await.expect("clean shutdown");
    receiver.stop().await;
}

fn delivery(
    id: &str,
    endpoint: &str,
    created_at: chrono::DateTime<chrono::Utc>,
) -> NewWebhookDelivery {
    NewWebhookDelivery {
        id: id.to_owned(),
        endpoint_id: endpoint.to_owned(),
        event_type: "node.down".to_owned(),
        body: format!(r#"{{"id":"{id}"}}"#),
        created_at,
    }
}

/// The outbox queries: claims are exclusive and count attempts; retry, delivered, failed,
/// release, pending counts and purge; concurrent claims never share a row.
#[tokio::test]
async fn outbox_claims_are_exclusive() {
    use chrono::{SubsecRound as _, Utc};
    for db in test_dbs().await {
        let backend = db.backend();
        let store = &db.store;
        let now = Utc::now().trunc_subsecs(6);
        let lock = Duration::from_secs(60);
        store
            .enqueue_webhooks(&[
                delivery("wh_a", "one", now - chrono::Duration::seconds(3)),
                delivery("wh_b", "one", now - chrono::Duration::seconds(2)),
                delivery("wh_c", "one", now - chrono::Duration::seconds(1)),
                delivery("wh_x", "two", now),
            ])
            .await
            .expect("enqueue");
        assert_eq!(
            store.pending_webhooks().await.expect("pending"),
            [("one".to_owned(), 3), ("two".to_owned(), 1)],
            "{backend}"
        );
        let first = store.claim_webhooks("one", lock, 2).await.expect("claim");
        let ids: Vec<&str> = first.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["wh_a", "wh_b"], "{backend}: oldest first");
        assert!(
            first
                .iter()
                .all(|c| c.attempts == 1 && c.endpoint_id == "one")
        );
        assert_eq!(first[0].body, r#"{"id":"wh_a"}"#);
        let second = store.claim_webhooks("one", lock, 10).await.expect("claim");
        assert_eq!(second.len(), 1, "{backend}: claimed rows are held");
        assert_eq!(second[0].id, "wh_c");
        assert!(
            store
                .claim_webhooks("one", lock, 10)
                .await
                .expect("claim")
                .is_empty()
        );

        // a: retry due now; b: delivered; c: given up.
        store
            .webhook_retry("wh_a", now, "HTTP 503")
            .await
            .expect("retry");
        store.webhook_delivered("wh_b").await.expect("delivered");
        store.webhook_failed("wh_c", "gone").await.expect("failed");
        let again = store.claim_webhooks("one", lock, 10).await.expect("claim");
        assert_eq!(again.len(), 1, "{backend}");
        assert_eq!((again[0].id.as_str(), again[0].attempts), ("wh_a", 2));
        let a = store
            .webhook_delivery("wh_a")
            .await
            .expect("query")
            .expect("row");
        assert_eq!(a.last_error.as_deref(), Some("HTTP 503"));
        assert!(a.locked_until.is_some_and(|t| t > now));
        store
            .release_webhooks(&["wh_a".to_owned()])
            .await
            .expect("release");
        assert_eq!(
            store.claim_webhooks("one", lock, 10).await.expect("claim")[0].attempts,
            3,
            "{backend}: released rows are due at once"
        );
        // Retries wait for their time.
        store
            .webhook_retry("wh_a", now + chrono::Duration::hours(1), "later")
            .await
            .expect("retry");
        assert!(
            store
                .claim_webhooks("one", lock, 10)
                .await
                .expect("claim")
                .is_empty()
        );
        assert_eq!(
            store.pending_webhooks().await.expect("pending"),
            [("one".to_owned(), 1), ("two".to_owned(), 1)],
            "{backend}"
        );

        // Purge: finished rows before the cut, and anything before the abandoned cut.
        let purged = store
            .purge_webhooks(
                now + chrono::Duration::seconds(1),
                now - chrono::Duration::days(1),
            )
            .await
            .expect("purge");
        assert_eq!(purged, 2, "{backend}: b and c");
        let purged = store
            .purge_webhooks(now, now - chrono::Duration::milliseconds(2500))
            .await
            .expect("purge");
        assert_eq!(purged, 1, "{backend}: a, abandoned");
        assert!(
            store
                .webhook_delivery("wh_a")
                .await
                .expect("query")
                .is_none()
        );

        // Concurrent claimers never get the same row.
        let many: Vec<NewWebhookDelivery> = (0..40)
            .map(|i| delivery(&format!("wh_m{i:02}"), "many", now))
            .collect();
        store.enqueue_webhooks(&many).await.expect("enqueue");
        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let batch = store.claim_webhooks("many", lock, 3).await.expect("claim");
                        if batch.is_empty() {
                            return got;
                        }
                        got.extend(batch.into_iter().map(|c| c.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.expect("claimer"));
        }
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 40, "{backend}: every row claimed once");
        assert_eq!(unique.len(), 40, "{backend}");
    }
}
