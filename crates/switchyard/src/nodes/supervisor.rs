//! One node's supervisor: a task that owns the node's ESL client and event stream.
//!
//! It runs one loop over four inputs: client events, a tick every [`TICK`], and the results of
//! two background requests (the `api status` probe, and the `status` + `conference json_list`
//! fetch of a reconciliation). Requests run beside the loop, never inside it: an `api` reply
//! queues behind events on the socket, so waiting for it without reading events could stall the
//! connection (the client stops reading when its event buffer is full).
//!
//! - **Always** (every replica): health from connects, losses, HEARTBEATs and probes.
//! - **While this replica owns the node**: `conference::maintenance` events → [`NodeLive`] →
//!   changes written to the live store (fenced by the lease) → placements' occupancy in the
//!   database → announcements on the bus. After every (re)connect, and after taking the node
//!   over, a reconciliation reads the node back: a new Core-UUID (or, when the node does not
//!   tell it, a start time that moved) means the node restarted (its conferences end with
//!   `node_restarted`), members and conferences that are
//!   gone leave with `reconciled`, ones found are adopted. Down for longer than
//!   `pool.node_down_grace_secs`: its conferences end with `node_down`. Placements idle for
//!   `pool.idle_timeout_secs` end with `idle_timeout`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use esl::EventFormat;
use esl::conference::Action;
use esl::conn::{ClientEvent, ConnectConfig, EslClient, Events};
use secrecy::ExposeSecret as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::{Health, HealthRules, HealthTracker};
use super::{Heartbeat, Pool};
use crate::config::{EslConfig, PoolConfig};
use crate::coord::{Coord, NodeView};
use crate::events::{Bus, Event};
use crate::live::snapshot::{self, ConferenceSnapshot};
use crate::live::{Change, LeaveReason, LiveError, LiveStore, NodeLive};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::store::{Claim, EndReason, NewConference, NewStay, NodeRecord, Origin, Store};

/// Events every node connection subscribes to. The client always listens for HEARTBEAT and
/// BACKGROUND_JOB itself but passes HEARTBEATs on only when asked. `CUSTOM` must come last
/// but one: every word after it is a subclass.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "HEARTBEAT",
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
    "CUSTOM",
    "conference::maintenance",
];

