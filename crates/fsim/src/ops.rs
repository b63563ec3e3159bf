//! The node's mutable state and the operations that change it, each producing the events a
//! real node would fire, in the captured order.
//!
//! # Why a transaction
//!
//! Every change happens inside a [`Tx`]: the node state is locked, the operation appends events
//! to `out`, and the node fires them to the listeners while still holding the lock, so events
//! of concurrent operations never interleave and every listener sees one global order, as with
//! FreeSWITCH's single event dispatch thread. Work that mod_conference does *later*, in its own
//! threads (the member leaving after a kick, the floor moving after a mute), is queued in
//! `deferred` and runs at [`Tx::settle`] — after the `API` event of the command that caused it,
//! which is where the capture shows it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use esl::Event;

use crate::NodeConfig;
use crate::channel::{Channel, SipCall, l16};
use crate::conference::{
    self, Channels, Conference, ConferenceProfile, Member, SILENCE_ENERGY, TALKING_ENERGY,
};
use crate::events::{EventCtx, Origin};
use crate::node::{Call, CallError};

/// Work mod_conference does asynchronously after an api command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// The holder was muted: a talking member takes the floor.
    FloorCheck(String),
    /// A kicked / hung-up member leaves.
    Remove(String, u32),
    /// An originated leg runs `conference`: (channel, conference, profile, call-key user).
    Join(String, String, String, String),
}

/// A SIP registration (`register`), for `show registrations` / `sofia status ... reg`.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    pub user: String,
    pub realm: String,
    pub call_id: String,
    pub contact_ip: String,
    pub contact_port: u16,
    pub transport: String,
    pub user_agent: String,
    /// REGISTER time + the granted expiry (sofia stores this + 60 s late margin).
    pub expires_at: SystemTime,
    /// What sofia stores for a REGISTER over the SIP WebSocket; `None` for the UDP
    /// registrations of `SimNode::register`, whose output is fixed by the captures.
    pub ws: Option<WsBinding>,
}

/// sofia's view of a registration that came over the SIP WebSocket (always NAT for sofia;
/// see `crate::sip::registrar`).
#[derive(Clone, Debug)]
pub(crate) struct WsBinding {
    /// sofia's `contact_str`: `"" <sip:u@h.invalid;transport=ws;fs_nat=yes;fs_path=...>`.
    pub contact: String,
    /// sofia's `reg_desc`: `Registered(WS-NAT)` / `Registered(WSS-NAT)`.
    pub status: String,
    /// The granted `exptime` in seconds.
    pub exptime: u64,
}

/// Session counters for `status` and HEARTBEAT.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    /// Creation times of recent sessions (last 5 minutes).
    created: VecDeque<Instant>,
    /// (when, sessions per second) samples for the 5-minute peak.
    sps_samples: VecDeque<(Instant, u32)>,
    sps_peak: u32,
    /// (when, concurrent sessions) samples for the 5-minute peak.
    peak_samples: VecDeque<(Instant, usize)>,
    pub peak: usize,
}

const FIVE_MIN: Duration = Duration::from_secs(300);

impl Stats {
    fn session_created(&mut self) {
        let now = Instant::now();
        self.created.push_back(now);
        self.trim(now);
        let sps = self.window(now, Duration::ZERO, Duration::from_secs(1));
        self.sps_peak = self.sps_peak.max(sps);
        self.sps_samples.push_back((now, sps));
    }

    fn live_sessions(&mut self, live: usize) {
        self.peak = self.peak.max(live);
        self.peak_samples.push_back((Instant::now(), live));
    }

