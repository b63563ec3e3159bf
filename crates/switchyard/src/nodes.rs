//! ESL connections to FreeSWITCH nodes: the only code that opens them.
//!
//! [`start`] spawns one supervisor task per configured node on [`App::tasks`]. Each task owns an
//! [`EslClient`] in reconnecting mode (`EslClient::spawn`): the client connects, authenticates,
//! subscribes, and on any loss (socket closed, disconnect notice, no bytes and no HEARTBEAT for
//! `esl.dead_after_secs`) reconnects with exponential backoff and jitter, replaying the
//! subscription. The supervisor consumes the client's event stream and keeps a [`NodeStatus`]
//! per node in the shared [`Registry`]:
//!
//! - `Connected` → state `up` (a reconnect is logged as such: callers re-read node state then);
//! - `HEARTBEAT` → logged at info with load figures, stored as the node's last heartbeat;
//! - `Disconnected` → state `down` with the reason, logged at warn;
//! - shutdown → `exit` on the socket (bounded by a short timeout), state `stopped`.
//!
//! Events are consumed as fast as they arrive; the client applies backpressure to the socket if
//! this task falls behind, so nothing is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use esl::EventFormat;
use esl::conn::{ClientEvent, ConnectConfig, EslClient, Events};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{EslConfig, NodeConfig};

/// Events every node connection subscribes to. The client always listens for HEARTBEAT and
/// BACKGROUND_JOB itself but passes HEARTBEATs on only when asked. `CUSTOM` must come last:
/// every word after it is a subclass.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "HEARTBEAT",
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
    "CUSTOM",
    "conference::maintenance",
];

/// How long `exit` may take at shutdown before the connection is simply dropped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection state of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Never connected yet.
    Connecting,
    /// Authenticated and subscribed.
    Up,
    /// Lost; the client is reconnecting with backoff.
    Down,
    /// Shut down by us.
    Stopped,
}

/// What the last HEARTBEAT of a node said.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Heartbeat {
    pub received_at: SystemTime,
    pub core_uuid: Option<String>,
    pub version: Option<String>,
    pub uptime_msec: Option<u64>,
    pub session_count: Option<u32>,
    pub max_sessions: Option<u32>,
    pub idle_cpu: Option<f64>,
}

impl Heartbeat {
    fn from_event(event: &esl::Event, received_at: SystemTime) -> Self {
        Heartbeat {
            received_at,
            core_uuid: event.core_uuid().map(str::to_owned),
            version: event.get("FreeSWITCH-Version").map(str::to_owned),
            uptime_msec: number(event, "Uptime-msec"),
            session_count: number(event, "Session-Count"),
            max_sessions: number(event, "Max-Sessions"),
            idle_cpu: number(event, "Idle-CPU"),
        }
    }
}

fn number<T: std::str::FromStr>(event: &esl::Event, name: &str) -> Option<T> {
    event.get(name).and_then(|v| v.trim().parse().ok())
}

/// Everything known about one node's connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub state: ConnectionState,
    /// Successful connections so far (1 after the first, +1 per reconnect).
    pub connections: u64,
    /// Why the connection was last lost.
    pub last_error: Option<String>,
    pub last_heartbeat: Option<Heartbeat>,
}

/// Node statuses shared between the supervisors and request handlers.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    status: NodeStatus,
    client: EslClient,
}

impl Registry {
    /// Status of every node, by id.
    pub fn statuses(&self) -> Vec<NodeStatus> {
        match self.inner.read() {
            Ok(map) => map.values().map(|e| e.status.clone()).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .values()
                .map(|e| e.status.clone())
                .collect(),
        }
    }

    /// Status of one node.
    pub fn status(&self, id: &str) -> Option<NodeStatus> {
        self.read(|map| map.get(id).map(|e| e.status.clone()))
    }

    /// The ESL client of one node, to send `api`/`bgapi` commands.
    pub fn client(&self, id: &str) -> Option<EslClient> {
        self.read(|map| map.get(id).map(|e| e.client.clone()))
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<String, Entry>) -> T) -> T {
        match self.inner.read() {
            Ok(map) => f(&map),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut NodeStatus)) {
        let mut map = match self.inner.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(entry) = map.get_mut(id) {
            f(&mut entry.status);
        }
    }

    fn insert(&self, id: &str, client: EslClient) {
        let status = NodeStatus {
            id: id.to_owned(),
            state: ConnectionState::Connecting,
            connections: 0,
            last_error: None,
            last_heartbeat: None,
        };
        let mut map = match self.inner.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(id.to_owned(), Entry { status, client });
    }
}

