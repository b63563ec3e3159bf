//! Simulated channels (call legs) and the `CHANNEL_*`, `CODEC` and `PRESENCE_IN` events they fire.
//!
//! # Why
//!
//! Switchyard learns about calls from channel events (`CHANNEL_CREATE`, `CHANNEL_ANSWER`,
//! `CHANNEL_HANGUP_COMPLETE` with `variable_conference_name` / `variable_conference_member_id`)
//! and from the channel block that mod_conference copies into every member event. Both must be
//! what a real node sends, so this module models a channel the way FreeSWITCH stores one:
//!
//! - a *running state* (`Channel-State`) and a *state* (`Channel-State-Number`, the state being
//!   entered), which differ for a moment at every transition (capture: `PRESENCE_IN` says
//!   `CS_ROUTING` with number 4);
//! - a call state, an answer state, a hangup cause, read/write codecs;
//! - a caller profile (`Caller-*`);
//! - an ordered variable list in which setting a variable **moves it to the end** (FreeSWITCH
//!   deletes then appends), which is why `variable_call_uuid` moves between `CHANNEL_CREATE` and
//!   `CHANNEL_EXECUTE` in the capture. The variables are set in the order the captured sofia
//!   channel shows them, so the `variable_*` headers come out in the captured order.
//!
//! A SIP leg follows the captured INVITE → answer → `conference` story
//! (esl-events-plain-all-conference-session.txt). Loopback legs (`originate loopback/...`) are
//! modelled more coarsely: their member block is exact, their own channel events carry a reduced
//! set of variables.

use std::time::SystemTime;

use esl::Event;

use crate::events::{EventBuilder, EventCtx, Origin, at, local_stamp, micros};

/// Channel states (FreeSWITCH `switch_channel_state_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    New,
    Init,
    Routing,
    Execute,
    ConsumeMedia,
    Hangup,
    Reporting,
    Destroy,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::New => "CS_NEW",
            State::Init => "CS_INIT",
            State::Routing => "CS_ROUTING",
            State::Execute => "CS_EXECUTE",
            State::ConsumeMedia => "CS_CONSUME_MEDIA",
            State::Hangup => "CS_HANGUP",
            State::Reporting => "CS_REPORTING",
            State::Destroy => "CS_DESTROY",
        }
    }

    pub fn number(self) -> u32 {
        match self {
            State::New => 0,
            State::Init => 1,
            State::Routing => 2,
            State::Execute => 4,
            State::ConsumeMedia => 7,
            State::Hangup => 10,
            State::Reporting => 11,
            State::Destroy => 12,
        }
    }
}

/// Call states (FreeSWITCH `switch_channel_callstate_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallState {
    Down,
    Ringing,
    Early,
    Active,
    Hangup,
}

impl CallState {
    pub fn name(self) -> &'static str {
        match self {
            CallState::Down => "DOWN",
            CallState::Ringing => "RINGING",
            CallState::Early => "EARLY",
            CallState::Active => "ACTIVE",
            CallState::Hangup => "HANGUP",
        }
    }

    pub fn number(self) -> u32 {
        match self {
            CallState::Down => 0,
            CallState::Ringing => 2,
            CallState::Early => 3,
            CallState::Active => 4,
            CallState::Hangup => 7,
        }
    }
}

/// A codec as the channel block reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Codec {
    pub name: &'static str,
    pub rate: u32,
    pub bit_rate: u32,
}

/// G.711 A-law, what SIPp offered in the capture.
pub(crate) const PCMA: Codec = Codec {
    name: "PCMA",
    rate: 8000,
    bit_rate: 64000,
};

/// G.711 µ-law (`CORE_PCM_MODULE`, 64 kbit/s).
pub(crate) const PCMU: Codec = Codec {
    name: "PCMU",
    rate: 8000,
    bit_rate: 64000,
};

/// mod_opus's implementation at 48 kHz: iananame `opus`, `bits_per_second` 0 (mod_opus.c
/// `mod_opus_load` registers every implementation with `bits = 0`).
pub(crate) const OPUS: Codec = Codec {
    name: "opus",
    rate: 48000,
    bit_rate: 0,
};

/// The audio codec sofia negotiated for a SIP leg: what `switch_core_media_set_codec`
/// (switch_core_media.c) writes into `rtp_use_codec_*` and the read/write codecs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AudioCodec {
    /// The read/write codec implementation.
    pub codec: Codec,
    /// Payload type (`rtp_audio_recv_pt`, `rtp_use_pt`).
    pub pt: u8,
    /// `codec_ms`.
    pub ptime: u32,
    /// `channels` of the payload map.
    pub channels: u32,
    /// The remote fmtp (`rtp_use_codec_fmtp`; empty: not set).
    pub fmtp: String,
}

impl AudioCodec {
    /// What SIPp's PCMA offer negotiates (the capture).
    pub fn pcma() -> AudioCodec {
        AudioCodec {
            codec: PCMA,
            pt: 8,
            ptime: 20,
            channels: 1,
            fmtp: String::new(),
        }
    }

    /// The codec of an SDP answer's audio choice (`pt`, rtpmap `encoding`, the offer's fmtp
    /// and `a=ptime`), as `switch_core_media_negotiate_sdp` sets the payload map up: rate =
    /// the implementation's actual rate, `codec_ms` = `a=ptime` else the 20 ms default, and
    /// for opus 1 channel unless the fmtp says `stereo=1` (whatever the rtpmap's `/2`).
    /// `None` for a codec fsim's answer never picks.
    pub fn negotiated(
        pt: &str,
        encoding: &str,
        fmtp: Option<&str>,
        ptime: Option<u32>,
    ) -> Option<AudioCodec> {
        let mut parts = encoding.split('/');
        let name = parts.next().unwrap_or_default();
        let rtpmap_channels = parts.nth(1).and_then(|c| c.trim().parse().ok());
        let fmtp = fmtp.unwrap_or_default().to_owned();
        let (codec, channels) = match name.to_ascii_lowercase().as_str() {
            "opus" => {
                let stereo = fmtp.to_ascii_lowercase().contains("stereo=1");
                (OPUS, if stereo { 2 } else { 1 })
            }
            "pcmu" => (PCMU, rtpmap_channels.unwrap_or(1)),
            "pcma" => (PCMA, rtpmap_channels.unwrap_or(1)),
            _ => return None,
        };
        Some(AudioCodec {
            codec,
            pt: pt.trim().parse().ok()?,
            ptime: ptime.filter(|p| *p > 0).unwrap_or(20),
            channels,
            fmtp,
        })
    }

    /// `rtp_last_audio_codec_string`: `%s@%dh@%di@%dc`.
    pub fn last_codec_string(&self) -> String {
        format!(
            "{}@{}h@{}i@{}c",
            self.codec.name, self.codec.rate, self.ptime, self.channels
        )
    }
}

/// Signed linear, what mod_conference reads at an 8 kHz conference.
pub(crate) const L16_8K: Codec = Codec {
    name: "L16",
    rate: 8000,
    bit_rate: 128000,
};

/// Signed linear at a conference's rate.
pub(crate) fn l16(rate: u32) -> Codec {
    Codec {
        name: "L16",
        rate,
        bit_rate: rate.saturating_mul(16),
    }
}

/// What kind of leg a channel is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An inbound SIP call through the sofia profile.
    Sofia(Box<SipLeg>),
    /// `loopback/<dest>-a`: the outbound leg of an originate.
    LoopbackA,
    /// `loopback/<dest>-b`: the leg that runs the dialplan.
    LoopbackB,
}

/// The SIP side of an inbound call, as the user agent presented it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SipLeg {
    pub user: String,
    pub domain: String,
    pub transport: String,
    pub client_ip: String,
    pub client_port: u16,
    pub user_agent: String,
    pub display_name: Option<String>,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub invite_branch: String,
    pub ack_branch: String,
    pub remote_sdp: String,
    pub rtp_port: u16,
    pub local_media_port: u16,
    pub ssrc: u32,
    pub sdp_session: u64,
    pub sip_ip: String,
    pub sip_port: u16,
    pub profile: String,
    /// The negotiated audio codec (PCMA for SIPp's offer).
    pub audio: AudioCodec,
    /// The SDP answer sent (`rtp_local_sdp_str`); `None`: the SIPp-style PCMA answer.
    pub local_sdp: Option<String>,
}