/// How often time-based rules are evaluated.
const TICK: Duration = Duration::from_millis(250);
/// How long `exit` may take at shutdown before the connection is simply dropped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound of one `api` request of a probe or reconciliation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A reconciliation that failed is retried after this long.
const RECONCILE_RETRY: Duration = Duration::from_secs(2);
/// How often idle placements are looked for, at most.
const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Every 5 s, or twice per idle timeout when that is shorter.
fn reap_interval(config: &PoolConfig) -> Duration {
    REAP_INTERVAL
        .min(config.idle_timeout() / 2)
        .max(Duration::from_millis(250))
}
/// Start times (now − uptime) within this of each other are the same run of the node.
const RESTART_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// What the supervisors share (cheap clones of the `App`'s parts).
#[derive(Debug)]
pub(super) struct Ctx {
    pub pool: Pool,
    /// Redis, to share this replica's view of the nodes it owns.
    pub coord: Option<Coord>,
    pub store: Store,
    pub live: LiveStore,
    pub bus: Bus,
    pub metrics: Metrics,
    pub pool_config: PoolConfig,
    pub esl_config: EslConfig,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

/// The client configuration for one node.
pub fn connect_config(node: &NodeRecord, esl: &EslConfig) -> ConnectConfig {
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

/// Connects to `record`'s node and spawns its supervisor.
pub(super) fn spawn(ctx: &Arc<Ctx>, record: NodeRecord) {
    let (client, events) = EslClient::spawn(connect_config(&record, &ctx.esl_config));
    let stop = ctx.shutdown.child_token();
    tracing::info!(node = %record.id, addr = %record.esl_addr, "connecting to FreeSWITCH node");
    let id = record.id.clone();
    ctx.pool.insert(record, client.clone(), stop.clone());
    let rules = HealthRules {
        heartbeat_late: ctx.pool_config.heartbeat_late(),
        esl_slow: ctx.pool_config.esl_slow(),
        connecting_limit: ctx.esl_config.connect_timeout() * 2 + Duration::from_secs(1),
    };
    let now = Instant::now();
    let supervisor = Supervisor {
        ctx: Arc::clone(ctx),
        id,
        client,
        events: Some(events),
        stop,
        health: HealthTracker::new(rules, now),
        live: None,
        connected: false,
        down_handled: false,
        reconcile_due: None,
        next_probe: now + ctx.pool_config.probe_interval(),
        next_reap: now + reap_interval(&ctx.pool_config),
        next_publish: now,
        probe: None,
        fetch: None,
    };
    ctx.tasks.spawn(supervisor.run());
}

/// What a reconciliation reads from the node.
struct Fetched {
    /// `global_getvar core_uuid`: new at every start of FreeSWITCH.
    core_uuid: Option<String>,
    uptime: Duration,
    read_at: DateTime<Utc>,
    conferences: Vec<ConferenceSnapshot>,
}

struct Supervisor {
    ctx: Arc<Ctx>,
    id: String,
    client: EslClient,
    events: Option<Events>,
    stop: CancellationToken,
    health: HealthTracker,
    /// The node's live state, while this replica owns it.
    live: Option<NodeLive>,
    connected: bool,
    /// The current down episode's conferences were ended.
    down_handled: bool,
    /// When to start the next reconciliation (`None`: none needed).
    reconcile_due: Option<Instant>,
    next_probe: Instant,
    next_reap: Instant,
    /// When the owner's view of the node is next published to Redis.
    next_publish: Instant,
    probe: Option<JoinHandle<Option<Duration>>>,
    fetch: Option<JoinHandle<Result<Fetched, String>>>,
}

enum Input {
    Stop,
    Client(Option<ClientEvent>),
    Tick,
    Probe(Option<Duration>),
    Fetched(Result<Fetched, String>),
}

/// Awaits an optional background request; pending forever when there is none.
async fn join<T>(handle: &mut Option<JoinHandle<T>>) -> Option<T> {
    match handle {
        Some(h) => {
            let result = h.await.ok();
            *handle = None;
            result
        }
        None => std::future::pending().await,
    }
}

impl Supervisor {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let input = {
                let Some(events) = self.events.as_mut() else {
                    break;
                };
                tokio::select! {
                    () = self.stop.cancelled() => Input::Stop,
                    event = events.recv() => Input::Client(event),
                    _ = tick.tick() => Input::Tick,
                    Some(rtt) = join(&mut self.probe) => Input::Probe(rtt),
                    Some(fetched) = join(&mut self.fetch) => Input::Fetched(fetched),
                }
            };
            match input {
                Input::Stop => break,
                Input::Client(None) => {
                    tracing::warn!(node = %self.id, "ESL client stopped");
                    break;
                }
                Input::Client(Some(event)) => self.on_client_event(event).await,
                Input::Tick => self.on_tick().await,
                Input::Probe(rtt) => {
                    let transition = self.health.on_probe(Instant::now(), rtt);
                    self.ctx.pool.update(&self.id, |s| s.probe_rtt = rtt);
                    self.on_transition(transition);
                }
                Input::Fetched(fetched) => self.on_fetched(fetched).await,
            }
        }
        self.shut_down().await;
    }