    fn trim(&mut self, now: Instant) {
        while self
            .created
            .front()
            .is_some_and(|t| now.duration_since(*t) > FIVE_MIN)
        {
            self.created.pop_front();
        }
        while self
            .sps_samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > FIVE_MIN)
        {
            self.sps_samples.pop_front();
        }
        while self
            .peak_samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > FIVE_MIN)
        {
            self.peak_samples.pop_front();
        }
    }

    /// Sessions created in the window `(now - to, now - from]`.
    fn window(&self, now: Instant, from: Duration, to: Duration) -> u32 {
        let n = self
            .created
            .iter()
            .filter(|t| {
                let age = now.duration_since(**t);
                age >= from && age < to
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Sessions created during the last second.
    pub fn sps_current(&self) -> u32 {
        self.window(Instant::now(), Duration::ZERO, Duration::from_secs(1))
    }

    /// Sessions created during the second before that (`Session-Per-Sec-Last`).
    pub fn sps_last(&self) -> u32 {
        self.window(
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
    }

    pub fn sps_peak(&self) -> u32 {
        self.sps_peak
    }

    pub fn sps_peak_fivemin(&self) -> u32 {
        let now = Instant::now();
        self.sps_samples
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= FIVE_MIN)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    pub fn peak_fivemin(&self, live: usize) -> usize {
        let now = Instant::now();
        self.peak_samples
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= FIVE_MIN)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
            .max(live)
    }
}

/// Everything a node knows; reset by a restart.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub core_uuid: String,
    pub started: Instant,
    pub member_seq: u32,
    pub session_seq: u64,
    pub conferences: BTreeMap<String, Conference>,
    pub channels: Channels,
    /// Channel uuids in creation order (listings).
    pub channel_order: Vec<String>,
    pub registrations: Vec<Registration>,
    pub stats: Stats,
    pub deferred: VecDeque<Deferred>,
    /// Channels removed by the current transaction (the SIP-over-WebSocket endpoint sends a
    /// BYE for those it carries); drained by `Shared::transact`.
    pub gone_channels: Vec<String>,
}

impl NodeState {
    pub fn new() -> NodeState {
        NodeState {
            core_uuid: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            member_seq: 0,
            session_seq: 0,
            conferences: BTreeMap::new(),
            channels: Channels::new(),
            channel_order: Vec::new(),
            registrations: Vec::new(),
            stats: Stats::default(),
            deferred: VecDeque::new(),
            gone_channels: Vec::new(),
        }
    }

    /// Members in all conferences.
    pub fn member_count(&self) -> usize {
        self.conferences.values().map(Conference::size).sum()
    }

    /// `Idle-CPU`: falls as the simulated load grows.
    pub fn idle_cpu(&self) -> f64 {
        let members = self.member_count() as f64;
        let channels = self.channels.len() as f64;
        (99.5 - 0.3 * members - 0.1 * channels).max(0.0)
    }

    /// Channels in creation order.
    pub fn channels_in_order(&self) -> impl Iterator<Item = &Channel> {
        self.channel_order
            .iter()
            .filter_map(|uuid| self.channels.get(uuid))
    }
}

/// A locked state plus the events the current operation produces.
pub(crate) struct Tx<'a> {
    pub st: &'a mut NodeState,
    pub cfg: &'a NodeConfig,
    pub ctx: EventCtx,
    pub out: Vec<Event>,
}

/// A member command of the conference api.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemberOp {
    Mute,
    Unmute,
    Deaf,
    Undeaf,
    Vmute,
    Unvmute,
    Kick,
    Hup,
}

impl MemberOp {
    /// The word of the api reply (`+OK <word> <id>`).
    pub fn reply_word(self) -> &'static str {
        match self {
            MemberOp::Mute => "mute",
            MemberOp::Unmute => "unmute",
            MemberOp::Deaf => "deaf",
            MemberOp::Undeaf => "undeaf",
            MemberOp::Vmute => "vmute",
            MemberOp::Unvmute => "unvmute",
            MemberOp::Kick => "kicked",
            MemberOp::Hup => "hup",
        }
    }

    fn event(self) -> (&'static str, Origin) {
        match self {
            MemberOp::Mute => ("mute-member", conference::MUTE),
            MemberOp::Unmute => ("unmute-member", conference::UNMUTE),
            MemberOp::Deaf => ("deaf-member", conference::DEAF),
            MemberOp::Undeaf => ("undeaf-member", conference::UNDEAF),
            MemberOp::Vmute => ("vmute-member", conference::VMUTE),
            MemberOp::Unvmute => ("unvmute-member", conference::UNVMUTE),
            MemberOp::Kick => ("kick-member", conference::KICK),
            MemberOp::Hup => ("hup-member", conference::HUP),
        }
    }
}