/// The caller profile (`Caller-*` headers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CallerProfile {
    pub direction: &'static str,
    pub username: String,
    pub dialplan: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub orig_caller_id_name: String,
    pub orig_caller_id_number: String,
    pub callee_id_name: String,
    pub callee_id_number: String,
    pub network_addr: String,
    pub ani: String,
    pub destination_number: String,
    pub source: &'static str,
    pub context: String,
    pub created: u64,
    pub answered: u64,
    pub progress_media: u64,
    pub hangup: u64,
}

/// Ordered channel variables: setting one moves it to the end, as in FreeSWITCH.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Vars(Vec<(String, String)>);

impl Vars {
    /// Sets (and moves to the end) `name`; an empty value unsets it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.del(name);
        let value = value.into();
        if !value.is_empty() {
            self.0.push((name.to_owned(), value));
        }
    }

    pub fn del(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A simulated channel.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub uuid: String,
    pub name: String,
    pub kind: Kind,
    pub direction: &'static str,
    pub hit_dialplan: bool,
    pub running: State,
    pub state: State,
    pub callstate: CallState,
    pub answer_state: &'static str,
    pub hangup_cause: Option<&'static str>,
    /// True when the far end ended the call (BYE received), false when FreeSWITCH did.
    pub hangup_by_peer: bool,
    pub read_codec: Option<Codec>,
    pub write_codec: Option<Codec>,
    pub profile: Option<CallerProfile>,
    pub vars: Vars,
    pub session_id: u64,
    pub created: SystemTime,
    pub answered: Option<SystemTime>,
    pub hangup_at: Option<SystemTime>,
    /// `event_count` of the channel's own PRESENCE_IN events.
    pub presence_count: u32,
    /// The `conference` application: (`Application-UUID`, data `name@profile`).
    pub conference_app: Option<(String, String)>,
    /// The `answer` application's `Application-UUID`.
    pub answer_app: String,
    /// (conference name, member id) while in a conference.
    pub member: Option<(String, u32)>,
    /// The other loopback leg.
    pub peer: Option<String>,
}

/// Which codec change a CODEC event reports (they come from different functions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CodecChange {
    /// The endpoint's codec, set once media is negotiated.
    RealRead,
    /// A temporary read codec (mod_conference's L16, and back).
    Read,
    /// The write codec.
    Write,
}

/// Which extended data an event gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Channel block and caller profile (`switch_channel_event_set_basic_data`).
    Basic,
    /// Plus every variable (`switch_channel_event_set_data` for the event types FreeSWITCH
    /// lists: CREATE, ANSWER, PROGRESS_MEDIA, EXECUTE(_COMPLETE), HANGUP(_COMPLETE), DESTROY...).
    WithVars,
}

const STATE_ORIGIN: Origin = at(
    "switch_channel.c",
    "switch_channel_perform_set_running_state",
    2409,
);
const CALLSTATE_ORIGIN: Origin = at(
    "switch_channel.c",
    "switch_channel_perform_set_callstate",
    302,
);
const EXECUTE_ORIGIN: Origin = at("switch_core_session.c", "switch_core_session_exec", 2949);
const EXECUTE_COMPLETE_ORIGIN: Origin =
    at("switch_core_session.c", "switch_core_session_exec", 2972);
const PRESENCE_ORIGIN: Origin = at("switch_channel.c", "switch_channel_perform_presence", 806);

/// The SIP-call parameters needed to create a sofia channel.
#[derive(Clone, Debug)]
pub(crate) struct SipCall {
    pub leg: SipLeg,
    pub destination: String,
    pub context: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub directory_vars: Vec<(String, String)>,
}

impl Channel {
    fn base(uuid: String, name: String, kind: Kind, direction: &'static str) -> Channel {
        Channel {
            uuid,
            name,
            kind,
            direction,
            hit_dialplan: true,
            running: State::New,
            state: State::New,
            callstate: CallState::Down,
            answer_state: "ringing",
            hangup_cause: None,
            hangup_by_peer: false,
            read_codec: None,
            write_codec: None,
            profile: None,
            vars: Vars::default(),
            session_id: 0,
            created: SystemTime::now(),
            answered: None,
            hangup_at: None,
            presence_count: 0,
            conference_app: None,
            answer_app: uuid::Uuid::new_v4().to_string(),
            member: None,
            peer: None,
        }
    }

    /// The SIP leg, for sofia channels.
    pub fn sip(&self) -> Option<&SipLeg> {
        match &self.kind {
            Kind::Sofia(leg) => Some(leg),
            _ => None,
        }
    }

    /// Caller-id name and number for listings (`conference list`, `show channels`).
    pub fn caller_id(&self) -> (&str, &str) {
        match &self.profile {
            Some(p) => (&p.caller_id_name, &p.caller_id_number),
            None => ("", ""),
        }
    }

    /// The `Channel-Presence-ID` / `presence_id` variable.
    pub fn presence_id(&self) -> Option<&str> {
        self.vars.get("presence_id")
    }

    /// Appends the channel block (and caller profile) FreeSWITCH's
    /// `switch_channel_event_set_basic_data` writes.
    pub fn add_basic(&self, b: &mut EventBuilder) {
        b.add("Channel-State", self.running.name());
        b.add("Channel-Call-State", self.callstate.name());
        b.add_display("Channel-State-Number", self.state.number());
        b.add("Channel-Name", &self.name);
        b.add("Unique-ID", &self.uuid);
        b.add("Call-Direction", self.direction);
        b.add("Presence-Call-Direction", self.direction);
        b.add_bool("Channel-HIT-Dialplan", self.hit_dialplan);
        if let Some(presence) = self.presence_id() {
            b.add("Channel-Presence-ID", presence);
        }
        b.add("Channel-Call-UUID", &self.uuid);
        b.add("Answer-State", self.answer_state);
        if let Some(cause) = self.hangup_cause {
            b.add("Hangup-Cause", cause);
        }
        if let Some(c) = self.read_codec {
            b.add("Channel-Read-Codec-Name", c.name);
            b.add_display("Channel-Read-Codec-Rate", c.rate);
            b.add_display("Channel-Read-Codec-Bit-Rate", c.bit_rate);
        }
        if let Some(c) = self.write_codec {
            b.add("Channel-Write-Codec-Name", c.name);
            b.add_display("Channel-Write-Codec-Rate", c.rate);
            b.add_display("Channel-Write-Codec-Bit-Rate", c.bit_rate);
        }
        if let Some(p) = &self.profile {
            self.add_profile(b, p);
        }
    }

    fn add_profile(&self, b: &mut EventBuilder, p: &CallerProfile) {
        self.add_profile_prefixed(b, p, "Caller");
    }