    async fn shut_down(mut self) {
        // Stopped while the service runs: the node was removed from the pool. Its live state
        // goes with it (its placements were ended by whoever removed it).
        if !self.ctx.shutdown.is_cancelled()
            && let Some(live) = self.live.as_mut()
        {
            let changes = live.clear(LeaveReason::NodeRemoved);
            self.commit(changes, None).await;
        }
        if let Some(h) = self.probe.take() {
            h.abort();
        }
        if let Some(h) = self.fetch.take() {
            h.abort();
        }
        // Unread events would hold the socket's reads back, and `+OK bye` with them.
        drop(self.events.take());
        // Also stops the reconnect loop of a node that is down.
        match tokio::time::timeout(EXIT_TIMEOUT, self.client.exit()).await {
            Ok(Ok(())) => tracing::info!(node = %self.id, "closed ESL connection"),
            Ok(Err(e)) => tracing::debug!(node = %self.id, error = %e, "ESL exit failed"),
            Err(_) => tracing::debug!(node = %self.id, "ESL exit timed out"),
        }
        self.ctx.pool.update(&self.id, |s| s.stopped = true);
    }

    fn owns(&self, now: Instant) -> bool {
        self.ctx.pool.owns(&self.id, now)
    }

    fn on_transition(&mut self, transition: Option<(Health, Health)>) {
        let Some((from, to)) = transition else {
            return;
        };
        // Share the change at the next tick rather than at the next period.
        self.next_publish = Instant::now();
        let now = Instant::now();
        let reason = self.health.degraded_reason(now);
        match to {
            Health::Degraded => tracing::warn!(
                node = %self.id,
                reason = reason.map_or("", |r| r.as_str()),
                "node degraded: no new conferences"
            ),
            Health::Down => tracing::warn!(node = %self.id, "node down: no new conferences"),
            Health::Up if from == Health::Degraded => {
                tracing::info!(node = %self.id, "node recovered")
            }
            _ => {}
        }
        let down_since = self
            .health
            .down_for(now)
            .and_then(|d| SystemTime::now().checked_sub(d));
        self.ctx.pool.update(&self.id, |s| {
            s.health = to;
            s.degraded_reason = reason;
            s.down_since = down_since;
        });
        self.ctx.bus.publish(Event::NodeHealth {
            node: self.id.clone(),
            from,
            to,
            owner: self.ctx.pool.owns(&self.id, now),
        });
    }

