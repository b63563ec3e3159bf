//! A simulated FreeSWITCH node: configuration, shared state, the public control API and the
//! core's HEARTBEAT.
//!
//! # Why
//!
//! Tests and benchmarks drive nodes the way SIP phones and operators drive a real one:
//! [`SimNode::register`] and [`SimNode::call`] go through the node's mod_xml_curl directory
//! lookup (so Switchyard's directory endpoint decides who gets in), talking and hanging up fire
//! the conference events Switchyard consumes, and the fault methods (`freeze`, `restart`,
//! `drop_esl_connections`, `set_directory_delay`) reproduce the failures the orchestrator must
//! survive. One process can run many nodes (each one task per ESL connection plus an accept
//! loop and a heartbeat task).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use esl::Event;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::bus::{Bus, lock};
use crate::channel::{SipCall, SipLeg};
use crate::conference::ConferenceProfile;
use crate::directory::{
    AuthFailure, AuthorizedUser, DirectoryClient, DirectoryConfig, NodeIdentity, SipAuthRequest,
    SipMethod,
};
use crate::events::{EventCtx, at, micros};
use crate::ops::{NodeState, Registration, Tx};

/// `api version` / `FreeSWITCH-Version` of the captured build.
pub const FREESWITCH_VERSION: &str = "1.11.3-dev~64bit";

/// How a simulated node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Switchname and hostname (`FreeSWITCH-Hostname`, `FreeSWITCH-Switchname`).
    pub name: String,
    /// ESL listen address; port 0 picks a free port ([`SimNode::esl_addr`] tells which).
    pub esl_listen: SocketAddr,
    /// ESL password (`auth <password>`).
    pub password: String,
    /// Core HEARTBEAT period (switch.conf `event-heartbeat-interval`, default 20 s).
    pub heartbeat_interval: Duration,
    /// The mod_xml_curl directory binding.
    pub directory: crate::directory::DirectoryConfig,
    /// The `bindings` attribute of the `directory` binding: `directory` (default) or, to serve
    /// both sections from one URL as `bindings="directory|dialplan"` does, a list containing
    /// `dialplan` (matched by substring, as mod_xml_curl does).
    pub directory_bindings: String,
    /// A second mod_xml_curl binding for the `dialplan` section (Switchyard's
    /// `/freeswitch/dialplan`); `url: None` = no such binding. Tried after `directory` when
    /// that one binds `dialplan` too.
    pub dialplan: crate::directory::DirectoryConfig,
    /// SIP over WebSocket (sofia `ws-binding`, RFC 7118): listen address, port 0 = a free port
    /// ([`SimNode::sip_ws_addr`] tells which); `None` = no WebSocket transport.
    pub sip_ws_listen: Option<SocketAddr>,
    /// SIP domain and realm (`domain_name`, `Conference-Domain`).
    pub domain: String,
    /// `max-sessions` (`Max-Sessions`, `status`); calls beyond it are refused.
    pub max_sessions: u32,
    /// `FreeSWITCH-IPv4`.
    pub ipv4: String,
    /// `FreeSWITCH-IPv6`.
    pub ipv6: String,
    /// The sofia profile's SIP address (`sofia_profile_url`, media IP).
    pub sip_ip: String,
    /// The sofia profile's SIP port.
    pub sip_port: u16,
    /// The sofia profile name (`internal`).
    pub sip_profile: String,
    /// Conference profiles (conference.conf); others give `Conference-Profile-Name: none`.
    pub conference_profiles: Vec<ConferenceProfile>,
    /// How long a new ESL connection may wait before its first command (25 s in FreeSWITCH).
    pub auth_timeout: Duration,
    /// Per-listener event queue length (100 000 in FreeSWITCH).
    pub event_queue_len: usize,
    /// `sessions-per-second` (`max 30` in `status`).
    pub max_sps: u32,
}

impl NodeConfig {
    /// A node named `name` with FreeSWITCH's defaults: ESL on 127.0.0.1 (free port), password
    /// `ClueCon`, 20 s heartbeat, no directory binding, domain `127.0.0.1`, 1000 sessions.
    pub fn new(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            esl_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: "ClueCon".into(),
            heartbeat_interval: Duration::from_secs(20),
            directory: DirectoryConfig::default(),
            directory_bindings: "directory".into(),
            dialplan: DirectoryConfig::default(),
            sip_ws_listen: None,
            domain: "127.0.0.1".into(),
            max_sessions: 1000,
            ipv4: "127.0.0.1".into(),
            ipv6: "::1".into(),
            sip_ip: "127.0.0.1".into(),
            sip_port: crate::directory::SIP_PORT,
            sip_profile: "internal".into(),
            conference_profiles: ConferenceProfile::vanilla(),
            auth_timeout: Duration::from_secs(25),
            event_queue_len: 100_000,
            max_sps: 30,
        }
    }
}

