//! Several replicas sharing PostgreSQL and Redis: one placement per conference whatever
//! replica is asked, exactly one replica processing each node's events (node leases), shared
//! live state, and takeover when the owner dies.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use switchyard::Config;
use switchyard::events::Event;
use switchyard::live::{Change, LeaveReason};
use switchyard::nodes::NodeState;

use crate::pool::{
    add_node, drain_events, events_until, eventually, get_conference, node, pool_config,
    put_conference, sim_node_with_directory, sip_user, try_node, wait_members,
};
use crate::redis::redis_url;
use crate::support::db::{postgres, postgres_url};
use crate::support::spawn::TestApp;

fn replica_config(config: &mut Config, redis: &str, prefix: &str) {
    pool_config(config);
    config.redis.url = Some(SecretString::from(redis.to_owned()));
    config.redis.key_prefix = prefix.to_owned();
}

/// A TCP forwarder whose target can be switched: the nodes' xml_curl URL points at it, as it
/// would point at a load balancer in front of the replicas.
struct Forwarder {
    addr: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
}

impl Forwarder {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target = std::sync::Arc::new(std::sync::Mutex::new(target));
        let shared = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *shared.lock().expect("target");
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, target }
    }

    fn point_at(&self, target: std::net::SocketAddr) {
        *self.target.lock().expect("target") = target;
    }
}

fn joins(events: &[Event], user: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(e, Event::Live { change: Change::MemberJoined { member, .. } }
                if member.user_id.as_deref() == Some(user))
        })
        .count()
}

#[tokio::test]
async fn replicas_share_placements_and_process_each_node_once() {
    let (Some(redis), Some(pg)) = (redis_url(), postgres_url()) else {
        return;
    };
    let db = postgres(&pg).await;
    let prefix = format!("sy-test-{}:", uuid::Uuid::new_v4().simple());
    let mut one =
        TestApp::spawn_configured(Some(&db.url), |c| replica_config(c, &redis, &prefix)).await;
    let mut two =
        TestApp::spawn_configured(Some(&db.url), |c| replica_config(c, &redis, &prefix)).await;
    let front = Forwarder::start(one.addr).await;
    let sim = sim_node_with_directory(&format!("http://{}", front.addr), "fs-a").await;
    add_node(&one, "fs-a", &sim, json!({})).await;

    // Both replicas see the node (the second through its sync); exactly one owns it.
    let owner_is_one = eventually("one owner of fs-a", || async {
        let (a, b) = (try_node(&one, "fs-a").await?, try_node(&two, "fs-a").await?);
        (a.state == NodeState::Up && b.state == NodeState::Up && a.owned_here != b.owned_here)
            .then_some(a.owned_here)
    })
    .await;

    // Both show the owner's view of the node.
    eventually("the owner's view shared", || async {
        let (a, b) = (node(&one, "fs-a").await, node(&two, "fs-a").await);
        (a.owner.is_some()
            && a.owner == b.owner
            && a.owner_health == Some(switchyard::nodes::health::Health::Up))
        .then_some(())
    })
    .await;

    // The same conference asked of both replicas at once: one placement.
    let (r1, r2) = tokio::join!(
        put_conference(&one, "room", json!({})),
        put_conference(&two, "room", json!({}))
    );
    let statuses = [r1.status(), r2.status()];
    assert!(
        statuses.contains(&StatusCode::CREATED) && statuses.iter().all(|s| s.is_success()),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "exactly one replica placed it: {statuses:?}"
    );

    // Alice joins: both replicas show her (shared live state); one announcement in all.
    let (alice, alice_pw) = sip_user(&one, "alice").await;
    let call = sim
        .call(&alice, &alice_pw, "room", "audio")
        .await
        .expect("alice");
    wait_members(&one, "room", 1).await;
    wait_members(&two, "room", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ev1, ev2) = (drain_events(&mut one), drain_events(&mut two));
    assert_eq!(
        joins(&ev1, "alice") + joins(&ev2, "alice"),
        1,
        "one join announced across replicas"
    );

    // The owner dies; the other replica takes the node over within the lease TTL and
    // reconciles what happened meanwhile (alice left, bob joined).
    let (owner, mut survivor) = if owner_is_one { (one, two) } else { (two, one) };
    front.point_at(survivor.addr);
    owner.stop().await.expect("owner stops");
    sim.hangup(&call.uuid).await.expect("alice leaves");
    let (bob, bob_pw) = sip_user(&survivor, "bob").await;
    sim.call(&bob, &bob_pw, "room", "audio").await.expect("bob");
    eventually("takeover", || async {
        node(&survivor, "fs-a").await.owned_here.then_some(())
    })
    .await;
    let room = eventually("bob alone in room", || async {
        get_conference(&survivor, "room").await.filter(|c| {
            c.members
                .as_ref()
                .is_some_and(|m| m.len() == 1 && m[0].user_id.as_deref() == Some("bob"))
        })
    })
    .await;
    assert_eq!(room.node.id, "fs-a");
    let mut events = events_until(&mut survivor, "alice left, bob joined", |events| {
        joins(events, "bob") >= 1
            && events.iter().any(|e| matches!(e,
                Event::Live { change: Change::MemberLeft { member, reason: LeaveReason::Reconciled } }
                    if member.user_id.as_deref() == Some("alice")))
    })
    .await;
    // Room for a duplicate announcement to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    events.extend(drain_events(&mut survivor));
    assert_eq!(joins(&events, "bob"), 1, "{events:?}");
    assert_eq!(joins(&events, "alice"), 0, "alice is not announced again");

    survivor.stop().await.expect("clean shutdown");
    sim.shutdown().await;
}