    async fn on_client_event(&mut self, event: ClientEvent) {
        let now = Instant::now();
        match event {
            ClientEvent::Connected { reconnect, .. } => {
                if reconnect {
                    tracing::info!(node = %self.id, "reconnected to FreeSWITCH node");
                } else {
                    tracing::info!(node = %self.id, "connected to FreeSWITCH node");
                }
                self.connected = true;
                self.down_handled = false;
                self.ctx
                    .metrics
                    .esl_connections
                    .get_or_create(&Metrics::node(&self.id))
                    .inc();
                self.ctx.pool.update(&self.id, |s| s.connections += 1);
                let transition = self.health.on_connected(now);
                self.on_transition(transition);
                // Whatever happened while we were away must be read back.
                self.reconcile_due = Some(now);
                self.next_probe = now;
                self.maybe_start_requests(now);
            }
            ClientEvent::Disconnected { reason } => {
                tracing::warn!(node = %self.id, %reason, "lost FreeSWITCH node; reconnecting");
                self.connected = false;
                self.ctx
                    .metrics
                    .esl_disconnects
                    .get_or_create(&Metrics::node(&self.id))
                    .inc();
                self.ctx
                    .pool
                    .update(&self.id, |s| s.last_error = Some(reason.to_string()));
                let transition = self.health.on_disconnected(now);
                self.on_transition(transition);
            }
            ClientEvent::Event(event) => match event.event_name() {
                Some("HEARTBEAT") => {
                    let hb = Heartbeat::from_event(&event, SystemTime::now());
                    tracing::info!(
                        node = %self.id,
                        idle_cpu = hb.idle_cpu.unwrap_or(f64::NAN),
                        sessions = hb.session_count.unwrap_or(0),
                        max_sessions = hb.max_sessions.unwrap_or(0),
                        uptime_msec = hb.uptime_msec.unwrap_or(0),
                        core_uuid = hb.core_uuid.as_deref().unwrap_or(""),
                        "heartbeat"
                    );
                    self.ctx
                        .pool
                        .update(&self.id, |s| s.last_heartbeat = Some(hb));
                    let transition = self.health.on_heartbeat(now);
                    self.on_transition(transition);
                }
                _ => {
                    if let Some(conf) = event.conference() {
                        tracing::debug!(
                            node = %self.id,
                            conference = conf.name(),
                            action = conf.action().as_str(),
                            member_id = conf.member_id(),
                            "conference event"
                        );
                        self.take_or_drop_ownership(now).await;
                        if self.live.is_some()
                            && matches!(
                                conf.action(),
                                Action::DelMember | Action::KickMember | Action::ConferenceDestroy
                            )
                        {
                            self.load_exits(conf.name()).await;
                        }
                        if let Some(live) = self.live.as_mut() {
                            let changes = live.apply_event(&conf, Utc::now());
                            let profile = conf.profile().map(str::to_owned);
                            self.commit(changes, profile.as_deref()).await;
                        }
                    } else {
                        tracing::trace!(
                            node = %self.id,
                            event = event.event_name().unwrap_or(""),
                            "event"
                        );
                    }
                }
            },
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let transition = self.health.tick(now);
        self.on_transition(transition);
        self.take_or_drop_ownership(now).await;
        self.maybe_start_requests(now);
        if self.live.is_some() {
            if let Some(down_for) = self.health.down_for(now)
                && !self.down_handled
                && down_for >= self.ctx.pool_config.node_down_grace()
            {
                self.end_everything(LeaveReason::NodeDown, EndReason::NodeDown)
                    .await;
                self.down_handled = true;
            }
            if now >= self.next_reap {
                self.next_reap = now + reap_interval(&self.ctx.pool_config);
                self.reap_idle().await;
                self.enforce_max_duration().await;
            }
            if now >= self.next_publish {
                self.publish_view(now).await;
            }
        }
    }

    /// Shares this owner's view of the node (with Redis), every third of the lease TTL and at
    /// every transition.
    async fn publish_view(&mut self, now: Instant) {
        let Some(coord) = &self.ctx.coord else {
            return;
        };
        let ttl = self.ctx.pool_config.lease_ttl();
        self.next_publish = now + ttl / 3;
        let view = NodeView {
            owner: self.ctx.pool.replica_id().to_owned(),
            health: self.health.health(),
            degraded_reason: self.health.degraded_reason(now),
        };
        if let Err(e) = coord.publish_node_view(&self.id, &view, ttl).await {
            tracing::debug!(node = %self.id, error = %e, "cannot publish the node's health");
        }
    }

    /// Follows the lease: loads the node's live state when this replica gains it, forgets it
    /// when the replica loses it.
    async fn take_or_drop_ownership(&mut self, now: Instant) {
        let owned = self.owns(now);
        if owned && self.live.is_none() {
            match self.ctx.live.load_node(&self.id).await {
                Ok(conferences) => {
                    tracing::info!(
                        node = %self.id,
                        conferences = conferences.len(),
                        "took ownership of node; reconciling"
                    );
                    self.live = Some(NodeLive::from_parts(self.id.clone(), conferences));
                    self.reconcile_due = Some(now);
                    self.down_handled = false;
                }
                Err(e) => tracing::warn!(node = %self.id, error = %e, "cannot load live state"),
            }
        } else if !owned && self.live.is_some() {
            tracing::info!(node = %self.id, "no longer own node; another replica processes it");
            self.live = None;
        }
    }

    fn maybe_start_requests(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        if self.probe.is_none() && now >= self.next_probe {
            self.next_probe = now + self.ctx.pool_config.probe_interval();
            let client = self.client.clone();
            self.probe = Some(tokio::spawn(async move {
                let started = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, client.api("status")).await {
                    Ok(Ok(_)) => Some(started.elapsed()),
                    _ => None,
                }
            }));
        }
        if self.live.is_some()
            && self.fetch.is_none()
            && self.reconcile_due.is_some_and(|due| now >= due)
        {
            let client = self.client.clone();
            self.fetch = Some(tokio::spawn(fetch(client)));
        }
    }