    /// `switch_caller_profile_event_set_data` with `prefix` (`Caller`, `Hunt`).
    fn add_profile_prefixed(&self, b: &mut EventBuilder, p: &CallerProfile, prefix: &str) {
        let mut b = Prefixed { b, prefix };
        b.add("Caller-Direction", p.direction);
        b.add("Caller-Logical-Direction", p.direction);
        b.add("Caller-Username", &p.username);
        b.add("Caller-Dialplan", &p.dialplan);
        b.add("Caller-Caller-ID-Name", &p.caller_id_name);
        b.add("Caller-Caller-ID-Number", &p.caller_id_number);
        b.add("Caller-Orig-Caller-ID-Name", &p.orig_caller_id_name);
        b.add("Caller-Orig-Caller-ID-Number", &p.orig_caller_id_number);
        b.add("Caller-Callee-ID-Name", &p.callee_id_name);
        b.add("Caller-Callee-ID-Number", &p.callee_id_number);
        b.add("Caller-Network-Addr", &p.network_addr);
        b.add("Caller-ANI", &p.ani);
        b.add("Caller-Destination-Number", &p.destination_number);
        b.add("Caller-Unique-ID", &self.uuid);
        b.add("Caller-Source", p.source);
        b.add("Caller-Context", &p.context);
        b.add("Caller-Channel-Name", &self.name);
        b.add("Caller-Profile-Index", "1");
        b.add_display("Caller-Profile-Created-Time", p.created);
        b.add_display("Caller-Channel-Created-Time", p.created);
        b.add_display("Caller-Channel-Answered-Time", p.answered);
        b.add("Caller-Channel-Progress-Time", "0");
        b.add_display("Caller-Channel-Progress-Media-Time", p.progress_media);
        b.add_display("Caller-Channel-Hangup-Time", p.hangup);
        for name in [
            "Caller-Channel-Transfer-Time",
            "Caller-Channel-Resurrect-Time",
            "Caller-Channel-Bridged-Time",
            "Caller-Channel-Last-Hold",
            "Caller-Channel-Hold-Accum",
        ] {
            b.add(name, "0");
        }
        b.add("Caller-Screen-Bit", "true");
        b.add("Caller-Privacy-Hide-Name", "false");
        b.add("Caller-Privacy-Hide-Number", "false");
    }
}

/// Writes `Caller-*` header names with another prefix.
struct Prefixed<'a> {
    b: &'a mut EventBuilder,
    prefix: &'a str,
}

impl Prefixed<'_> {
    fn name(&self, name: &str) -> String {
        match name.strip_prefix("Caller-") {
            Some(rest) => format!("{}-{rest}", self.prefix),
            None => name.to_owned(),
        }
    }

    fn add(&mut self, name: &str, value: &str) {
        let name = self.name(name);
        self.b.add(&name, value);
    }

    fn add_display(&mut self, name: &str, value: impl std::fmt::Display) {
        let name = self.name(name);
        self.b.add_display(&name, value);
    }
}

impl Channel {
    fn add_vars(&self, b: &mut EventBuilder) {
        for (name, value) in self.vars.iter() {
            b.add(&format!("variable_{name}"), value);
        }
    }

    fn event(&self, ctx: &EventCtx, name: &str, origin: Origin, data: Data) -> EventBuilder {
        let mut b = ctx.event(name, origin);
        self.add_basic(&mut b);
        if data == Data::WithVars {
            self.add_vars(&mut b);
        }
        b
    }

    fn state_event(&self, ctx: &EventCtx) -> Event {
        self.event(ctx, "CHANNEL_STATE", STATE_ORIGIN, Data::Basic)
            .build()
    }

    /// Moves to `running` (announced by a CHANNEL_STATE), the state number becoming `next`.
    fn run_state(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, running: State, next: State) {
        self.running = running;
        self.state = next;
        out.push(self.state_event(ctx));
    }

    fn set_callstate(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, to: CallState) {
        let from = self.callstate;
        self.callstate = to;
        let mut b = ctx.event("CHANNEL_CALLSTATE", CALLSTATE_ORIGIN);
        b.add("Original-Channel-Call-State", from.name());
        b.add_display("Channel-Call-State-Number", to.number());
        self.add_basic(&mut b);
        out.push(b.build());
    }

    fn presence(
        &mut self,
        ctx: &EventCtx,
        status: &str,
        call_info: &str,
        origin: (&str, &str, u32),
    ) -> Event {
        let mut b = ctx.event("PRESENCE_IN", PRESENCE_ORIGIN);
        self.add_basic(&mut b);
        b.add("proto", "any");
        b.add("login", "src/switch_channel.c");
        b.add("from", self.presence_id().unwrap_or_default());
        b.add("rpid", "unknown");
        b.add("status", status);
        b.add("event_type", "presence");
        b.add("alt_event_type", "dialog");
        b.add("presence-call-info-state", call_info);
        b.add("presence-call-direction", self.direction);
        b.add_display("event_count", self.presence_count);
        b.add("Presence-Calling-File", origin.0);
        b.add("Presence-Calling-Function", origin.1);
        b.add_display("Presence-Calling-Line", origin.2);
        self.presence_count += 1;
        b.build()
    }

    fn codec_event(&self, ctx: &EventCtx, which: CodecChange) -> Event {
        let (origin, codec) = match which {
            CodecChange::RealRead => (
                at(
                    "switch_core_codec.c",
                    "switch_core_session_set_real_read_codec",
                    189,
                ),
                self.read_codec,
            ),
            CodecChange::Read => (
                at(
                    "switch_core_codec.c",
                    "switch_core_session_set_read_codec",
                    300,
                ),
                self.read_codec,
            ),
            CodecChange::Write => (
                at(
                    "switch_core_codec.c",
                    "switch_core_session_set_write_codec",
                    471,
                ),
                self.write_codec,
            ),
        };
        let mut b = self.event(ctx, "CODEC", origin, Data::Basic);
        if let Some(c) = codec {
            if which == CodecChange::Write {
                b.add("Channel-Write-Codec-Name", c.name);
                b.add_display("Channel-Write-Codec-Rate", c.rate);
                b.add_display("Channel-Write-codec-bit-rate", c.bit_rate);
            } else {
                b.add("channel-read-codec-name", c.name);
                b.add_display("channel-read-codec-rate", c.rate);
                b.add_display("channel-read-codec-bit-rate", c.bit_rate);
            }
        }
        b.build()
    }

    /// Changes the read codec and fires the CODEC event (mod_conference switches members to L16
    /// on join and back on leave).
    pub fn set_read_codec(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, codec: Codec) {
        self.read_codec = Some(codec);
        out.push(self.codec_event(ctx, CodecChange::Read));
    }

    fn execute(&mut self, ctx: &EventCtx, app: &str, data: &str, app_uuid: &str) -> Event {
        let mut b = self.event(ctx, "CHANNEL_EXECUTE", EXECUTE_ORIGIN, Data::WithVars);
        b.add("Application", app);
        b.add("Application-Data", data);
        b.add("Application-UUID", app_uuid);
        b.build()
    }

    fn execute_complete(&mut self, ctx: &EventCtx, app: &str, data: &str, app_uuid: &str) -> Event {
        let mut b = self.event(
            ctx,
            "CHANNEL_EXECUTE_COMPLETE",
            EXECUTE_COMPLETE_ORIGIN,
            Data::WithVars,
        );
        b.add("Application", app);
        b.add("Application-Data", data);
        b.add("Application-Response", "_none_");
        b.add("Application-UUID", app_uuid);
        b.build()
    }

    // ---------------------------------------------------------------------------------------
    // SIP leg
    // ---------------------------------------------------------------------------------------