/// The client configuration for one node.
pub fn connect_config(node: &NodeConfig, esl: &EslConfig) -> ConnectConfig {
    let mut config = ConnectConfig::new(node.esl_addr.clone(), node.esl_password.expose_secret());
    config.node = Some(node.id.clone());
    config.connect_timeout = esl.connect_timeout();
    config.dead_after = esl.dead_after();
    config.backoff_min = esl.backoff_min();
    config.backoff_max = esl.backoff_max();
    config.event_format = EventFormat::Plain;
    config.events = SUBSCRIBED_EVENTS.iter().map(|s| (*s).to_owned()).collect();
    config
}

/// Spawns a supervisor for every configured node on `app.tasks`; they stop when
/// `app.shutdown` is cancelled.
pub fn start(app: &App) {
    for node in &app.config.nodes {
        let (client, events) = EslClient::spawn(connect_config(node, &app.config.esl));
        app.nodes.insert(&node.id, client.clone());
        tracing::info!(node = %node.id, addr = %node.esl_addr, "connecting to FreeSWITCH node");
        let supervisor = supervise(
            node.id.clone(),
            client,
            events,
            app.nodes.clone(),
            app.shutdown.clone(),
        );
        app.tasks.spawn(supervisor);
    }
}

async fn supervise(
    id: String,
    client: EslClient,
    mut events: Events,
    registry: Registry,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.recv() => event,
        };
        let Some(event) = event else {
            tracing::warn!(node = %id, "ESL client stopped");
            break;
        };
        handle(&id, &registry, event);
    }
    // Unread events would hold the socket's reads back, and `+OK bye` with them.
    drop(events);
    // Also stops the reconnect loop of a node that is down.
    match tokio::time::timeout(EXIT_TIMEOUT, client.exit()).await {
        Ok(Ok(())) => tracing::info!(node = %id, "closed ESL connection"),
        Ok(Err(e)) => tracing::debug!(node = %id, error = %e, "ESL exit failed"),
        Err(_) => tracing::debug!(node = %id, "ESL exit timed out"),
    }
    registry.update(&id, |s| s.state = ConnectionState::Stopped);
}

fn handle(id: &str, registry: &Registry, event: ClientEvent) {
    match event {
        ClientEvent::Connected { reconnect, .. } => {
            if reconnect {
                tracing::info!(node = %id, "reconnected to FreeSWITCH node");
            } else {
                tracing::info!(node = %id, "connected to FreeSWITCH node");
            }
            registry.update(id, |s| {
                s.state = ConnectionState::Up;
                s.connections += 1;
            });
        }
        ClientEvent::Disconnected { reason } => {
            tracing::warn!(node = %id, %reason, "lost FreeSWITCH node; reconnecting");
            registry.update(id, |s| {
                s.state = ConnectionState::Down;
                s.last_error = Some(reason.to_string());
            });
        }
        ClientEvent::Event(event) => match event.event_name() {
            Some("HEARTBEAT") => {
                let hb = Heartbeat::from_event(&event, SystemTime::now());
                tracing::info!(
                    node = %id,
                    idle_cpu = hb.idle_cpu.unwrap_or(f64::NAN),
                    sessions = hb.session_count.unwrap_or(0),
                    max_sessions = hb.max_sessions.unwrap_or(0),
                    uptime_msec = hb.uptime_msec.unwrap_or(0),
                    core_uuid = hb.core_uuid.as_deref().unwrap_or(""),
                    "heartbeat"
                );
                registry.update(id, |s| s.last_heartbeat = Some(hb));
            }
            _ => {
                if let Some(conf) = event.conference() {
                    tracing::debug!(
                        node = %id,
                        conference = conf.name(),
                        action = conf.action().as_str(),
                        member_id = conf.member_id(),
                        "conference event"
                    );
                } else {
                    tracing::trace!(node = %id, event = event.event_name().unwrap_or(""), "event");
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heartbeat_fields_from_the_capture() {
        let body = bytes::Bytes::from_static(
            b"Event-Name: HEARTBEAT\nCore-UUID: 60521194-8708-47ec-8892-6f189eab12ad\nFreeSWITCH-Version: 1.11.3-dev~64bit\nUptime-msec: 20025\nSession-Count: 2\nMax-Sessions: 1000\nIdle-CPU: 98.700000\n\n",
        );
        let event = esl::Event::parse_plain(body).unwrap();
        let hb = Heartbeat::from_event(&event, SystemTime::UNIX_EPOCH);
        assert_eq!(hb.session_count, Some(2));
        assert_eq!(hb.max_sessions, Some(1000));
        assert_eq!(hb.uptime_msec, Some(20025));
        assert_eq!(hb.idle_cpu, Some(98.7));
        assert_eq!(hb.version.as_deref(), Some("1.11.3-dev~64bit"));
    }

    #[test]
    fn custom_is_last_in_the_subscription() {
        let custom = SUBSCRIBED_EVENTS
            .iter()
            .position(|e| *e == "CUSTOM")
            .unwrap();
        assert_eq!(custom, SUBSCRIBED_EVENTS.len() - 2);
    }
}