/// Why a simulated call operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The directory refused the INVITE (a real node answers 403).
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthFailure),
    /// No channel with that `Unique-ID`.
    #[error("no such channel {0}")]
    NoSuchChannel(String),
    /// The channel is not in a conference.
    #[error("channel {0} is not in a conference")]
    NotInConference(String),
    /// `max-sessions` reached (a real node answers 503).
    #[error("maximum number of sessions ({0}) reached")]
    MaxSessions(u32),
    /// The conference is locked: the caller is turned away.
    #[error("conference {0} is locked")]
    Locked(String),
}

/// A call that joined a conference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The channel's `Unique-ID`.
    pub uuid: String,
    /// The conference `Member-ID`.
    pub member_id: u32,
    /// The conference name.
    pub conference: String,
}

/// How the simulated SIP user agent presents itself. Everything has a default; tests replaying
/// a capture set the captured values (display name, Call-ID, tags, ports, SDP).
#[derive(Clone, Debug)]
pub struct SipUa {
    /// Via transport, lowercase (`udp`, `ws`, ...).
    pub transport: String,
    /// Source address.
    pub ip: String,
    /// Source port; 0 picks one.
    pub port: u16,
    /// `User-Agent`.
    pub user_agent: String,
    /// From display name: it becomes `Caller-Caller-ID-Name` (as in the capture, where SIPp's
    /// `"Ext 1001"` wins over the directory's `effective_caller_id_name`). Without one the
    /// directory's `effective_caller_id_name` is used, else the user.
    pub display_name: Option<String>,
    /// Call-ID; `None` generates one.
    pub call_id: Option<String>,
    /// From tag; `None` generates one.
    pub from_tag: Option<String>,
    /// Via branch of the INVITE and of the ACK; `None` generates them.
    pub branches: Option<(String, String)>,
    /// RTP port of the offer; 0 picks one.
    pub rtp_port: u16,
    /// The SDP offer (`switch_r_sdp`); `None` generates one.
    pub sdp: Option<String>,
}

impl Default for SipUa {
    fn default() -> Self {
        SipUa {
            transport: "udp".into(),
            ip: "127.0.0.1".into(),
            port: 0,
            user_agent: "fsim-ua".into(),
            display_name: None,
            call_id: None,
            from_tag: None,
            branches: None,
            rtp_port: 0,
            sdp: None,
        }
    }
}

/// A node's state for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// `Core-UUID`.
    pub core_uuid: String,
    /// Time since start / restart.
    pub uptime: Duration,
    /// Live conferences, by name.
    pub conferences: Vec<ConferenceSnapshot>,
    /// Live channels, in creation order.
    pub channels: Vec<ChannelSnapshot>,
    /// Registered users (`user@realm`).
    pub registrations: Vec<String>,
    /// Open ESL connections.
    pub esl_connections: usize,
    /// Whether the node is frozen.
    pub frozen: bool,
}

/// A conference in a [`NodeSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConferenceSnapshot {
    pub name: String,
    /// `Conference-Unique-ID`.
    pub uuid: String,
    /// `Conference-Profile-Name`.
    pub profile: String,
    pub locked: bool,
    /// Audio floor holder.
    pub floor: Option<u32>,
    /// Members in join order.
    pub members: Vec<MemberSnapshot>,
    /// Active recording paths.
    pub recordings: Vec<String>,
}

/// A member in a [`ConferenceSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub id: u32,
    pub channel_uuid: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub hear: bool,
    pub speak: bool,
    pub talking: bool,
}

/// A channel in a [`NodeSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub uuid: String,
    pub name: String,
    /// `Channel-State` (`CS_EXECUTE`...).
    pub state: String,
    /// (conference, member id) while in a conference.
    pub member: Option<(String, u32)>,
}

/// Why connection tasks must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    /// `shutdown`: send the "shutting down" notice, then close.
    Shutdown,
    /// The last handle was dropped: close abruptly.
    Dropped,
}