    /// An inbound SIP call after the authenticated INVITE: the channel is created and enters
    /// CS_ROUTING, where FreeSWITCH looks the destination up in the dialplan. Fires the events
    /// of the capture in order (CHANNEL_STATE CS_NEW … CS_ROUTING), including sofia's
    /// `pre_register` / `register_attempt` that the captured build fires for an authenticated
    /// INVITE. [`Channel::execute_conference`] continues once the route is known.
    pub fn sofia_routing(
        ctx: &EventCtx,
        out: &mut Vec<Event>,
        call: SipCall,
        session_id: u64,
    ) -> Channel {
        let uuid = uuid::Uuid::new_v4().to_string();
        let leg = call.leg.clone();
        let name = format!("sofia/{}/{}@{}", leg.profile, leg.user, leg.domain);
        let mut ch = Channel::base(uuid, name, Kind::Sofia(Box::new(leg.clone())), "inbound");
        ch.session_id = session_id;
        let created = ch.created;
        let t = micros(created);

        // CS_NEW: nothing known yet but the name.
        out.push(ch.state_event(ctx));

        out.push(sofia_register_event(ctx, &leg, &call.destination, false));
        // The REQUEST_PARAMS event of the directory lookup consumes a sequence number and its
        // headers become channel variables.
        let request_seq = ctx.next_seq();
        out.push(sofia_register_event(ctx, &leg, &call.destination, true));

        let v = &mut ch.vars;
        let uuid = ch.uuid.clone();
        let contact_host = &leg.client_ip;
        v.set("direction", "inbound");
        v.set("uuid", uuid.clone());
        v.set("call_uuid", uuid.clone());
        v.set("session_id", session_id.to_string());
        v.set("sip_from_user", leg.user.clone());
        v.set("sip_from_uri", format!("{}@{}", leg.user, leg.domain));
        v.set("sip_from_host", leg.domain.clone());
        v.set("video_media_flow", "disabled");
        v.set("audio_media_flow", "disabled");
        v.set("text_media_flow", "disabled");
        v.set("channel_name", ch.name.clone());
        v.set("sip_call_id", leg.call_id.clone());
        v.set("sip_local_network_addr", leg.sip_ip.clone());
        v.set("sip_network_ip", leg.client_ip.clone());
        v.set("sip_network_port", leg.client_port.to_string());
        v.set("sip_invite_stamp", t.to_string());
        v.set("sip_received_ip", leg.client_ip.clone());
        v.set("sip_received_port", leg.client_port.to_string());
        v.set("sip_via_protocol", leg.transport.clone());
        v.set("sip_authorized", "true");
        let (local, gmt, _) = crate::events::dates(created);
        v.set("Event-Name", "REQUEST_PARAMS");
        v.set("Core-UUID", ctx.core_uuid.clone());
        v.set("FreeSWITCH-Hostname", ctx.hostname.clone());
        v.set("FreeSWITCH-Switchname", ctx.hostname.clone());
        v.set("FreeSWITCH-IPv4", ctx.ipv4.clone());
        v.set("FreeSWITCH-IPv6", ctx.ipv6.clone());
        v.set("Event-Date-Local", local);
        v.set("Event-Date-GMT", gmt);
        v.set("Event-Date-Timestamp", t.to_string());
        v.set("Event-Calling-File", "sofia.c");
        v.set("Event-Calling-Function", "sofia_handle_sip_i_invite");
        v.set("Event-Calling-Line-Number", "10735");
        v.set("Event-Sequence", request_seq.to_string());
        v.set("sip_number_alias", leg.user.clone());
        v.set("sip_auth_username", leg.user.clone());
        v.set("sip_auth_realm", leg.domain.clone());
        v.set("number_alias", leg.user.clone());
        v.set("requested_user_name", leg.user.clone());
        v.set("requested_domain_name", leg.domain.clone());
        for (name, value) in &call.directory_vars {
            v.set(name, value.clone());
        }
        v.set("user_name", leg.user.clone());
        v.set("domain_name", leg.domain.clone());
        v.set("sip_from_user_stripped", leg.user.clone());
        v.set("sip_from_tag", leg.from_tag.clone());
        v.set("sofia_profile_name", leg.profile.clone());
        v.set(
            "sofia_profile_url",
            format!("sip:mod_sofia@{}:{}", leg.sip_ip, leg.sip_port),
        );
        v.set("recovery_profile_name", leg.profile.clone());
        v.set("sip_full_via", leg.full_via(&leg.invite_branch));
        if let Some(display) = &leg.display_name {
            v.set("sip_from_display", display.clone());
        }
        v.set("sip_full_from", leg.full_from());
        let to_uri = format!("{}@{}:{}", call.destination, leg.domain, leg.sip_port);
        v.set("sip_full_to", format!("<sip:{to_uri}>"));
        v.set("sip_req_user", call.destination.clone());
        v.set("sip_req_port", leg.sip_port.to_string());
        v.set("sip_req_uri", to_uri.clone());
        v.set("sip_req_host", leg.domain.clone());
        v.set("sip_to_user", call.destination.clone());
        v.set("sip_to_port", leg.sip_port.to_string());
        v.set("sip_to_uri", to_uri);
        v.set("sip_to_host", leg.domain.clone());
        v.set("sip_contact_user", leg.user.clone());
        v.set("sip_contact_port", leg.client_port.to_string());
        v.set(
            "sip_contact_uri",
            format!("{}@{}:{}", leg.user, contact_host, leg.client_port),
        );
        v.set("sip_contact_host", contact_host.clone());
        v.set("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8");
        v.set("sip_user_agent", leg.user_agent.clone());
        v.set("sip_via_host", leg.client_ip.clone());
        v.set("sip_via_port", leg.client_port.to_string());
        v.set("max_forwards", "70");
        v.set("presence_id", format!("{}@{}", leg.user, leg.domain));
        v.set("switch_r_sdp", leg.remote_sdp.clone());
        v.set("ep_codec_string", "CORE_PCM_MODULE.PCMA@8000h@20i@64000b");
        v.set("endpoint_disposition", "DELAYED NEGOTIATION");

        ch.profile = Some(CallerProfile {
            direction: "inbound",
            username: leg.user.clone(),
            dialplan: "XML".into(),
            caller_id_name: call.caller_id_name.clone(),
            caller_id_number: call.caller_id_number.clone(),
            orig_caller_id_name: call.caller_id_name.clone(),
            orig_caller_id_number: call.caller_id_number.clone(),
            network_addr: leg.client_ip.clone(),
            ani: call.caller_id_number.clone(),
            destination_number: call.destination.clone(),
            source: "mod_sofia",
            context: call.context.clone(),
            created: t,
            ..CallerProfile::default()
        });

        // CS_INIT, CHANNEL_CREATE, routing.
        ch.run_state(ctx, out, State::Init, State::Init);
        ch.state = State::Routing;
        out.push(
            ch.event(
                ctx,
                "CHANNEL_CREATE",
                at(
                    "switch_core_state_machine.c",
                    "switch_core_session_run",
                    626,
                ),
                Data::WithVars,
            )
            .build(),
        );
        // The call state event already reports the routing state being entered.
        ch.running = State::Routing;
        ch.set_callstate(ctx, out, CallState::Ringing);
        ch.run_state(ctx, out, State::Routing, State::Routing);
        ch.state = State::Execute;
        let ev = ch.presence(
            ctx,
            "CS_ROUTING",
            "alerting",
            ("src/switch_core_state_machine.c", "check_presence", 521),
        );
        out.push(ev);
        ch
    }

