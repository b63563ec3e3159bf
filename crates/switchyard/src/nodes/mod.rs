//! The pool of FreeSWITCH nodes: the only code that opens ESL connections.
//!
//! Four kinds of task keep it, all spawned on `App::tasks` and stopped by `App::shutdown`:
//!
//! 1. **sync** (one per replica, every `pool.sync_interval_secs`): reads the `nodes` table —
//!    config nodes upserted at start, nodes added through the API — and starts a supervisor for
//!    each new node, stops the supervisor of each removed one, and copies drain flags, capacity
//!    and labels. A change made through any replica reaches every replica this way.
//! 2. **lease keeper** (one per replica, every third of `pool.lease_ttl_secs`, with Redis only):
//!    claims or renews each node's lease; the holder owns the node. Without Redis this replica
//!    owns every node.
//! 3. **supervisor** (one per node, [`supervisor`]): owns the node's [`EslClient`] (reconnecting
//!    with backoff), feeds its [`health::HealthTracker`], probes it, and, while this replica owns
//!    the node, keeps its live state from events, reconciles it after every (re)connect or
//!    takeover, ends its conferences when it stays down, and reaps idle placements.
//! 4. **placement** runs in request handlers ([`Pool::place`]), reading health from here, load
//!    from the live store and the database, and claiming the conference in the database.
//!
//! Every replica keeps its own ESL connection to every node: health is judged per replica from
//! its own connection (a node this replica cannot reach is not used by it), commands can be sent
//! from any replica, and events are processed only by the owner.

pub mod health;
mod place;
pub mod placement;
mod supervisor;
mod sync;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use esl::conn::EslClient;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::NodeRecord;
use health::{DegradedReason, Health};

pub use place::{NodeRejection, PlaceError, Placed, PlacementRequest, place};
pub use supervisor::{SUBSCRIBED_EVENTS, hang_up_with};
pub use sync::start;

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

/// The state of a node as the API and metrics show it: health, unless the supervisor has
/// stopped or the node is draining (and connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Connecting,
    Up,
    Degraded,
    Down,
    Draining,
    Stopped,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        Self::Connecting,
        Self::Up,
        Self::Degraded,
        Self::Down,
        Self::Draining,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Draining => "draining",
            Self::Stopped => "stopped",
        }
    }
}

/// Everything this replica knows about one node's connection.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub state: NodeState,
    pub health: Health,
    pub degraded_reason: Option<DegradedReason>,
    pub draining: bool,
    /// Successful connections so far (1 after the first, +1 per reconnect).
    pub connections: u64,
    /// Why the connection was last lost.
    pub last_error: Option<String>,
    pub last_heartbeat: Option<Heartbeat>,
    /// Round trip of the last `api status` probe.
    pub probe_rtt: Option<Duration>,
    /// Since when the node has been down (this replica's view).
    pub down_since: Option<SystemTime>,
    /// Whether this replica owns the node (holds its lease) and processes its events.
    pub owned: bool,
    #[serde(skip)]
    pub stopped: bool,
}

/// A node of the pool: its record, connection and status.
#[derive(Debug)]
struct Entry {
    record: NodeRecord,
    client: EslClient,
    /// Cancelled to stop this node's supervisor (node removed, or its address changed).
    stop: CancellationToken,
    status: NodeStatus,
    /// Until when this replica's lease on the node is certainly valid.
    owned_until: Option<Instant>,
}

/// A request for an immediate sync, answered when it is done.
type SyncRequest = oneshot::Sender<()>;

/// How long [`Pool::sync_now`] waits for the sync task.
const SYNC_WAIT: Duration = Duration::from_secs(3);

/// The pool as this replica sees it; shared by the tasks and the request handlers.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<RwLock<BTreeMap<String, Entry>>>,
    replica_id: Arc<str>,
    /// Without Redis this replica owns every node.
    owns_all: bool,
    sync_tx: mpsc::UnboundedSender<SyncRequest>,
    sync_rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<SyncRequest>>>>,
}

impl Pool {
    pub fn new(replica_id: &str, owns_all: bool) -> Self {
        let (sync_tx, sync_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::default(),
            replica_id: replica_id.into(),
            owns_all,
            sync_tx,
            sync_rx: Arc::new(Mutex::new(Some(sync_rx))),
        }
    }