/// What every task of a node shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: NodeConfig,
    pub state: Mutex<NodeState>,
    pub bus: Bus,
    pub seq: Arc<AtomicU64>,
    pub directory: DirectoryClient,
    pub frozen: watch::Sender<bool>,
    /// Bumped by `drop_esl_connections` / `restart`: older connections close.
    pub conn_epoch: watch::Sender<u64>,
    pub stop: watch::Sender<Stop>,
    pub heartbeat_reset: Notify,
    pub esl_addr: SocketAddr,
    /// The bound SIP-over-WebSocket address.
    pub sip_ws_addr: Option<SocketAddr>,
    /// The `dialplan` binding (unbound when `cfg.dialplan.url` is `None`).
    pub dialplan: DirectoryClient,
    /// The live SIP-over-WebSocket connections and the channels they carry.
    pub sip_ws: crate::sip::ws::Hub,
    pub connections: AtomicUsize,
    pub ua_port: AtomicU64,
}

impl Shared {
    pub fn ctx(&self, st: &NodeState) -> EventCtx {
        EventCtx {
            core_uuid: st.core_uuid.clone(),
            hostname: self.cfg.name.clone(),
            ipv4: self.cfg.ipv4.clone(),
            ipv6: self.cfg.ipv6.clone(),
            seq: Arc::clone(&self.seq),
        }
    }

    /// Runs `f` in a transaction: state locked, deferred work settled, events fired in order.
    pub fn transact<R>(&self, f: impl FnOnce(&mut Tx<'_>) -> R) -> R {
        let mut st = lock(&self.state);
        let ctx = self.ctx(&st);
        let mut tx = Tx {
            st: &mut st,
            cfg: &self.cfg,
            ctx,
            out: Vec::new(),
        };
        let r = f(&mut tx);
        tx.settle();
        let out = std::mem::take(&mut tx.out);
        let gone = std::mem::take(&mut tx.st.gone_channels);
        self.bus.fire(out);
        drop(st);
        for uuid in gone {
            self.sip_ws.channel_gone(&uuid);
        }
        r
    }

    /// The mod_xml_curl bindings that serve the `dialplan` section, in order.
    pub fn dialplan_bindings(&self) -> Vec<&DirectoryClient> {
        let mut out = Vec::new();
        if self.cfg.directory_bindings.contains("dialplan") {
            out.push(&self.directory);
        }
        if self.dialplan.is_bound() {
            out.push(&self.dialplan);
        }
        out
    }

    /// Fires events built from the current state.
    pub fn fire_with(&self, f: impl FnOnce(&EventCtx, &NodeState) -> Vec<Event>) {
        let st = lock(&self.state);
        let ctx = self.ctx(&st);
        let events = f(&ctx, &st);
        self.bus.fire(events);
    }

    pub fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
    }

    pub fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            switchname: self.cfg.name.clone(),
            core_uuid: lock(&self.state).core_uuid.clone(),
            ipv4: self.cfg.ipv4.clone(),
            ipv6: self.cfg.ipv6.clone(),
            domain: self.cfg.domain.clone(),
            sip_profile: self.cfg.sip_profile.clone(),
        }
    }

    pub fn ua_port(&self, wanted: u16) -> u16 {
        if wanted != 0 {
            return wanted;
        }
        let n = self.ua_port.fetch_add(1, Ordering::Relaxed);
        5080 + u16::try_from(n % 50_000).unwrap_or(0)
    }
}

/// Closes the node when the last [`SimNode`] clone goes away.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop.send_if_modified(|s| {
            if *s == Stop::Running {
                *s = Stop::Dropped;
                true
            } else {
                false
            }
        });
    }
}

/// A running simulated FreeSWITCH node. Cheap to clone; dropping the last clone stops it
/// (connections closed abruptly); [`SimNode::shutdown`] stops it the polite way.
#[derive(Clone, Debug)]
pub struct SimNode {
    handle: Arc<Handle>,
}