    /// The second half of an inbound SIP call: the dialplan's extension runs
    /// (`answer`, then `conference <conference_data>`) up to the start of the conference
    /// application.
    pub fn execute_conference(
        &mut self,
        ctx: &EventCtx,
        out: &mut Vec<Event>,
        destination: &str,
        conference_data: String,
    ) {
        let ch = self;
        let Some(leg) = ch.sip().cloned() else {
            return;
        };
        ch.run_state(ctx, out, State::Execute, State::Execute);

        // Dialplan: answer.
        ch.vars
            .set("DP_MATCH", format!("ARRAY::{0}|:{0}", destination));
        ch.vars.set("call_uuid", ch.uuid.clone());
        ch.vars.set("current_application", "answer");
        let answer_app = ch.answer_app.clone();
        out.push(ch.execute(ctx, "answer", "", &answer_app));

        // The negotiated codec (switch_core_media_set_codec, switch_core_codec.c's
        // switch_core_session_set_real_read_codec / _set_write_codec): PCMA for SIPp.
        let audio = leg.audio.clone();
        let codec = audio.codec;
        ch.read_codec = Some(codec);
        ch.write_codec = Some(codec);
        out.push(ch.codec_event(ctx, CodecChange::RealRead));
        out.push(ch.codec_event(ctx, CodecChange::Write));

        let v = &mut ch.vars;
        v.set("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8");
        v.set("remote_video_media_flow", "inactive");
        v.set("remote_text_media_flow", "inactive");
        v.set("remote_audio_media_flow", "sendrecv");
        v.set("audio_media_flow", "sendrecv");
        v.set("rtp_audio_recv_pt", audio.pt.to_string());
        v.set("rtp_use_codec_name", codec.name);
        v.set("rtp_use_codec_fmtp", audio.fmtp.clone());
        v.set("rtp_use_codec_rate", codec.rate.to_string());
        v.set("rtp_use_codec_ptime", audio.ptime.to_string());
        v.set("rtp_use_codec_channels", audio.channels.to_string());
        v.set("rtp_last_audio_codec_string", audio.last_codec_string());
        v.set("read_codec", codec.name);
        v.set("original_read_codec", codec.name);
        v.set("read_rate", codec.rate.to_string());
        v.set("original_read_rate", codec.rate.to_string());
        v.set("write_codec", codec.name);
        v.set("write_rate", codec.rate.to_string());
        v.set("dtmf_type", "rfc2833");
        v.set("local_media_ip", leg.sip_ip.clone());
        v.set("local_media_port", leg.local_media_port.to_string());
        v.set("advertised_media_ip", leg.sip_ip.clone());
        v.set("rtp_use_timer_name", "soft");
        v.set("rtp_use_pt", audio.pt.to_string());
        v.set("rtp_use_ssrc", leg.ssrc.to_string());
        v.set("rtp_2833_send_payload", "101");
        v.set("rtp_2833_recv_payload", "101");
        v.set("remote_media_ip", leg.client_ip.clone());
        v.set("remote_media_port", leg.rtp_port.to_string());
        v.set("endpoint_disposition", "EARLY MEDIA");

        // Early media, then answer.
        let now = micros(SystemTime::now());
        ch.answer_state = "early";
        if let Some(p) = &mut ch.profile {
            p.progress_media = now;
        }
        out.push(
            ch.event(
                ctx,
                "CHANNEL_PROGRESS_MEDIA",
                at(
                    "switch_channel.c",
                    "switch_channel_perform_mark_pre_answered",
                    3562,
                ),
                Data::WithVars,
            )
            .build(),
        );
        ch.set_callstate(ctx, out, CallState::Early);
        ch.vars.set("rtp_local_sdp_str", leg.local_sdp());
        ch.answer_state = "answered";
        ch.answered = Some(SystemTime::now());
        if let Some(p) = &mut ch.profile {
            p.answered = now;
        }
        out.push(
            ch.event(
                ctx,
                "CHANNEL_ANSWER",
                at(
                    "switch_channel.c",
                    "switch_channel_perform_mark_answered",
                    3848,
                ),
                Data::WithVars,
            )
            .build(),
        );
        let ev = ch.presence(
            ctx,
            "answered",
            "active",
            (
                "src/switch_channel.c",
                "switch_channel_perform_mark_answered",
                3906,
            ),
        );
        out.push(ev);
        ch.set_callstate(ctx, out, CallState::Active);
        ch.vars.set("endpoint_disposition", "ANSWER");
        out.push(ch.execute_complete(ctx, "answer", "", &answer_app));

        // Dialplan: conference.
        let conf_app = uuid::Uuid::new_v4().to_string();
        ch.vars.set("current_application", "conference");
        ch.vars
            .set("current_application_data", conference_data.clone());
        out.push(ch.execute(ctx, "conference", &conference_data, &conf_app));
        ch.conference_app = Some((conf_app, conference_data));
    }

    /// The REQUEST_PARAMS event of the dialplan lookup (see `crate::dialplan`): channel data,
    /// variables, then the caller profile as `Hunt-*`.
    pub fn dialplan_request(&self, ctx: &EventCtx) -> Vec<(String, String)> {
        // Not captured: where mod_dialplan_xml creates the event.
        let mut b = ctx.event(
            "REQUEST_PARAMS",
            at("mod_dialplan_xml.c", "dialplan_xml_locate", 0),
        );
        self.add_basic(&mut b);
        self.add_vars(&mut b);
        if let Some(p) = &self.profile {
            self.add_profile_prefixed(&mut b, p, "Hunt");
        }
        b.into_pairs()
    }

    /// The destination number and context of the caller profile.
    pub fn destination(&self) -> (&str, &str) {
        match &self.profile {
            Some(p) => (&p.destination_number, &p.context),
            None => ("", ""),
        }
    }

    /// The variables the `conference` application sets when the member joins, plus sofia's ACK
    /// variables. Where the ACK lands among them is a race in FreeSWITCH; the capture shows it
    /// right after `app_session_uuid` for the member whose join creates the conference and after
    /// the conference variables for a member joining a running conference. fsim reproduces
    /// both outcomes that way.
    pub fn set_join_vars(
        &mut self,
        conference: &str,
        conference_uuid: &str,
        member_id: u32,
        created_conference: bool,
        read_codec: Codec,
        call_key: &str,
    ) {
        self.vars.set("current_application", "conference");
        self.vars.set("conference_name", conference);
        self.vars.set("app_session_uuid", conference_uuid);
        let ack = |v: &mut Vars, leg: &SipLeg| {
            v.set("sip_to_tag", leg.to_tag.clone());
            v.set("sip_from_tag", leg.from_tag.clone());
            v.set("sip_cseq", "2");
            v.set("sip_call_id", leg.call_id.clone());
            v.set("sip_full_via", leg.full_via(&leg.ack_branch));
            if let Some(display) = &leg.display_name {
                v.set("sip_from_display", display.clone());
            }
            v.set("sip_full_from", leg.full_from());
            v.set(
                "sip_full_to",
                format!(
                    "<sip:{}@{}:{}>;tag={}",
                    v.get("sip_to_user").unwrap_or_default(),
                    leg.domain,
                    leg.sip_port,
                    leg.to_tag
                ),
            );
        };
        let leg = self.sip().cloned();
        if created_conference && let Some(leg) = &leg {
            ack(&mut self.vars, leg);
        }
        self.vars.set("read_codec", read_codec.name);
        self.vars.set("read_rate", read_codec.rate.to_string());
        self.vars.set("conference_member_id", member_id.to_string());
        self.vars.set("conference_moderator", "false");
        self.vars.set("conference_ghost", "false");
        self.vars.set("conference_uuid", conference_uuid);
        self.vars.set("conference_call_key", call_key);
        if !created_conference && let Some(leg) = &leg {
            ack(&mut self.vars, leg);
        }
        self.member = Some((conference.to_owned(), member_id));
    }

    /// The far end hangs up (SIP BYE, or the loopback peer going away): CHANNEL_HANGUP. A
    /// channel in a conference is still a member; the caller removes the member next.
    pub fn remote_hangup(&mut self, ctx: &EventCtx, out: &mut Vec<Event>) {
        if self.is_hung_up() {
            return;
        }
        self.hangup_by_peer = true;
        if self.sip().is_some() {
            self.vars.set("sip_term_status", "200");
            self.vars.set("proto_specific_hangup_cause", "sip:200");
            self.vars.set("sip_term_cause", "16");
        }
        self.mark_hangup(ctx, out, "NORMAL_CLEARING");
    }

    /// FreeSWITCH hangs the channel up (`uuid_kill`, `hupall`, end of dialplan after a kick).
    pub fn local_hangup(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, cause: &'static str) {
        if self.is_hung_up() {
            return;
        }
        self.hangup_by_peer = false;
        self.mark_hangup(ctx, out, cause);
    }

    fn mark_hangup(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, cause: &'static str) {
        let now = SystemTime::now();
        self.hangup_at = Some(now);
        self.hangup_cause = Some(cause);
        self.answer_state = "hangup";
        self.state = State::Hangup;
        out.push(
            self.event(
                ctx,
                "CHANNEL_HANGUP",
                at("switch_channel.c", "switch_channel_perform_hangup", 3447),
                Data::WithVars,
            )
            .build(),
        );
    }

    /// True once the channel is hung up.
    pub fn is_hung_up(&self) -> bool {
        self.hangup_cause.is_some()
    }