    /// Re-reads the node list now (after an API write) and waits until it is applied; returns
    /// at once when the pool is not running.
    pub async fn sync_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.sync_tx.send(tx).is_ok() {
            let _ = tokio::time::timeout(SYNC_WAIT, rx).await;
        }
    }

    /// The sync task's end of [`Pool::sync_now`] (taken once).
    fn take_sync_requests(&self) -> Option<mpsc::UnboundedReceiver<SyncRequest>> {
        match self.sync_rx.lock() {
            Ok(mut rx) => rx.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// This replica's id (the value of the leases it holds).
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Status of every node, by id.
    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.read(|map| map.values().map(|e| e.status.clone()).collect())
    }

    /// Status of one node.
    pub fn status(&self, id: &str) -> Option<NodeStatus> {
        self.read(|map| map.get(id).map(|e| e.status.clone()))
    }

    /// The record (address, capacity, labels, drain flag) of every node.
    pub fn records(&self) -> Vec<NodeRecord> {
        self.read(|map| map.values().map(|e| e.record.clone()).collect())
    }

    pub fn record(&self, id: &str) -> Option<NodeRecord> {
        self.read(|map| map.get(id).map(|e| e.record.clone()))
    }

    /// The ESL client of one node, to send `api`/`bgapi` commands.
    pub fn client(&self, id: &str) -> Option<EslClient> {
        self.read(|map| map.get(id).map(|e| e.client.clone()))
    }

    /// Ids of the nodes in the pool.
    pub fn ids(&self) -> Vec<String> {
        self.read(|map| map.keys().cloned().collect())
    }

    /// Whether this replica owns `id` at `now`.
    pub fn owns(&self, id: &str, now: Instant) -> bool {
        self.owns_all
            || self.read(|map| {
                map.get(id)
                    .and_then(|e| e.owned_until)
                    .is_some_and(|until| now < until)
            })
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<String, Entry>) -> T) -> T {
        match self.inner.read() {
            Ok(map) => f(&map),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
        match self.inner.write() {
            Ok(mut map) => f(&mut map),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut NodeStatus)) {
        self.write(|map| {
            if let Some(entry) = map.get_mut(id) {
                f(&mut entry.status);
                entry.status.state = node_state(&entry.status);
            }
        });
    }

    fn insert(&self, record: NodeRecord, client: EslClient, stop: CancellationToken) {
        let mut status = NodeStatus {
            id: record.id.clone(),
            state: NodeState::Connecting,
            health: Health::Connecting,
            degraded_reason: None,
            draining: record.draining,
            connections: 0,
            last_error: None,
            last_heartbeat: None,
            probe_rtt: None,
            down_since: None,
            owned: self.owns_all,
            stopped: false,
        };
        status.state = node_state(&status);
        self.write(|map| {
            map.insert(
                record.id.clone(),
                Entry {
                    record,
                    client,
                    stop,
                    status,
                    owned_until: None,
                },
            )
        });
    }

    /// Copies a re-read record (drain flag, capacity, labels) into the pool.
    fn refresh(&self, record: &NodeRecord) {
        self.write(|map| {
            if let Some(entry) = map.get_mut(&record.id) {
                entry.record = record.clone();
                entry.status.draining = record.draining;
                entry.status.state = node_state(&entry.status);
            }
        });
    }

    /// Removes a node and stops its supervisor.
    fn remove(&self, id: &str) -> Option<NodeRecord> {
        self.write(|map| map.remove(id)).map(|entry| {
            entry.stop.cancel();
            entry.record
        })
    }

    /// Sets the drain flag locally (the database is written by the caller); other replicas
    /// learn it at their next sync.
    pub fn set_draining(&self, id: &str, draining: bool) {
        self.write(|map| {
            if let Some(entry) = map.get_mut(id) {
                entry.record.draining = draining;
                entry.status.draining = draining;
                entry.status.state = node_state(&entry.status);
            }
        });
    }

    /// Records the outcome of a lease claim made at `claimed_at`.
    fn set_owned(&self, id: &str, owned_until: Option<Instant>) {
        self.write(|map| {
            if let Some(entry) = map.get_mut(id) {
                entry.owned_until = owned_until;
                entry.status.owned = owned_until.is_some();
            }
        });
    }
}

fn node_state(s: &NodeStatus) -> NodeState {
    if s.stopped {
        return NodeState::Stopped;
    }
    match s.health {
        Health::Up | Health::Degraded if s.draining => NodeState::Draining,
        Health::Up => NodeState::Up,
        Health::Degraded => NodeState::Degraded,
        Health::Down => NodeState::Down,
        Health::Connecting => NodeState::Connecting,
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
    fn draining_shows_only_while_connected() {
        let mut s = NodeStatus {
            id: "a".into(),
            state: NodeState::Connecting,
            health: Health::Up,
            degraded_reason: None,
            draining: true,
            connections: 1,
            last_error: None,
            last_heartbeat: None,
            probe_rtt: None,
            down_since: None,
            owned: true,
            stopped: false,
        };
        assert_eq!(node_state(&s), NodeState::Draining);
        s.health = Health::Down;
        assert_eq!(node_state(&s), NodeState::Down);
        s.stopped = true;
        assert_eq!(node_state(&s), NodeState::Stopped);
    }
}