impl SimNode {
    /// Binds the ESL port and starts the node (first HEARTBEAT at once).
    pub async fn start(cfg: NodeConfig) -> std::io::Result<SimNode> {
        let listener = TcpListener::bind(cfg.esl_listen).await?;
        let esl_addr = listener.local_addr()?;
        let seq = Arc::new(AtomicU64::new(0));
        let directory =
            DirectoryClient::new(cfg.directory.clone()).with_event_sequence(Arc::clone(&seq));
        let dialplan =
            DirectoryClient::new(cfg.dialplan.clone()).with_event_sequence(Arc::clone(&seq));
        let sip_ws_listener = match cfg.sip_ws_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let sip_ws_addr = match &sip_ws_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(NodeState::new()),
            bus: Bus::default(),
            seq,
            directory,
            frozen: watch::Sender::new(false),
            conn_epoch: watch::Sender::new(0),
            stop: watch::Sender::new(Stop::Running),
            heartbeat_reset: Notify::new(),
            esl_addr,
            sip_ws_addr,
            dialplan,
            sip_ws: crate::sip::ws::Hub::default(),
            connections: AtomicUsize::new(0),
            ua_port: AtomicU64::new(0),
            cfg,
        });
        // FreeSWITCH's first HEARTBEAT fires at core startup, before any ESL client can be
        // listening: fire it here, synchronously, so no test races with it.
        heartbeat_events(&shared, false);
        tokio::spawn(crate::esl_server::accept_loop(
            Arc::downgrade(&shared),
            listener,
            shared.stop.subscribe(),
        ));
        if let Some(listener) = sip_ws_listener {
            tokio::spawn(crate::sip::ws::accept_loop(
                Arc::downgrade(&shared),
                listener,
                shared.stop.subscribe(),
            ));
            tokio::spawn(crate::sip::ws::registration_expiry_loop(
                Arc::downgrade(&shared),
                shared.stop.subscribe(),
            ));
        }
        tokio::spawn(heartbeat_loop(Arc::downgrade(&shared)));
        tracing::debug!(node = %shared.cfg.name, %esl_addr, "fsim node started");
        Ok(SimNode {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> &Arc<Shared> {
        self.shared()
    }

    /// The switchname.
    pub fn name(&self) -> &str {
        &self.shared().cfg.name
    }

    /// The bound ESL address.
    pub fn esl_addr(&self) -> SocketAddr {
        self.shared().esl_addr
    }

    /// The bound SIP-over-WebSocket address (`ws://<addr>`, subprotocol `sip`), when
    /// [`NodeConfig::sip_ws_listen`] is set.
    pub fn sip_ws_addr(&self) -> Option<SocketAddr> {
        self.shared().sip_ws_addr
    }

    /// The current `Core-UUID` (changes on restart).
    pub fn core_uuid(&self) -> String {
        lock(&self.shared().state).core_uuid.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.shared().cfg
    }

    /// The node's directory client (for counters such as
    /// [`DirectoryClient::open_auth_count`]).
    pub fn directory(&self) -> &DirectoryClient {
        &self.shared().directory
    }

    /// A digest-authenticated REGISTER over UDP (one directory lookup).
    pub async fn register(&self, user: &str, password: &str) -> Result<(), AuthFailure> {
        self.register_with(user, password, &SipUa::default()).await
    }

    /// A REGISTER from a user agent described by `ua`. Fires `sofia::pre_register`,
    /// `sofia::register_attempt`, `sofia::register` and `MESSAGE_QUERY` as captured.
    pub async fn register_with(
        &self,
        user: &str,
        password: &str,
        ua: &SipUa,
    ) -> Result<(), AuthFailure> {
        let shared = self.shared();
        let port = shared.ua_port(ua.port);
        let call_id = ua
            .call_id
            .clone()
            .unwrap_or_else(|| format!("{}@{}", random_token(12), ua.ip));
        let req = SipAuthRequest {
            method: SipMethod::Register,
            username: user.to_owned(),
            password: password.to_owned(),
            destination: None,
            transport: ua.transport.clone(),
            client_ip: ua.ip.clone(),
            client_port: port,
            call_id: call_id.clone(),
            user_agent: ua.user_agent.clone(),
        };
        let auth = shared.directory.sip_auth(&shared.identity(), &req).await?;
        let reg = Registration {
            user: user.to_owned(),
            realm: auth.domain.clone(),
            call_id,
            contact_ip: ua.ip.clone(),
            contact_port: port,
            transport: ua.transport.clone(),
            user_agent: ua.user_agent.clone(),
            expires_at: SystemTime::now() + Duration::from_secs(300),
            ws: None,
        };
        record_registration(shared, reg, &auth);
        Ok(())
    }

    /// An authenticated INVITE from `user` to extension `conference`, answered and sent into
    /// conference `conference@profile` (created by the first caller).
    pub async fn call(
        &self,
        user: &str,
        password: &str,
        conference: &str,
        profile: &str,
    ) -> Result<Call, CallError> {
        self.call_with(user, password, conference, profile, &SipUa::default())
            .await
    }

    /// [`SimNode::call`] from a user agent described by `ua`.
    pub async fn call_with(
        &self,
        user: &str,
        password: &str,
        conference: &str,
        profile: &str,
        ua: &SipUa,
    ) -> Result<Call, CallError> {
        let shared = self.shared();
        let port = shared.ua_port(ua.port);
        let call_id = ua
            .call_id
            .clone()
            .unwrap_or_else(|| format!("{}@{}", random_token(12), ua.ip));
        let req = SipAuthRequest {
            method: SipMethod::Invite,
            username: user.to_owned(),
            password: password.to_owned(),
            destination: Some(conference.to_owned()),
            transport: ua.transport.clone(),
            client_ip: ua.ip.clone(),
            client_port: port,
            call_id: call_id.clone(),
            user_agent: ua.user_agent.clone(),
        };
        let auth = shared.directory.sip_auth(&shared.identity(), &req).await?;
        let mut rng = rand::rng();
        let rtp_port = if ua.rtp_port == 0 {
            rng.random_range(8000..16000) * 2
        } else {
            ua.rtp_port
        };
        let (invite_branch, ack_branch) = ua.branches.clone().unwrap_or_else(|| {
            (
                format!("z9hG4bK{}", random_token(16)),
                format!("z9hG4bK{}", random_token(16)),
            )
        });
        let leg = SipLeg {
            user: user.to_owned(),
            domain: auth.domain.clone(),
            transport: ua.transport.clone(),
            client_ip: ua.ip.clone(),
            client_port: port,
            user_agent: ua.user_agent.clone(),
            display_name: ua.display_name.clone(),
            call_id,
            from_tag: ua.from_tag.clone().unwrap_or_else(|| random_token(10)),
            to_tag: random_token(13),
            invite_branch,
            ack_branch,
            remote_sdp: ua
                .sdp
                .clone()
                .unwrap_or_else(|| default_sdp(&ua.ip, rtp_port)),
            rtp_port,
            local_media_port: rng.random_range(8192..16384) * 2,
            ssrc: rng.random(),
            sdp_session: micros(SystemTime::now()) / 1_000_000 - rng.random_range(0..100_000),
            sip_ip: shared.cfg.sip_ip.clone(),
            sip_port: shared.cfg.sip_port,
            profile: shared.cfg.sip_profile.clone(),
            audio: crate::channel::AudioCodec::pcma(),
            local_sdp: None,
        };
        let sip_call = sip_call(leg, conference, &auth);
        shared.transact(|tx| {
            let uuid = tx.admit_sofia_call(sip_call)?;
            tx.run_conference(&uuid, conference, profile, user)
        })
    }

    /// The member on channel `channel_uuid` starts talking.
    pub async fn start_talking(&self, channel_uuid: &str) -> Result<(), CallError> {
        self.shared().transact(|tx| tx.start_talking(channel_uuid))
    }

    /// The member on channel `channel_uuid` stops talking.
    pub async fn stop_talking(&self, channel_uuid: &str) -> Result<(), CallError> {
        self.shared().transact(|tx| tx.stop_talking(channel_uuid))
    }

    /// The member on `channel_uuid` becomes the loudest speaker and takes the audio floor
    /// (FreeSWITCH moves the floor by measured energy, which fsim does not have).
    pub async fn take_floor(&self, channel_uuid: &str) -> Result<(), CallError> {
        self.shared().transact(|tx| tx.take_floor(channel_uuid))
    }

    /// The caller hangs up (SIP BYE): CHANNEL_HANGUP, the member leaves, the channel goes.
    pub async fn hangup(&self, channel_uuid: &str) -> Result<(), CallError> {
        self.shared().transact(|tx| tx.remote_hangup(channel_uuid))
    }

    /// Fault: closes every ESL connection at once, without a disconnect notice.
    pub fn drop_esl_connections(&self) {
        self.shared().conn_epoch.send_modify(|e| *e += 1);
    }

    /// Fault: the node hangs. TCP connections are still accepted (by the kernel), but nothing
    /// is read or written and no HEARTBEAT is produced until [`SimNode::unfreeze`].
    pub fn freeze(&self) {
        self.shared().frozen.send_replace(true);
    }

    /// Ends a [`SimNode::freeze`].
    pub fn unfreeze(&self) {
        self.shared().frozen.send_replace(false);
    }

    /// Fault: FreeSWITCH restarts. Connections drop, conferences and channels are gone, a new
    /// `Core-UUID`, uptime and counters (Member-ID, session ids, Event-Sequence) start over, and
    /// the first HEARTBEAT fires at once.
    pub async fn restart(&self) {
        let shared = self.shared();
        shared.conn_epoch.send_modify(|e| *e += 1);
        shared.sip_ws.close_all();
        {
            let mut st = lock(&shared.state);
            *st = NodeState::new();
            shared.seq.store(0, Ordering::Relaxed);
        }
        shared.heartbeat_reset.notify_one();
        tokio::task::yield_now().await;
    }

    /// Fault: slow xml_curl answers.
    pub fn set_directory_delay(&self, d: Duration) {
        self.shared().directory.set_delay(d);
    }

    /// The node's conferences, members and channels.
    pub fn snapshot(&self) -> NodeSnapshot {
        let shared = self.shared();
        let st = lock(&shared.state);
        let conferences = st
            .conferences
            .values()
            .map(|c| ConferenceSnapshot {
                name: c.name.clone(),
                uuid: c.uuid.clone(),
                profile: c.profile_name.clone(),
                locked: c.locked,
                floor: c.floor,
                members: c
                    .members
                    .iter()
                    .map(|m| {
                        let (name, number) = st
                            .channels
                            .get(&m.channel)
                            .map_or(("", ""), |ch| ch.caller_id());
                        MemberSnapshot {
                            id: m.id,
                            channel_uuid: m.channel.clone(),
                            caller_id_name: name.to_owned(),
                            caller_id_number: number.to_owned(),
                            hear: m.hear,
                            speak: m.speak,
                            talking: m.talking,
                        }
                    })
                    .collect(),
                recordings: c.recordings.iter().map(|r| r.path.clone()).collect(),
            })
            .collect();
        let channels = st
            .channels_in_order()
            .map(|ch| ChannelSnapshot {
                uuid: ch.uuid.clone(),
                name: ch.name.clone(),
                state: ch.running.name().to_owned(),
                member: ch.member.clone(),
            })
            .collect();
        NodeSnapshot {
            core_uuid: st.core_uuid.clone(),
            uptime: st.started.elapsed(),
            conferences,
            channels,
            registrations: st
                .registrations
                .iter()
                .map(|r| format!("{}@{}", r.user, r.realm))
                .collect(),
            esl_connections: shared.connections.load(Ordering::Relaxed),
            frozen: shared.is_frozen(),
        }
    }

    /// Runs an api command as `api <command>` would and returns its output (what the
    /// `api/response` body carries). Fires the `API` event.
    pub fn api(&self, command: &str) -> String {
        let (cmd, args) = command.split_once(' ').unwrap_or((command, ""));
        String::from_utf8_lossy(&crate::api::execute(self.shared(), cmd, args)).into_owned()
    }

    /// Stops the node: SHUTDOWN event (best effort), then every ESL connection gets the
    /// disconnect notice `The system is being shut down.` and is closed.
    pub async fn shutdown(self) {
        let shared = Arc::clone(self.shared());
        shared.fire_with(|ctx, _| {
            let mut b = ctx.event("SHUTDOWN", at("switch_core.c", "switch_core_destroy", 2955));
            b.add("Event-Info", "System Shutting Down");
            vec![b.build()]
        });
        shared.stop.send_replace(Stop::Shutdown);
        // Give the connection tasks the chance to write their notices.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while shared.connections.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The channel parameters of an authenticated INVITE from `leg` to `destination`: caller id
/// from the From display name, else the directory's `effective_caller_id_*`, else the user;
/// context from `user_context` (default `default`).
pub(crate) fn sip_call(leg: SipLeg, destination: &str, auth: &AuthorizedUser) -> SipCall {
    let var = |name: &str| {
        auth.variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let user = leg.user.clone();
    let caller_id_name = leg
        .display_name
        .clone()
        .or_else(|| var("effective_caller_id_name"))
        .unwrap_or_else(|| user.clone());
    let caller_id_number = var("effective_caller_id_number").unwrap_or_else(|| user.clone());
    let context = var("user_context").unwrap_or_else(|| "default".to_owned());
    SipCall {
        leg,
        destination: destination.to_owned(),
        context,
        caller_id_name,
        caller_id_number,
        directory_vars: auth.variables.clone(),
    }
}

/// Stores a successful REGISTER (replacing the user's previous one) and fires its events.
pub(crate) fn record_registration(shared: &Shared, reg: Registration, auth: &AuthorizedUser) {
    shared.transact(|tx| {
        tx.out
            .extend(register_events(&tx.ctx, &shared.cfg, &reg, auth));
        tx.st
            .registrations
            .retain(|r| !(r.user == reg.user && r.realm == reg.realm));
        tx.st.registrations.push(reg);
    });
}

/// A random alphanumeric token.
pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// An SDP offer like SIPp's PCMA one.
fn default_sdp(ip: &str, port: u16) -> String {
    let id: u32 = rand::rng().random_range(10_000_000..99_999_999);
    format!(
        "v=0\r\no=fsim {id} {id} IN IP4 {ip}\r\ns=fsim\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\n"
    )
}

/// The events of a successful REGISTER, as captured: `sofia::pre_register`,
/// `sofia::register_attempt`, `sofia::register`, `MESSAGE_QUERY`.
fn register_events(
    ctx: &EventCtx,
    cfg: &NodeConfig,
    reg: &Registration,
    auth: &AuthorizedUser,
) -> Vec<Event> {
    let origin = |line| at("sofia_reg.c", "sofia_reg_handle_register_token", line);
    let mut out = register_attempt_events(ctx, cfg, reg);
    let mut done = ctx.custom("sofia::register", origin(2059));
    register_common(&mut done, cfg, reg, true);
    done.add("username", &reg.user);
    done.add("realm", &reg.realm);
    done.add("user-agent", &reg.user_agent);
    crate::sip::registrar::add_user_vars(&mut done, reg, auth);
    let mut query = ctx.event("MESSAGE_QUERY", origin(2168));
    query.add(
        "Message-Account",
        &format!("sip:{}@{}", reg.user, reg.realm),
    );
    query.add("VM-Sofia-Profile", &cfg.sip_profile);
    query.add("VM-Call-ID", &reg.call_id);
    out.push(done.build());
    out.push(query.build());
    out
}

/// `sofia::pre_register` (the challenged REGISTER) and `sofia::register_attempt` (the
/// authorized one) of `sofia_reg_handle_register_token`, for a REGISTER described by `reg`
/// (an unregister has `exptime` 0).
pub(crate) fn register_attempt_events(
    ctx: &EventCtx,
    cfg: &NodeConfig,
    reg: &Registration,
) -> Vec<Event> {
    let origin = |line| at("sofia_reg.c", "sofia_reg_handle_register_token", line);
    let mut pre = ctx.custom("sofia::pre_register", origin(1810));
    register_common(&mut pre, cfg, reg, false);
    pre.add("user-agent", &reg.user_agent);
    // The directory request's REQUEST_PARAMS event takes a sequence number in between.
    ctx.next_seq();
    let mut attempt = ctx.custom("sofia::register_attempt", origin(1606));
    register_common(&mut attempt, cfg, reg, false);
    attempt.add("username", &reg.user);
    attempt.add("realm", &reg.realm);
    attempt.add("user-agent", &reg.user_agent);
    attempt.add("auth-result", "RENEWED");
    vec![pre.build(), attempt.build()]
}

/// The headers every `sofia::*register*` event of `sofia_reg_handle_register_token` starts
/// with. A WS registration carries sofia's stored contact, `reg_desc` and `exptime`
/// (`crate::sip::registrar`); the UDP ones keep the captured form.
fn register_common(
    b: &mut crate::events::EventBuilder,
    cfg: &NodeConfig,
    reg: &Registration,
    presence_hosts: bool,
) {
    let transport = reg.transport.to_ascii_uppercase();
    let (contact, status, expires) = match &reg.ws {
        Some(ws) => (ws.contact.clone(), ws.status.clone(), ws.exptime),
        None => {
            let contact = if reg.transport.eq_ignore_ascii_case("udp") {
                format!(
                    "\"\" <sip:{}@{}:{};transport={transport}>",
                    reg.user, reg.contact_ip, reg.contact_port
                )
            } else {
                format!(
                    "\"\" <sip:{}@{}:{};transport={}>",
                    reg.user,
                    reg.contact_ip,
                    reg.contact_port,
                    reg.transport.to_ascii_lowercase()
                )
            };
            (contact, format!("Registered({transport})"), 300)
        }
    };
    b.add("profile-name", &cfg.sip_profile);
    b.add("from-user", &reg.user);
    b.add("from-host", &reg.realm);
    if presence_hosts {
        b.add("presence-hosts", &format!("{0},{0}", reg.realm));
    }
    b.add("contact", &contact);
    b.add("call-id", &reg.call_id);
    b.add("rpid", "unknown");
    b.add("status", &status);
    b.add_display("expires", expires);
    b.add("to-user", &reg.user);
    b.add("to-host", &reg.realm);
    b.add("network-ip", &reg.contact_ip);
    b.add_display("network-port", reg.contact_port);
}

/// `Up-Time` / `status` wording: `0 years, 0 days, 1 hour, 2 minutes, ...`.
pub(crate) fn uptime_words(d: Duration) -> String {
    let total_us = d.as_micros();
    let us = total_us % 1000;
    let ms = (total_us / 1000) % 1000;
    let secs = d.as_secs();
    let s = secs % 60;
    let m = (secs / 60) % 60;
    let h = (secs / 3600) % 24;
    let days = (secs / 86_400) % 365;
    let years = secs / (86_400 * 365);
    let unit = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    [
        unit(years, "year"),
        unit(days, "day"),
        unit(h, "hour"),
        unit(m, "minute"),
        unit(s, "second"),
        unit(u64::try_from(ms).unwrap_or(0), "millisecond"),
        unit(u64::try_from(us).unwrap_or(0), "microsecond"),
    ]
    .join(", ")
}

/// HEARTBEAT, then RE_SCHEDULE (`Task-Desc: heartbeat`), plus the 60 s `check_ip` task's
/// RE_SCHEDULE when it is due.
fn heartbeat_events(shared: &Shared, check_ip: bool) {
    let interval = shared.cfg.heartbeat_interval;
    shared.fire_with(|ctx, st| {
        let uptime = st.started.elapsed();
        let live = st.channels.len();
        let mut b = ctx.event("HEARTBEAT", at("switch_core.c", "send_heartbeat", 95));
        b.add("Event-Info", "System Ready");
        b.add("Up-Time", &uptime_words(uptime));
        b.add("FreeSWITCH-Version", FREESWITCH_VERSION);
        b.add_display("Uptime-msec", uptime.as_millis());
        b.add_display("Session-Count", live);
        b.add_display("Max-Sessions", shared.cfg.max_sessions);
        b.add_display(
            "Session-Per-Sec",
            shared.cfg.max_sps.saturating_sub(st.stats.sps_current()),
        );
        b.add_display("Session-Per-Sec-Last", st.stats.sps_last());
        b.add_display("Session-Per-Sec-Max", st.stats.sps_peak());
        b.add_display("Session-Per-Sec-FiveMin", st.stats.sps_peak_fivemin());
        b.add_display("Session-Since-Startup", st.session_seq);
        b.add_display("Session-Peak-Max", st.stats.peak);
        b.add_display("Session-Peak-FiveMin", st.stats.peak_fivemin(live));
        b.add("Idle-CPU", &format!("{:.6}", st.idle_cpu()));
        let now = SystemTime::now();
        let epoch = micros(now) / 1_000_000;
        let reschedule = |id: u32, desc: &str, next: u64| {
            let mut r = ctx.event(
                "RE_SCHEDULE",
                at("switch_scheduler.c", "switch_scheduler_execute", 73),
            );
            r.add_display("Task-ID", id);
            r.add("Task-Desc", desc);
            r.add("Task-Group", "core");
            r.add_display("Task-Runtime", next);
            r.build()
        };
        let mut events = vec![
            b.build(),
            reschedule(1, "heartbeat", epoch + interval.as_secs().max(1)),
        ];
        if check_ip {
            events.push(reschedule(2, "check_ip", epoch + 60));
        }
        events
    });
}

async fn heartbeat_loop(shared: Weak<Shared>) {
    let Some(s) = shared.upgrade() else {
        return;
    };
    let interval = s.cfg.heartbeat_interval.max(Duration::from_millis(10));
    let mut stop = s.stop.subscribe();
    drop(s);
    let check_ip_every = Duration::from_secs(60);
    let mut check_ip_due = tokio::time::Instant::now() + check_ip_every;
    // The startup HEARTBEAT was fired by `SimNode::start`.
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let reset = {
            let Some(s) = shared.upgrade() else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next) => false,
                _ = s.heartbeat_reset.notified() => true,
                _ = stop.changed() => return,
            }
        };
        let now = tokio::time::Instant::now();
        if reset {
            check_ip_due = now + check_ip_every;
        }
        let Some(s) = shared.upgrade() else {
            return;
        };
        if *s.stop.borrow() != Stop::Running {
            return;
        }
        if !s.is_frozen() {
            let check_ip = now >= check_ip_due;
            if check_ip {
                check_ip_due += check_ip_every;
            }
            heartbeat_events(&s, check_ip);
        }
        next = now + interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_wording() {
        let d = Duration::from_micros(20_025_068);
        assert_eq!(
            uptime_words(d),
            "0 years, 0 days, 0 hours, 0 minutes, 20 seconds, 25 milliseconds, 68 microseconds"
        );
        let d = Duration::from_secs(86_400 + 3600 + 60 + 1) + Duration::from_micros(1001);
        assert_eq!(
            uptime_words(d),
            "0 years, 1 day, 1 hour, 1 minute, 1 second, 1 millisecond, 1 microsecond"
        );
    }
}