    /// After the member left the conference: the `conference` application returns (read codec
    /// restored, CHANNEL_EXECUTE_COMPLETE), the dialplan ends and the channel is torn down.
    pub fn after_conference(&mut self, ctx: &EventCtx, out: &mut Vec<Event>) {
        self.vars.del("conference_call_key");
        if self.sip().is_some() {
            let by_peer = self.is_hung_up() && self.hangup_by_peer;
            self.vars.set(
                "sip_hangup_disposition",
                if by_peer { "recv_bye" } else { "send_bye" },
            );
        }
        let original = match &self.kind {
            Kind::Sofia(leg) => leg.audio.codec,
            _ => L16_8K,
        };
        self.vars.set("read_codec", original.name);
        self.vars.set("read_rate", original.rate.to_string());
        self.set_read_codec(ctx, out, original);
        if let Some((app_uuid, data)) = self.conference_app.clone() {
            out.push(self.execute_complete(ctx, "conference", &data, &app_uuid));
        }
        self.member = None;
        self.finish(ctx, out);
    }

    /// Hangs up (if not yet: FreeSWITCH ends the call, NORMAL_CLEARING) and tears down.
    pub fn finish(&mut self, ctx: &EventCtx, out: &mut Vec<Event>) {
        if !self.is_hung_up() {
            self.mark_hangup(ctx, out, "NORMAL_CLEARING");
        }
        self.teardown(ctx, out);
    }

    /// CS_HANGUP → CS_REPORTING → CS_DESTROY.
    fn teardown(&mut self, ctx: &EventCtx, out: &mut Vec<Event>) {
        self.run_state(ctx, out, State::Hangup, State::Hangup);
        // The caller profile learns the hangup time with the HANGUP call state.
        let hangup = self.hangup_at.map(micros).unwrap_or(0);
        if let Some(p) = &mut self.profile {
            p.hangup = hangup;
        }
        self.set_callstate(ctx, out, CallState::Hangup);
        self.state = State::Reporting;
        if self.sip().is_some() {
            self.presence_count = self.presence_count.max(2);
            let ev = self.presence(
                ctx,
                "CS_HANGUP",
                "idle",
                ("src/switch_core_state_machine.c", "check_presence", 521),
            );
            out.push(ev);
        }
        self.run_state(ctx, out, State::Reporting, State::Reporting);
        self.set_cdr_vars();
        let mut b = ctx.event(
            "CHANNEL_HANGUP_COMPLETE",
            at(
                "switch_core_state_machine.c",
                "switch_core_session_reporting_state",
                943,
            ),
        );
        b.add(
            "Hangup-Cause",
            self.hangup_cause.unwrap_or("NORMAL_CLEARING"),
        );
        self.add_basic(&mut b);
        self.add_vars(&mut b);
        out.push(b.build());
        self.state = State::Destroy;
        out.push(
            self.event(
                ctx,
                "CHANNEL_DESTROY",
                at(
                    "switch_core_session.c",
                    "switch_core_session_perform_destroy",
                    1588,
                ),
                Data::WithVars,
            )
            .build(),
        );
        self.run_state(ctx, out, State::Destroy, State::Destroy);
    }

