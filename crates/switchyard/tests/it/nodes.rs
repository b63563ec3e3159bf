//! The service against simulated FreeSWITCH nodes (fsim): connect, HEARTBEATs, reconnects,
//! dead-peer detection, shutdown.

use std::time::Duration;

use fsim::{NodeConfig as SimConfig, SimNode};
use secrecy::SecretString;
use switchyard::config::NodeConfig;
use switchyard::nodes::{NodeState, NodeStatus, Pool};
use switchyard::{App, Config};
use tokio::net::TcpListener;

use crate::support::spawn::{client, test_config};

async fn sim_node(name: &str) -> SimNode {
    let mut config = SimConfig::new(name);
    config.heartbeat_interval = Duration::from_millis(200);
    SimNode::start(config).await.expect("fsim node starts")
}

fn node_config(id: &str, sim: &SimNode) -> NodeConfig {
    NodeConfig {
        id: id.to_owned(),
        esl_addr: sim.esl_addr().to_string(),
        esl_password: SecretString::from("ClueCon"),
        wss_url: "wss://fs.example.com:7443".to_owned(),
        capacity: 100,
        labels: Default::default(),
    }
}

fn with_nodes(config: &mut Config, nodes: Vec<NodeConfig>) {
    config.nodes = nodes;
    config.esl.dead_after_secs = 1;
    config.esl.backoff_min_ms = 50;
    config.esl.backoff_max_ms = 200;
    config.validate().expect("valid config");
}

/// Waits until `pred` holds for node `id`, or fails with the last status seen.
async fn wait_for(registry: &Pool, id: &str, what: &str, pred: impl Fn(&NodeStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = registry.status(id);
        if status.as_ref().is_some_and(&pred) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id}: timed out waiting for {what}; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connects_to_every_node_and_records_heartbeats() {
    let (a, b) = (sim_node("fs-a").await, sim_node("fs-b").await);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    with_nodes(
        &mut config,
        vec![node_config("a", &a), node_config("b", &b)],
    );
    let app = App::build(config).await.expect("app");
    let registry = app.nodes.clone();
    let shutdown = app.shutdown.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(switchyard::run(listener, app, std::future::pending()));

    for (id, sim) in [("a", &a), ("b", &b)] {
        wait_for(&registry, id, "a heartbeat", |s| {
            s.state == NodeState::Up
                && s.last_heartbeat
                    .as_ref()
                    .is_some_and(|h| h.core_uuid.as_deref() == Some(sim.core_uuid().as_str()))
        })
        .await;
        let hb = registry
            .status(id)
            .and_then(|s| s.last_heartbeat)
            .expect("heartbeat");
        assert_eq!(hb.max_sessions, Some(1000));
        assert!(
            hb.idle_cpu.is_some_and(|cpu| (0.0..=100.0).contains(&cpu)),
            "{hb:?}"
        );
    }

    // The commands path works through the registry's client.
    let version = registry
        .client("a")
        .expect("client")
        .api("version")
        .await
        .expect("api");
    assert!(String::from_utf8_lossy(&version).starts_with("FreeSWITCH Version"));

    // /readyz reports the nodes.
    let body: serde_json::Value = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["nodes"][0]["state"], "up", "{body}");

    // Dropped connections are re-established.
    a.drop_esl_connections();
    wait_for(&registry, "a", "a reconnect", |s| {
        s.connections >= 2 && s.state == NodeState::Up
    })
    .await;

    // A frozen node (TCP open, silent) is detected as dead and reconnected once it thaws.
    b.freeze();
    wait_for(&registry, "b", "dead-peer detection", |s| {
        s.state == NodeState::Down
    })
    .await;
    b.unfreeze();
    wait_for(&registry, "b", "recovery", |s| s.state == NodeState::Up).await;

    // A restarted node (new Core-UUID) is reconnected and its new identity seen.
    a.restart().await;
    wait_for(&registry, "a", "the restarted node's heartbeat", |s| {
        s.last_heartbeat
            .as_ref()
            .is_some_and(|h| h.core_uuid.as_deref() == Some(a.core_uuid().as_str()))
    })
    .await;

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    for id in ["a", "b"] {
        assert_eq!(
            registry.status(id).map(|s| s.state),
            Some(NodeState::Stopped)
        );
    }
}

#[tokio::test]
async fn an_unreachable_node_does_not_stop_the_service() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    let mut node = node_config("gone", &sim_node("unused").await);
    node.esl_addr = format!("127.0.0.1:{port}");
    with_nodes(&mut config, vec![node]);
    let app = App::build(config).await.expect("app");
    let registry = app.nodes.clone();
    let shutdown = app.shutdown.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(switchyard::run(listener, app, std::future::pending()));

    let status = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz")
        .status();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = registry.status("gone").map(|s| s.state);
    assert!(
        matches!(state, Some(NodeState::Connecting | NodeState::Down)),
        "{state:?}"
    );
    let api = registry.client("gone").expect("client").api("status").await;
    assert!(api.is_err(), "requests to a node that is down fail fast");

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns")
        .expect("no panic");
    assert!(result.is_ok());
}