    async fn on_fetched(&mut self, fetched: Result<Fetched, String>) {
        let now = Instant::now();
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(node = %self.id, error = %e, "cannot read node back; retrying");
                self.count_reconciliation("failed");
                self.reconcile_due = Some(now + RECONCILE_RETRY);
                return;
            }
        };
        if self.live.is_none() {
            return;
        }
        self.reconcile_due = None;
        let started_at = fetched.read_at
            - chrono::TimeDelta::from_std(fetched.uptime).unwrap_or(chrono::TimeDelta::MAX);
        let record = match self.ctx.store.get_node(&self.id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(node = %self.id, error = %e, "cannot read node record; retrying");
                self.reconcile_due = Some(now + RECONCILE_RETRY);
                return;
            }
        };
        // The Core-UUID decides when both are known (it does not depend on clocks); the start
        // time only when the node does not tell its Core-UUID.
        let restarted = match (
            record.as_ref().and_then(|r| r.core_uuid.as_deref()),
            fetched.core_uuid.as_deref(),
        ) {
            (Some(previous), Some(current)) => previous != current,
            _ => record
                .as_ref()
                .and_then(|r| r.started_at)
                .is_some_and(|previous| (started_at - previous).abs() > RESTART_TOLERANCE),
        };
        if restarted {
            tracing::warn!(
                node = %self.id,
                %started_at,
                "node restarted: its conferences are gone"
            );
            self.end_everything(LeaveReason::NodeRestarted, EndReason::NodeRestarted)
                .await;
        }
        if let Err(e) = self
            .ctx
            .store
            .record_node_start(&self.id, started_at, fetched.core_uuid.as_deref())
            .await
        {
            tracing::warn!(node = %self.id, error = %e, "cannot record node start time");
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let changes = live.reconcile(&fetched.conferences, fetched.read_at);
        let summary = changes.len();
        self.commit(changes, None).await;
        // Conferences found running are placed here (adopted if nobody placed them).
        for conference in &fetched.conferences {
            self.ensure_placement(&conference.name, None).await;
        }
        tracing::info!(
            node = %self.id,
            conferences = fetched.conferences.len(),
            changes = summary,
            restarted,
            "reconciled node"
        );
        self.count_reconciliation(if restarted { "restarted" } else { "ok" });
    }

    /// Copies the exits other code announced for conference `name` (uninvited, ended, …) into
    /// the live state, so the coming `del-member`s carry their reasons.
    async fn load_exits(&mut self, name: &str) {
        match self.ctx.live.take_exits(&self.id, name).await {
            Ok(exits) => {
                if let Some(live) = self.live.as_mut() {
                    for (member_id, reason) in exits {
                        live.expect_exit(name, member_id, reason);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(node = %self.id, conference = %name, error = %e, "cannot read announced exits")
            }
        }
    }

    fn count_reconciliation(&self, outcome: &str) {
        self.ctx
            .metrics
            .reconciliations
            .get_or_create(&OutcomeLabel {
                node: self.id.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Writes `changes` to the live store and, once written, updates placements and announces
    /// them. `profile`: the conference profile of the event, for adoption.
    async fn commit(&mut self, changes: Vec<Change>, profile: Option<&str>) {
        if changes.is_empty() {
            return;
        }
        let owner = self.ctx.pool.replica_id().to_owned();
        match self.ctx.live.apply(&self.id, &owner, &changes).await {
            Ok(()) => {}
            Err(LiveError::NotOwner(_)) => {
                tracing::warn!(node = %self.id, "lost the node's lease while writing; stopping");
                self.ctx.pool.set_owned(&self.id, None);
                self.live = None;
                return;
            }
            Err(e) => {
                // Not written, so not announced: read the node back once the store answers.
                tracing::error!(node = %self.id, error = %e, "cannot write live state");
                self.live = None;
                return;
            }
        }
        for change in changes {
            self.after_commit(&change, profile).await;
            self.ctx.bus.publish(Event::Live { change });
        }
    }

    async fn after_commit(&mut self, change: &Change, profile: Option<&str>) {
        match change {
            Change::ConferenceStarted { name, .. } => {
                tracing::info!(node = %self.id, conference = %name, "conference started on node");
                self.ensure_placement(name, profile).await;
            }
            Change::MemberJoined { member, reconciled } => {
                tracing::info!(
                    node = %self.id,
                    conference = %member.conference,
                    member_id = member.member_id,
                    user_id = member.user_id.as_deref().unwrap_or(""),
                    reconciled,
                    "member joined"
                );
                self.update_occupancy(&member.conference).await;
                let stay = NewStay {
                    name: &member.conference,
                    node_id: &self.id,
                    member_id: member.member_id,
                    user_id: member.user_id.as_deref(),
                    caller_id_name: &member.caller_id_name,
                    joined_at: member.joined_at,
                };
                if let Err(e) = self.ctx.store.open_stay(&stay).await {
                    tracing::warn!(node = %self.id, error = %e, "cannot record the member's stay");
                }
            }
            Change::MemberLeft { member, reason } => {
                tracing::info!(
                    node = %self.id,
                    conference = %member.conference,
                    member_id = member.member_id,
                    user_id = member.user_id.as_deref().unwrap_or(""),
                    reason = reason.as_str(),
                    "member left"
                );
                self.ctx
                    .metrics
                    .members_left
                    .get_or_create(&Metrics::reason(reason.as_str()))
                    .inc();
                self.update_occupancy(&member.conference).await;
                if let Err(e) = self
                    .ctx
                    .store
                    .close_stay(
                        &self.id,
                        &member.conference,
                        member.member_id,
                        reason.as_str(),
                        Utc::now(),
                    )
                    .await
                {
                    tracing::warn!(node = %self.id, error = %e, "cannot close the member's stay");
                }
            }
            Change::ConferenceEnded { name, reason, .. } => {
                tracing::info!(
                    node = %self.id,
                    conference = %name,
                    reason = reason.as_str(),
                    "conference ended on node"
                );
                self.update_occupancy(name).await;
            }
            Change::RecordingStarted {
                name, path, error, ..
            } => {
                tracing::info!(node = %self.id, conference = %name, path = %path, error = error.as_deref().unwrap_or(""), "recording started");
                if let Err(e) = self
                    .ctx
                    .store
                    .recording_started(&self.id, name, path, error.as_deref())
                    .await
                {
                    tracing::warn!(node = %self.id, error = %e, "cannot record the recording");
                }
            }
            Change::RecordingStopped {
                name,
                path,
                milliseconds,
                ..
            } => {
                tracing::info!(node = %self.id, conference = %name, path = %path, "recording stopped");
                if let Err(e) = self
                    .ctx
                    .store
                    .recording_stopped(&self.id, path, *milliseconds)
                    .await
                {
                    tracing::warn!(node = %self.id, error = %e, "cannot record the recording's end");
                }
            }
            Change::MemberUpdated(_) => {}
        }
    }

    /// Copies a conference's member count to its placement (busy/idle, peak).
    async fn update_occupancy(&self, name: &str) {
        let members = self
            .live
            .as_ref()
            .and_then(|l| l.conferences().get(name))
            .map_or(0, |c| u32::try_from(c.members.len()).unwrap_or(u32::MAX));
        if let Err(e) = self
            .ctx
            .store
            .set_conference_occupancy(name, &self.id, members)
            .await
        {
            tracing::warn!(node = %self.id, conference = %name, error = %e, "cannot update placement");
        }
    }

    /// Makes sure conference `name`, running on this node, is placed here: adopts it when
    /// nobody placed it; reports a conflict when it is placed on another node.
    async fn ensure_placement(&self, name: &str, profile: Option<&str>) {
        let new = NewConference {
            name: name.to_owned(),
            node_id: self.id.clone(),
            profile: profile.unwrap_or("default").to_owned(),
            labels: Default::default(),
            origin: Origin::Adopted,
            options: Default::default(),
        };
        match self.ctx.store.claim_conference(&new).await {
            Ok(Claim::Claimed(conference)) => {
                tracing::info!(
                    node = %self.id,
                    conference = %name,
                    "adopted a conference started outside Switchyard"
                );
                self.ctx.bus.publish(Event::ConferencePlaced { conference });
                self.update_occupancy(name).await;
            }
            Ok(Claim::Existing(existing)) if existing.node_id != self.id => {
                tracing::error!(
                    node = %self.id,
                    conference = %name,
                    placed_on = %existing.node_id,
                    "conference runs on a node other than its placement; members here are not \
                     part of it"
                );
            }
            Ok(Claim::Existing(_)) => self.update_occupancy(name).await,
            Err(e) => {
                tracing::warn!(node = %self.id, conference = %name, error = %e, "cannot adopt conference")
            }
        }
    }

    /// The node lost everything (down past the grace period, or restarted): members leave,
    /// the node's conferences end, and so do its placements.
    async fn end_everything(&mut self, leave: LeaveReason, end: EndReason) {
        if let Some(live) = self.live.as_mut() {
            let changes = live.clear(leave);
            self.commit(changes, None).await;
        }
        let placements = match self.ctx.store.live_conferences_on(&self.id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(node = %self.id, error = %e, "cannot end the node's conferences");
                return;
            }
        };
        for conference in placements {
            match self.ctx.store.end_conference(&conference.id, end).await {
                Ok(true) => {
                    tracing::warn!(
                        node = %self.id,
                        conference = %conference.name,
                        reason = end.as_str(),
                        "conference ended"
                    );
                    self.ctx
                        .metrics
                        .conferences_ended
                        .get_or_create(&Metrics::reason(end.as_str()))
                        .inc();
                    self.ctx.bus.publish(Event::ConferenceEnded {
                        conference,
                        reason: end,
                    });
                }
                Ok(false) => {}
                Err(e) => tracing::error!(node = %self.id, error = %e, "cannot end conference"),
            }
        }
    }

    /// Hangs up conferences past their `max_duration_secs` (counted from the first join):
    /// members leave with `duration_exceeded`, the placement ends.
    async fn enforce_max_duration(&self) {
        let placements = match self.ctx.store.live_conferences_on(&self.id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(node = %self.id, error = %e, "cannot check conference durations");
                return;
            }
        };
        let now = Utc::now();
        for conference in placements {
            let (Some(max), Some(started)) =
                (conference.options.max_duration_secs, conference.started_at)
            else {
                continue;
            };
            if now.signed_duration_since(started) < chrono::TimeDelta::seconds(max.into()) {
                continue;
            }
            tracing::info!(node = %self.id, conference = %conference.name, max_duration_secs = max, "conference reached its maximum duration");
            hang_up(
                &self.ctx,
                &self.id,
                &conference.name,
                LeaveReason::DurationExceeded,
            )
            .await;
            match self
                .ctx
                .store
                .end_conference(&conference.id, EndReason::DurationExceeded)
                .await
            {
                Ok(true) => {
                    self.ctx
                        .metrics
                        .conferences_ended
                        .get_or_create(&Metrics::reason(EndReason::DurationExceeded.as_str()))
                        .inc();
                    self.ctx.bus.publish(Event::ConferenceEnded {
                        conference,
                        reason: EndReason::DurationExceeded,
                    });
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(node = %self.id, error = %e, "cannot end conference"),
            }
        }
    }

    async fn reap_idle(&self) {
        let default = self.ctx.pool_config.idle_timeout();
        match self
            .ctx
            .store
            .end_idle_conferences(&self.id, Utc::now(), default)
            .await
        {
            Ok(ended) => {
                for conference in ended {
                    tracing::info!(
                        node = %self.id,
                        conference = %conference.name,
                        "idle conference ended"
                    );
                    self.ctx
                        .metrics
                        .conferences_ended
                        .get_or_create(&Metrics::reason(EndReason::IdleTimeout.as_str()))
                        .inc();
                    self.ctx.bus.publish(Event::ConferenceEnded {
                        conference,
                        reason: EndReason::IdleTimeout,
                    });
                }
            }
            Err(e) => tracing::warn!(node = %self.id, error = %e, "cannot reap idle conferences"),
        }
    }
}

/// Announces `reason` for every member of conference `name` on `node`, then asks the node to
/// hang them all up (`conference <name> hup all`). Best effort, bounded by [`REQUEST_TIMEOUT`],
/// run beside the caller so that a supervisor never waits on its own node's reply.
pub(crate) async fn hang_up(ctx: &Ctx, node: &str, name: &str, reason: LeaveReason) {
    hang_up_with(&ctx.live, ctx.pool.client(node), node, name, reason).await;
}

/// [`hang_up`] from parts (request handlers have no `Ctx`).
pub async fn hang_up_with(
    live: &LiveStore,
    client: Option<EslClient>,
    node: &str,
    name: &str,
    reason: LeaveReason,
) {
    match live.conference_members(node, name).await {
        Ok(members) => {
            for m in members {
                if let Err(e) = live.expect_exit(node, name, m.member_id, reason).await {
                    tracing::warn!(node, conference = name, error = %e, "cannot announce exit");
                }
            }
        }
        Err(e) => {
            tracing::warn!(node, conference = name, error = %e, "cannot list members to hang up")
        }
    }
    let Some(client) = client else {
        return;
    };
    let command = format!("conference {name} hup all");
    let (node, name) = (node.to_owned(), name.to_owned());
    tokio::spawn(async move {
        match tokio::time::timeout(REQUEST_TIMEOUT, client.api(&command)).await {
            Ok(Ok(reply)) => tracing::debug!(
                node = %node,
                conference = %name,
                reply = %String::from_utf8_lossy(&reply).trim(),
                "hung up conference"
            ),
            Ok(Err(e)) => {
                tracing::warn!(node = %node, conference = %name, error = %e, "hangup failed")
            }
            Err(_) => tracing::warn!(node = %node, conference = %name, "hangup timed out"),
        }
    });
}

/// Reads the node back: `global_getvar core_uuid`, `status` (uptime) and
/// `conference json_list`.
async fn fetch(client: EslClient) -> Result<Fetched, String> {
    let api = |command: &'static str| {
        let client = client.clone();
        async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, client.api(command)).await {
                Ok(Ok(body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
                Ok(Err(e)) => Err(format!("api {command}: {e}")),
                Err(_) => Err(format!(
                    "api {command}: no answer within {REQUEST_TIMEOUT:?}"
                )),
            }
        }
    };
    let core_uuid = api("global_getvar core_uuid").await?.trim().to_owned();
    // A UUID, or nothing (`-ERR no reply` when unset): never an error text taken for one.
    let core_uuid = (core_uuid.len() == 36
        && core_uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
    .then_some(core_uuid);
    let status = api("status").await?;
    let read_at = Utc::now();
    let uptime = snapshot::parse_status_uptime(&status).map_err(|e| e.to_string())?;
    let list = api("conference json_list").await?;
    let conferences = snapshot::parse_json_list(&list).map_err(|e| e.to_string())?;
    Ok(Fetched {
        core_uuid,
        uptime,
        read_at,
        conferences,
    })
}