    /// The CDR variables FreeSWITCH computes before CHANNEL_HANGUP_COMPLETE.
    fn set_cdr_vars(&mut self) {
        let start = micros(self.created);
        let end = self.hangup_at.map(micros).unwrap_or(start);
        let answer = self.answered.map(micros).unwrap_or(0);
        let progress_media = self.profile.as_ref().map(|p| p.progress_media).unwrap_or(0);
        let stamp =
            |us: u64| local_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_micros(us));
        let cause = self.hangup_cause.unwrap_or("NORMAL_CLEARING");
        let is_sip = self.sip().is_some();
        let v = &mut self.vars;
        v.set("hangup_cause", cause);
        v.set("hangup_cause_q850", q850(cause).to_string());
        v.set("digits_dialed", "none");
        v.set("start_stamp", stamp(start));
        v.set("profile_start_stamp", stamp(start));
        if answer > 0 {
            v.set("answer_stamp", stamp(answer));
        }
        if progress_media > 0 {
            v.set("progress_media_stamp", stamp(progress_media));
        }
        v.set("end_stamp", stamp(end));
        v.set("start_epoch", (start / 1_000_000).to_string());
        v.set("start_uepoch", start.to_string());
        v.set("profile_start_epoch", (start / 1_000_000).to_string());
        v.set("profile_start_uepoch", start.to_string());
        v.set("answer_epoch", (answer / 1_000_000).to_string());
        v.set("answer_uepoch", answer.to_string());
        for name in [
            "bridge_epoch",
            "bridge_uepoch",
            "last_hold_epoch",
            "last_hold_uepoch",
            "hold_accum_seconds",
            "hold_accum_usec",
            "hold_accum_ms",
            "resurrect_epoch",
            "resurrect_uepoch",
            "progress_epoch",
            "progress_uepoch",
        ] {
            v.set(name, "0");
        }
        v.set(
            "progress_media_epoch",
            (progress_media / 1_000_000).to_string(),
        );
        v.set("progress_media_uepoch", progress_media.to_string());
        v.set("end_epoch", (end / 1_000_000).to_string());
        v.set("end_uepoch", end.to_string());
        if let Some(app) = v.get("current_application").map(str::to_owned) {
            v.set("last_app", app);
        }
        if let Some(arg) = v.get("current_application_data").map(str::to_owned) {
            v.set("last_arg", arg);
        }
        if let Some(p) = &self.profile {
            v.set(
                "caller_id",
                format!("\"{}\" <{}>", p.caller_id_name, p.caller_id_number),
            );
        }
        let total_us = end.saturating_sub(start);
        let bill_us = if answer > 0 {
            end.saturating_sub(answer)
        } else {
            0
        };
        let since_start = |t: u64| if t > 0 { t.saturating_sub(start) } else { 0 };
        let answer_us = since_start(answer);
        let media_us = since_start(progress_media);
        let secs = |us: u64| (us / 1_000_000).to_string();
        let msecs = |us: u64| (us / 1_000).to_string();
        v.set("duration", secs(total_us));
        v.set("billsec", secs(bill_us));
        v.set("progresssec", "0");
        v.set("answersec", secs(answer_us));
        v.set("waitsec", "0");
        v.set("progress_mediasec", secs(media_us));
        v.set("flow_billsec", secs(total_us));
        v.set("mduration", msecs(total_us));
        v.set("billmsec", msecs(bill_us));
        v.set("progressmsec", "0");
        v.set("answermsec", msecs(answer_us));
        v.set("waitmsec", "0");
        v.set("progress_mediamsec", msecs(media_us));
        v.set("flow_billmsec", msecs(total_us));
        v.set("uduration", total_us.to_string());
        v.set("billusec", bill_us.to_string());
        v.set("progressusec", "0");
        v.set("answerusec", answer_us.to_string());
        v.set("waitusec", "0");
        v.set("progress_mediausec", media_us.to_string());
        v.set("flow_billusec", total_us.to_string());
        if is_sip {
            // RTP statistics of a 20 ms PCMA stream for the call's duration.
            let packets = bill_us / 20_000;
            let bytes = packets * 172;
            for (name, value) in [
                ("rtp_audio_in_raw_bytes", bytes.to_string()),
                ("rtp_audio_in_media_bytes", bytes.to_string()),
                ("rtp_audio_in_packet_count", packets.to_string()),
                ("rtp_audio_in_media_packet_count", packets.to_string()),
                ("rtp_audio_in_skip_packet_count", "0".to_string()),
                ("rtp_audio_in_jitter_packet_count", "0".to_string()),
                ("rtp_audio_in_dtmf_packet_count", "0".to_string()),
                ("rtp_audio_in_cng_packet_count", "0".to_string()),
                ("rtp_audio_in_flush_packet_count", "0".to_string()),
                ("rtp_audio_in_largest_jb_size", "0".to_string()),
                ("rtp_audio_in_jitter_min_variance", "0.00".to_string()),
                ("rtp_audio_in_jitter_max_variance", "0.00".to_string()),
                ("rtp_audio_in_jitter_loss_rate", "0.00".to_string()),
                ("rtp_audio_in_jitter_burst_rate", "0.00".to_string()),
                ("rtp_audio_in_mean_interval", "20.00".to_string()),
                ("rtp_audio_in_flaw_total", "0".to_string()),
                ("rtp_audio_in_quality_percentage", "100.00".to_string()),
                ("rtp_audio_in_mos", "4.50".to_string()),
                ("rtp_audio_out_raw_bytes", bytes.to_string()),
                ("rtp_audio_out_media_bytes", bytes.to_string()),
                ("rtp_audio_out_packet_count", packets.to_string()),
                ("rtp_audio_out_media_packet_count", packets.to_string()),
                ("rtp_audio_out_skip_packet_count", "0".to_string()),
                ("rtp_audio_out_dtmf_packet_count", "0".to_string()),
                ("rtp_audio_out_cng_packet_count", "0".to_string()),
                ("rtp_audio_rtcp_packet_count", "0".to_string()),
                ("rtp_audio_rtcp_octet_count", "0".to_string()),
            ] {
                v.set(name, value);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Loopback legs
    // ---------------------------------------------------------------------------------------

    /// The two legs of `originate loopback/<dest>/<context>`: both created and answered, the
    /// B leg running the dialplan. Returns (A, B).
    pub fn loopback_pair(
        ctx: &EventCtx,
        out: &mut Vec<Event>,
        dest: &str,
        context: &str,
        session_ids: (u64, u64),
        read_codec: Codec,
    ) -> (Channel, Channel) {
        let a_uuid = uuid::Uuid::new_v4().to_string();
        let b_uuid = uuid::Uuid::new_v4().to_string();
        let mut a = Channel::base(
            a_uuid.clone(),
            format!("loopback/{dest}-a"),
            Kind::LoopbackA,
            "outbound",
        );
        let mut b = Channel::base(
            b_uuid.clone(),
            format!("loopback/{dest}-b"),
            Kind::LoopbackB,
            "inbound",
        );
        let t = micros(a.created);
        a.hit_dialplan = false;
        a.session_id = session_ids.0;
        b.session_id = session_ids.1;
        b.created = a.created;
        for ch in [&mut a, &mut b] {
            ch.read_codec = Some(L16_8K);
            ch.write_codec = Some(L16_8K);
        }
        let profile = |direction: &'static str| CallerProfile {
            direction,
            dialplan: "xml".into(),
            caller_id_number: "0000000000".into(),
            orig_caller_id_number: "0000000000".into(),
            callee_id_name: "Outbound Call".into(),
            callee_id_number: context.to_owned(),
            ani: "0000000000".into(),
            destination_number: dest.to_owned(),
            source: "mod_loopback",
            context: context.to_owned(),
            created: t,
            ..CallerProfile::default()
        };
        a.profile = Some(profile("outbound"));
        b.profile = Some(profile("inbound"));
        a.vars.set("direction", "outbound");
        a.vars.set("is_outbound", "true");
        a.vars.set("uuid", a_uuid.clone());
        a.vars.set("call_uuid", a_uuid.clone());
        a.vars.set("session_id", session_ids.0.to_string());
        a.vars.set("read_codec", "L16");
        a.vars.set("read_rate", "8000");
        a.vars.set("write_codec", "L16");
        a.vars.set("write_rate", "8000");
        a.vars.set("channel_name", a.name.clone());
        a.vars.set("originate_early_media", "true");
        a.vars.set("originate_endpoint", "loopback");
        a.vars.set("other_loopback_leg_uuid", b_uuid.clone());
        a.vars.set("loopback_leg", "A");
        b.vars.set("direction", "inbound");
        b.vars.set("uuid", b_uuid.clone());
        b.vars.set("call_uuid", b_uuid.clone());
        b.vars.set("session_id", session_ids.1.to_string());
        b.vars.set("channel_name", b.name.clone());
        b.vars.set("read_codec", "L16");
        b.vars.set("read_rate", "8000");
        b.vars.set("write_codec", "L16");
        b.vars.set("write_rate", "8000");
        b.vars.set("other_loopback_leg_uuid", a_uuid.clone());
        b.vars.set("loopback_leg", "B");
        a.peer = Some(b_uuid);
        b.peer = Some(a_uuid);

        let create = at(
            "switch_core_state_machine.c",
            "switch_core_session_run",
            626,
        );
        for ch in [&mut a, &mut b] {
            ch.running = State::Init;
            ch.state = State::Routing;
            out.push(
                ch.event(ctx, "CHANNEL_CREATE", create, Data::WithVars)
                    .build(),
            );
        }
        b.running = State::Execute;
        b.state = State::Execute;
        b.callstate = CallState::Ringing;
        b.vars.set("DP_MATCH", format!("ARRAY::{dest}|:{dest}"));
        b.vars.set("call_uuid", b.uuid.clone());
        b.vars.set("current_application", "answer");
        a.running = State::ConsumeMedia;
        a.state = State::ConsumeMedia;
        let answered = at(
            "switch_channel.c",
            "switch_channel_perform_mark_answered",
            3848,
        );
        let now = SystemTime::now();
        for ch in [&mut a, &mut b] {
            ch.answer_state = "answered";
            ch.answered = Some(now);
            if let Some(p) = &mut ch.profile {
                p.answered = micros(now);
            }
            out.push(
                ch.event(ctx, "CHANNEL_ANSWER", answered, Data::WithVars)
                    .build(),
            );
        }
        for ch in [&mut a, &mut b] {
            ch.callstate = CallState::Active;
            ch.running = State::Execute;
            ch.state = State::Execute;
        }
        // The A leg runs `&conference(<name>)`: its profile now shows the far end.
        if let Some(p) = &mut a.profile {
            p.caller_id_name = "Outbound Call".into();
            p.caller_id_number = context.to_owned();
            p.callee_id_name = String::new();
            p.callee_id_number = "0000000000".into();
        }
        for ch in [&mut a, &mut b] {
            ch.read_codec = Some(read_codec);
        }
        (a, b)
    }

    /// Starts the `conference` application on a loopback leg.
    pub fn start_conference_app(&mut self, ctx: &EventCtx, out: &mut Vec<Event>, data: &str) {
        self.hit_dialplan = true;
        let app_uuid = uuid::Uuid::new_v4().to_string();
        self.vars.set("current_application", "conference");
        self.vars.set("current_application_data", data);
        out.push(self.execute(ctx, "conference", data, &app_uuid));
        self.conference_app = Some((app_uuid, data.to_owned()));
    }
}

impl SipLeg {
    fn full_via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={}",
            self.transport.to_ascii_uppercase(),
            self.client_ip,
            self.client_port,
            branch
        )
    }

    fn full_from(&self) -> String {
        let uri = format!("<sip:{}@{}>;tag={}", self.user, self.domain, self.from_tag);
        match &self.display_name {
            Some(display) => format!("\"{display}\" {uri}"),
            None => uri,
        }
    }

    /// The SDP FreeSWITCH answers with.
    fn local_sdp(&self) -> String {
        if let Some(sdp) = &self.local_sdp {
            return sdp.clone();
        }
        format!(
            "v=0\r\no=FreeSWITCH {} {} IN IP4 {ip}\r\ns=FreeSWITCH\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            self.sdp_session,
            self.sdp_session + 1,
            self.local_media_port,
            ip = self.sip_ip,
        )
    }
}

/// The Q.850 code of a hangup cause name.
pub(crate) fn q850(cause: &str) -> u32 {
    match cause {
        "NORMAL_CLEARING" => 16,
        "USER_BUSY" => 17,
        "NO_ROUTE_DESTINATION" => 3,
        "CALL_REJECTED" => 21,
        "UNALLOCATED_NUMBER" => 1,
        "NORMAL_TEMPORARY_FAILURE" => 41,
        "ORIGINATOR_CANCEL" => 487,
        "MANAGER_REQUEST" => 503,
        "SYSTEM_SHUTDOWN" => 503,
        _ => 0,
    }
}