impl Tx<'_> {
    /// A new session id; counts the session for `status`/HEARTBEAT.
    pub fn new_session(&mut self) -> u64 {
        self.st.session_seq += 1;
        self.st.stats.session_created();
        self.st.session_seq
    }

    pub fn add_channel(&mut self, ch: Channel) {
        self.st.channel_order.push(ch.uuid.clone());
        self.st.channels.insert(ch.uuid.clone(), ch);
        let live = self.st.channels.len();
        self.st.stats.live_sessions(live);
    }

    fn drop_channel(&mut self, uuid: &str) -> Option<Channel> {
        self.st.channel_order.retain(|u| u != uuid);
        let ch = self.st.channels.remove(uuid);
        if ch.is_some() {
            self.st.gone_channels.push(uuid.to_owned());
        }
        ch
    }

    /// An authenticated INVITE creates its channel, which enters CS_ROUTING; refused at
    /// `max-sessions`. Returns the channel's uuid.
    pub fn admit_sofia_call(&mut self, call: SipCall) -> Result<String, CallError> {
        let max = self.cfg.max_sessions;
        if self.st.channels.len() >= max as usize {
            return Err(CallError::MaxSessions(max));
        }
        let session = self.new_session();
        let ch = Channel::sofia_routing(&self.ctx, &mut self.out, call, session);
        let uuid = ch.uuid.clone();
        self.add_channel(ch);
        Ok(uuid)
    }

    /// The routed channel `uuid` runs `answer` + `conference <name>@<profile>` and joins; a
    /// refused join (locked conference) ends the call.
    pub fn run_conference(
        &mut self,
        uuid: &str,
        name: &str,
        profile: &str,
        call_key_user: &str,
    ) -> Result<Call, CallError> {
        let ctx = self.ctx.clone();
        let Some(ch) = self.st.channels.get_mut(uuid) else {
            return Err(CallError::NoSuchChannel(uuid.to_owned()));
        };
        let destination = ch.destination().0.to_owned();
        ch.execute_conference(
            &ctx,
            &mut self.out,
            &destination,
            format!("{name}@{profile}"),
        );
        match self.join(uuid, name, profile, call_key_user) {
            Ok(member_id) => Ok(Call {
                uuid: uuid.to_owned(),
                member_id,
                conference: name.to_owned(),
            }),
            Err(e) => {
                self.abandon(uuid);
                Err(e)
            }
        }
    }

    fn profile(&self, name: &str) -> Option<ConferenceProfile> {
        self.cfg
            .conference_profiles
            .iter()
            .find(|p| p.name == name)
            .cloned()
    }

    /// The channel `uuid` joins conference `name` (created if needed) with `profile`: CODEC,
    /// [conference-create], add-member, PRESENCE_IN and, without a floor holder, floor-change.
    pub fn join(
        &mut self,
        uuid: &str,
        name: &str,
        profile: &str,
        call_key_user: &str,
    ) -> Result<u32, CallError> {
        let profile = self.profile(profile);
        let domain = self.cfg.domain.clone();
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            member_seq,
            ..
        } = &mut *self.st;
        let created = !conferences.contains_key(name);
        if created {
            let conf = Conference::new(name, &domain, profile.as_ref());
            self.out.push(conf.created_event(&ctx));
            conferences.insert(name.to_owned(), conf);
        }
        let (Some(conf), true) = (conferences.get_mut(name), channels.contains_key(uuid)) else {
            return Err(CallError::NoSuchChannel(uuid.to_owned()));
        };
        if conf.locked {
            return Err(CallError::Locked(name.to_owned()));
        }
        *member_seq += 1;
        let id = *member_seq;
        if let Some(ch) = channels.get_mut(uuid) {
            ch.set_read_codec(&ctx, &mut self.out, l16(conf.rate));
            ch.set_join_vars(
                name,
                &conf.uuid,
                id,
                created,
                l16(conf.rate),
                &format!("conference_{name}_{}_{call_key_user}", conf.domain),
            );
        }
        let member = Member::new(id, uuid.to_owned());
        conf.members.push(member.clone());
        self.out
            .push(conf.add_member_event(&ctx, &member, channels.get(uuid)));
        self.out.push(conf.presence_event(&ctx));
        if conf.floor.is_none()
            && let Some(e) = conf.set_floor(&ctx, Some(id), channels, true)
        {
            self.out.push(e);
        }
        Ok(id)
    }

    /// The conference and member id of a channel.
    pub fn membership(&self, uuid: &str) -> Result<(String, u32), CallError> {
        let ch = self
            .st
            .channels
            .get(uuid)
            .ok_or_else(|| CallError::NoSuchChannel(uuid.to_owned()))?;
        ch.member
            .clone()
            .ok_or_else(|| CallError::NotInConference(uuid.to_owned()))
    }

    /// The member starts talking (`start-talking`), taking the floor from a silent holder.
    pub fn start_talking(&mut self, uuid: &str) -> Result<(), CallError> {
        let (name, id) = self.membership(uuid)?;
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            ..
        } = &mut *self.st;
        let Some(conf) = conferences.get_mut(&name) else {
            return Err(CallError::NotInConference(uuid.to_owned()));
        };
        let Some(m) = conf.member_mut(id) else {
            return Err(CallError::NotInConference(uuid.to_owned()));
        };
        if !m.speak || m.talking {
            return Ok(());
        }
        m.talking = true;
        m.talk_started = Some(Instant::now());
        m.current_energy = TALKING_ENERGY;
        let m = m.clone();
        self.out
            .push(conf.start_talking_event(&ctx, &m, channels.get(uuid)));
        let take = match conf.floor {
            None => true,
            Some(holder) if holder == id => false,
            Some(holder) => conf.member(holder).is_none_or(|h| !(h.talking && h.speak)),
        };
        if take && let Some(e) = conf.set_floor(&ctx, Some(id), channels, true) {
            self.out.push(e);
        }
        Ok(())
    }

    /// The member stops talking (`stop-talking`); the floor stays.
    pub fn stop_talking(&mut self, uuid: &str) -> Result<(), CallError> {
        let (name, id) = self.membership(uuid)?;
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            ..
        } = &mut *self.st;
        let Some(conf) = conferences.get_mut(&name) else {
            return Err(CallError::NotInConference(uuid.to_owned()));
        };
        let Some(m) = conf.member_mut(id) else {
            return Err(CallError::NotInConference(uuid.to_owned()));
        };
        if !m.talking {
            return Ok(());
        }
        m.talking = false;
        m.last_talking = Some(Instant::now());
        m.current_energy = SILENCE_ENERGY;
        let m = m.clone();
        self.out
            .push(conf.stop_talking_event(&ctx, &m, channels.get(uuid)));
        Ok(())
    }

    /// The member becomes the loudest speaker and takes the floor.
    pub fn take_floor(&mut self, uuid: &str) -> Result<(), CallError> {
        let (name, id) = self.membership(uuid)?;
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            ..
        } = &mut *self.st;
        if let Some(conf) = conferences.get_mut(&name)
            && let Some(e) = conf.set_floor(&ctx, Some(id), channels, true)
        {
            self.out.push(e);
        }
        Ok(())
    }

    /// A member command (mute, kick, ...): the event now, the consequences deferred. Returns
    /// false when the member does not exist.
    pub fn member_op(&mut self, name: &str, id: u32, op: MemberOp) -> bool {
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            deferred,
            ..
        } = &mut *self.st;
        let Some(conf) = conferences.get_mut(name) else {
            return false;
        };
        let Some(m) = conf.member_mut(id) else {
            return false;
        };
        match op {
            MemberOp::Mute => {
                m.speak = false;
                m.talking = false;
            }
            MemberOp::Unmute => m.speak = true,
            MemberOp::Deaf => m.hear = false,
            MemberOp::Undeaf => m.hear = true,
            MemberOp::Vmute => m.vmuted = true,
            MemberOp::Unvmute => m.vmuted = false,
            MemberOp::Kick | MemberOp::Hup => {}
        }
        let m = m.clone();
        let (action, origin) = op.event();
        self.out
            .push(conf.member_event(&ctx, &m, channels.get(&m.channel), action, origin));
        match op {
            MemberOp::Mute if conf.floor == Some(id) => {
                deferred.push_back(Deferred::FloorCheck(name.to_owned()));
            }
            MemberOp::Kick | MemberOp::Hup => {
                deferred.push_back(Deferred::Remove(name.to_owned(), id));
            }
            _ => {}
        }
        true
    }

    /// Runs deferred work until none is left.
    pub fn settle(&mut self) {
        while let Some(work) = self.st.deferred.pop_front() {
            match work {
                Deferred::FloorCheck(name) => self.floor_check(&name),
                Deferred::Remove(name, id) => self.remove_member(&name, id),
                Deferred::Join(uuid, name, profile, key) => {
                    if self.join(&uuid, &name, &profile, &key).is_err() {
                        self.abandon(&uuid);
                    }
                }
            }
        }
    }

    fn floor_check(&mut self, name: &str) {
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            ..
        } = &mut *self.st;
        let Some(conf) = conferences.get_mut(name) else {
            return;
        };
        let Some(holder) = conf.floor else {
            return;
        };
        if conf.member(holder).is_some_and(|h| h.speak) {
            return;
        }
        if let Some(next) = conf.best_talker(Some(holder))
            && let Some(e) = conf.set_floor(&ctx, Some(next), channels, true)
        {
            self.out.push(e);
        }
    }

    /// A member leaves: [floor-change none/none if it held the floor], PRESENCE_IN, del-member,
    /// the channel's teardown (and its loopback peer's), then a new floor holder or the end of
    /// the conference.
    pub fn remove_member(&mut self, name: &str, id: u32) {
        let ctx = self.ctx.clone();
        let channel_uuid = {
            let NodeState {
                conferences,
                channels,
                ..
            } = &mut *self.st;
            let Some(conf) = conferences.get_mut(name) else {
                return;
            };
            let Some(pos) = conf.members.iter().position(|m| m.id == id) else {
                return;
            };
            if conf.floor == Some(id)
                && let Some(e) = conf.set_floor(&ctx, None, channels, false)
            {
                self.out.push(e);
            }
            if conf.video_floor == Some(id) {
                conf.video_floor = None;
            }
            let member = conf.members.remove(pos);
            self.out.push(conf.presence_event(&ctx));
            self.out
                .push(conf.del_member_event(&ctx, &member, channels.get(&member.channel)));
            member.channel
        };
        let peer = match self.drop_channel(&channel_uuid) {
            Some(mut ch) => {
                ch.after_conference(&ctx, &mut self.out);
                ch.peer.clone()
            }
            None => None,
        };
        if let Some(peer) = peer {
            self.peer_gone(&peer);
        }
        self.after_departure(name);
    }

    /// The other loopback leg hung up: this leg goes too.
    fn peer_gone(&mut self, uuid: &str) {
        let ctx = self.ctx.clone();
        let Some(ch) = self.st.channels.get_mut(uuid) else {
            return;
        };
        ch.peer = None;
        ch.remote_hangup(&ctx, &mut self.out);
        match ch.member.clone() {
            Some((name, id)) => self.remove_member(&name, id),
            None => {
                if let Some(mut ch) = self.drop_channel(uuid) {
                    ch.finish(&ctx, &mut self.out);
                }
            }
        }
    }

    /// After a member left: destroy an empty conference, or give the floor away.
    fn after_departure(&mut self, name: &str) {
        let ctx = self.ctx.clone();
        let NodeState {
            conferences,
            channels,
            ..
        } = &mut *self.st;
        let Some(conf) = conferences.get_mut(name) else {
            return;
        };
        if conf.members.is_empty() {
            let recordings = std::mem::take(&mut conf.recordings);
            for (i, rec) in recordings.iter().enumerate() {
                let others = recordings.len() - i - 1;
                self.out.push(conf.stop_recording_event(&ctx, rec, others));
            }
            self.out.push(conf.presence_event(&ctx));
            self.out.push(conf.destroyed_event(&ctx));
            conferences.remove(name);
            return;
        }
        if conf.floor.is_none() {
            let next = conf.best_talker(None).or(match conf.members.as_slice() {
                [only] => Some(only.id),
                _ => None,
            });
            if next.is_some()
                && let Some(e) = conf.set_floor(&ctx, next, channels, true)
            {
                self.out.push(e);
            }
        }
    }

    /// The far end hangs up `uuid` (SIP BYE).
    pub fn remote_hangup(&mut self, uuid: &str) -> Result<(), CallError> {
        let ctx = self.ctx.clone();
        let ch = self
            .st
            .channels
            .get_mut(uuid)
            .ok_or_else(|| CallError::NoSuchChannel(uuid.to_owned()))?;
        ch.remote_hangup(&ctx, &mut self.out);
        self.after_hangup(uuid);
        Ok(())
    }

    /// FreeSWITCH hangs up `uuid` with `cause` (`uuid_kill`, `hupall`).
    pub fn local_hangup(&mut self, uuid: &str, cause: &'static str) -> bool {
        let ctx = self.ctx.clone();
        let Some(ch) = self.st.channels.get_mut(uuid) else {
            return false;
        };
        ch.local_hangup(&ctx, &mut self.out, cause);
        self.after_hangup(uuid);
        true
    }

    fn after_hangup(&mut self, uuid: &str) {
        let ctx = self.ctx.clone();
        let member = self.st.channels.get(uuid).and_then(|c| c.member.clone());
        match member {
            Some((name, id)) => self.remove_member(&name, id),
            None => {
                if let Some(mut ch) = self.drop_channel(uuid) {
                    ch.finish(&ctx, &mut self.out);
                    if let Some(peer) = ch.peer.clone() {
                        self.peer_gone(&peer);
                    }
                }
            }
        }
    }

    /// A channel that never joined (locked conference): the application returns and the call
    /// ends.
    pub fn abandon(&mut self, uuid: &str) {
        let ctx = self.ctx.clone();
        if let Some(mut ch) = self.drop_channel(uuid) {
            ch.after_conference(&ctx, &mut self.out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    struct Fixture {
        st: NodeState,
        cfg: NodeConfig,
        ctx: EventCtx,
    }

    impl Fixture {
        fn new() -> Fixture {
            let st = NodeState::new();
            let ctx = EventCtx {
                core_uuid: st.core_uuid.clone(),
                hostname: "vm".into(),
                ipv4: "192.0.2.2".into(),
                ipv6: "fd00::2".into(),
                seq: Arc::new(AtomicU64::new(0)),
            };
            Fixture {
                st,
                cfg: NodeConfig::new("vm"),
                ctx,
            }
        }

        /// Runs `f` and settles, returning the events as (name or action, member id) pairs.
        fn run<R>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> R) -> (R, Vec<(String, String)>) {
            let mut tx = Tx {
                st: &mut self.st,
                cfg: &self.cfg,
                ctx: self.ctx.clone(),
                out: Vec::new(),
            };
            let r = f(&mut tx);
            tx.settle();
            let events = tx
                .out
                .iter()
                .map(|e| {
                    let what = e
                        .get("Action")
                        .or(e.event_name())
                        .unwrap_or_default()
                        .to_owned();
                    let detail = match e.get("Action") {
                        Some("floor-change") => format!(
                            "{}>{}",
                            e.get("Old-ID").unwrap_or_default(),
                            e.get("New-ID").unwrap_or_default()
                        ),
                        _ => e.get("Member-ID").unwrap_or_default().to_owned(),
                    };
                    (what, detail)
                })
                .collect();
            (r, events)
        }

        /// A loopback pair whose legs both join `conf`; returns (b, a) uuids (join order).
        fn pair(&mut self, conf: &str) -> (String, String) {
            let ((a, b), _) = self.run(|tx| {
                let ids = (tx.new_session(), tx.new_session());
                let (a, b) = Channel::loopback_pair(
                    &tx.ctx,
                    &mut tx.out,
                    conf,
                    "default",
                    ids,
                    crate::channel::L16_8K,
                );
                let (au, bu) = (a.uuid.clone(), b.uuid.clone());
                tx.add_channel(a);
                tx.add_channel(b);
                tx.join(&bu, conf, "default", "b").unwrap();
                tx.join(&au, conf, "default", "a").unwrap();
                (au, bu)
            });
            (b, a)
        }
    }

    fn has(events: &[(String, String)], what: &str, detail: &str) -> bool {
        events.iter().any(|(w, d)| w == what && d == detail)
    }

    #[test]
    fn member_ids_are_node_wide() {
        let mut f = Fixture::new();
        f.pair("1");
        f.pair("2");
        let ids: Vec<u32> =
            f.st.conferences
                .values()
                .flat_map(|c| c.members.iter().map(|m| m.id))
                .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn floor_rules() {
        let mut f = Fixture::new();
        let (m1, m2) = f.pair("3000");
        // The first member got the floor on joining.
        assert_eq!(f.st.conferences["3000"].floor, Some(1));
        // A talker takes the floor from a silent holder...
        let (_, ev) = f.run(|tx| tx.start_talking(&m2).unwrap());
        assert_eq!(
            ev,
            [
                ("start-talking".into(), "2".into()),
                ("floor-change".into(), "1>2".into())
            ]
        );
        // ...but not from a talking one.
        let (_, ev) = f.run(|tx| tx.start_talking(&m1).unwrap());
        assert_eq!(ev, [("start-talking".into(), "1".into())]);
        // Muting the holder hands the floor to the other talker, after the mute event.
        let (_, ev) = f.run(|tx| tx.member_op("3000", 2, MemberOp::Mute));
        assert_eq!(
            ev,
            [
                ("mute-member".into(), "2".into()),
                ("floor-change".into(), "2>1".into())
            ]
        );
        // A muted member's talking is not reported.
        let (_, ev) = f.run(|tx| tx.start_talking(&m2).unwrap());
        assert!(ev.is_empty());
        // The holder leaving: none/none before del-member; the last member gets it afterwards.
        let (_, ev) = f.run(|tx| tx.member_op("3000", 1, MemberOp::Kick));
        let pos = |w: &str, d: &str| ev.iter().position(|(a, b)| a == w && b == d).unwrap();
        assert!(pos("kick-member", "1") < pos("floor-change", "none>none"));
        assert!(pos("floor-change", "none>none") < pos("del-member", "1"));
        // The kicked leg's peer goes too (loopback pair), emptying the conference.
        assert!(has(&ev, "del-member", "2"));
        assert!(pos("CHANNEL_HANGUP_COMPLETE", "") < pos("conference-destroy", ""));
        assert!(f.st.conferences.is_empty());
        assert!(f.st.channels.is_empty());
    }

    #[test]
    fn holder_leaving_several_members_leaves_the_floor_empty() {
        let mut f = Fixture::new();
        let (_b1, _a1) = f.pair("3000");
        // Detach the second pair's legs from each other so one can leave alone.
        let (b2, _a2) = f.pair("3000");
        for ch in f.st.channels.values_mut() {
            ch.peer = None;
        }
        f.run(|tx| tx.take_floor(&b2).unwrap());
        assert_eq!(f.st.conferences["3000"].floor, Some(3));
        let (_, ev) = f.run(|tx| tx.remote_hangup(&b2).unwrap());
        assert!(has(&ev, "floor-change", "none>none"));
        // Three members remain and nobody talks: no new holder.
        assert_eq!(f.st.conferences["3000"].floor, None);
        assert!(
            !ev.iter()
                .any(|(w, d)| w == "floor-change" && d != "none>none")
        );
    }

    #[test]
    fn stats_count_sessions() {
        let mut f = Fixture::new();
        f.pair("1");
        assert_eq!(f.st.session_seq, 2);
        assert_eq!(f.st.stats.peak, 2);
        assert_eq!(f.st.stats.sps_current(), 2);
        assert!(f.st.idle_cpu() < 99.5);
    }
}