/// `sofia::pre_register` / `sofia::register_attempt` as the captured build fires them for an
/// authenticated INVITE (from-user = the dialed number, auth-result `RENEWED`).
fn sofia_register_event(ctx: &EventCtx, leg: &SipLeg, dest: &str, attempt: bool) -> Event {
    let (subclass, line) = if attempt {
        ("sofia::register_attempt", 1606)
    } else {
        ("sofia::pre_register", 1810)
    };
    let mut b = ctx.custom(
        subclass,
        at("sofia_reg.c", "sofia_reg_handle_register_token", line),
    );
    b.add("profile-name", &leg.profile);
    b.add("from-user", dest);
    b.add("from-host", &leg.domain);
    b.add(
        "contact",
        &format!(
            "\"\" <sip:{}@{}:{}>",
            leg.user, leg.client_ip, leg.client_port
        ),
    );
    b.add("call-id", &leg.call_id);
    b.add("rpid", "unknown");
    b.add(
        "status",
        &format!("Registered({})", leg.transport.to_ascii_uppercase()),
    );
    b.add("expires", "300");
    b.add("to-user", &leg.user);
    b.add("to-host", &leg.domain);
    b.add("network-ip", &leg.client_ip);
    b.add_display("network-port", leg.client_port);
    if attempt {
        b.add("username", &leg.user);
        b.add("realm", &leg.domain);
    }
    b.add("user-agent", &leg.user_agent);
    if attempt {
        b.add("auth-result", "RENEWED");
    }
    b.build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn leg(audio: AudioCodec) -> SipLeg {
        SipLeg {
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            transport: "wss".into(),
            client_ip: "127.0.0.1".into(),
            client_port: 40000,
            user_agent: "JsSIP 3.10.1".into(),
            display_name: None,
            call_id: "c1".into(),
            from_tag: "ft".into(),
            to_tag: "tt".into(),
            invite_branch: "z9hG4bK1".into(),
            ack_branch: "z9hG4bK1".into(),
            remote_sdp: "v=0\r\n".into(),
            rtp_port: 9,
            local_media_port: 20000,
            ssrc: 1,
            sdp_session: 1000,
            sip_ip: "127.0.0.1".into(),
            sip_port: 5066,
            profile: "internal".into(),
            audio,
            local_sdp: Some("v=0\r\no=FreeSWITCH 1000 1001 IN IP4 127.0.0.1\r\n".into()),
        }
    }

    fn ctx() -> EventCtx {
        EventCtx {
            core_uuid: "cu".into(),
            hostname: "fs1".into(),
            ipv4: "127.0.0.1".into(),
            ipv6: "::1".into(),
            seq: std::sync::Arc::default(),
        }
    }

    /// The channel of a call whose answer chose `audio`, after `answer`.
    fn answered(audio: AudioCodec) -> (Channel, Vec<Event>) {
        let call = SipCall {
            leg: leg(audio),
            destination: "conf*room1".into(),
            context: "default".into(),
            caller_id_name: "alice".into(),
            caller_id_number: "alice".into(),
            directory_vars: Vec::new(),
        };
        let mut out = Vec::new();
        let mut ch = Channel::sofia_routing(&ctx(), &mut out, call, 1);
        out.clear();
        ch.execute_conference(&ctx(), &mut out, "conf*room1", "room1@default".into());
        (ch, out)
    }

    /// Opus as Chromium offers it.
    fn chromium_opus() -> AudioCodec {
        AudioCodec::negotiated(
            "111",
            "opus/48000/2",
            Some("minptime=10;useinbandfec=1"),
            None,
        )
        .unwrap()
    }

    #[test]
    fn negotiated_audio_codecs() {
        let opus = chromium_opus();
        assert_eq!(opus.codec, OPUS);
        assert_eq!((opus.pt, opus.ptime, opus.channels), (111, 20, 1));
        assert_eq!(opus.last_codec_string(), "opus@48000h@20i@1c");
        let stereo = AudioCodec::negotiated("111", "opus/48000/2", Some("stereo=1"), None).unwrap();
        assert_eq!(stereo.channels, 2);
        let pcmu = AudioCodec::negotiated("0", "PCMU/8000", None, Some(30)).unwrap();
        assert_eq!(pcmu.codec, PCMU);
        assert_eq!(pcmu.last_codec_string(), "PCMU@8000h@30i@1c");
        assert_eq!(AudioCodec::pcma().last_codec_string(), "PCMA@8000h@20i@1c");
        assert_eq!(AudioCodec::negotiated("9", "G722/8000", None, None), None);
    }

    #[test]
    fn the_channel_reports_the_negotiated_codec() {
        let opus = chromium_opus();
        let (ch, out) = answered(opus);
        assert_eq!(ch.read_codec, Some(OPUS));
        assert_eq!(ch.write_codec, Some(OPUS));
        let v = |n: &str| ch.vars.get(n).map(str::to_owned);
        assert_eq!(v("rtp_use_codec_name").as_deref(), Some("opus"));
        assert_eq!(
            v("rtp_use_codec_fmtp").as_deref(),
            Some("minptime=10;useinbandfec=1")
        );
        assert_eq!(v("rtp_use_codec_rate").as_deref(), Some("48000"));
        assert_eq!(v("rtp_use_codec_ptime").as_deref(), Some("20"));
        assert_eq!(v("rtp_use_codec_channels").as_deref(), Some("1"));
        assert_eq!(
            v("rtp_last_audio_codec_string").as_deref(),
            Some("opus@48000h@20i@1c")
        );
        for name in ["read_codec", "original_read_codec", "write_codec"] {
            assert_eq!(v(name).as_deref(), Some("opus"), "{name}");
        }
        for name in ["read_rate", "original_read_rate", "write_rate"] {
            assert_eq!(v(name).as_deref(), Some("48000"), "{name}");
        }
        assert_eq!(v("rtp_audio_recv_pt").as_deref(), Some("111"));
        assert_eq!(v("rtp_use_pt").as_deref(), Some("111"));
        assert!(
            v("rtp_local_sdp_str")
                .unwrap()
                .starts_with("v=0\r\no=FreeSWITCH 1000 1001")
        );
        let codec = out
            .iter()
            .find(|e| e.get("Event-Name") == Some("CODEC"))
            .unwrap();
        assert_eq!(codec.get("channel-read-codec-name"), Some("opus"));
        assert_eq!(codec.get("channel-read-codec-rate"), Some("48000"));
        assert_eq!(codec.get("channel-read-codec-bit-rate"), Some("0"));
        let answer = out
            .iter()
            .find(|e| e.get("Event-Name") == Some("CHANNEL_ANSWER"))
            .unwrap();
        assert_eq!(answer.get("Channel-Read-Codec-Name"), Some("opus"));
        assert_eq!(answer.get("Channel-Write-Codec-Rate"), Some("48000"));
    }

    #[test]
    fn a_pcma_leg_keeps_the_captured_values() {
        let (ch, _) = answered(AudioCodec::pcma());
        assert_eq!(ch.read_codec, Some(PCMA));
        assert_eq!(ch.vars.get("rtp_use_codec_fmtp"), None);
        assert_eq!(
            ch.vars.get("rtp_last_audio_codec_string"),
            Some("PCMA@8000h@20i@1c")
        );
        assert_eq!(ch.vars.get("rtp_use_pt"), Some("8"));
    }

    #[test]
    fn vars_move_to_the_end_when_set_again() {
        let mut v = Vars::default();
        v.set("a", "1");
        v.set("b", "2");
        v.set("a", "3");
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![("b", "2"), ("a", "3")]);
        v.set("b", "");
        assert_eq!(v.get("b"), None);
    }

    #[test]
    fn state_numbers() {
        assert_eq!(State::Execute.number(), 4);
        assert_eq!(State::Hangup.number(), 10);
        assert_eq!(CallState::Hangup.number(), 7);
    }
}
