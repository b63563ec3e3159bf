//! The mod_conference model: conferences, members, the audio floor, and the
//! `conference::maintenance` events and api listings they produce.
//!
//! # Why
//!
//! Switchyard keeps its view of every room from `conference::maintenance` events and checks it
//! with `conference <name> list|json_list`. Those bytes are what this module reproduces, with the
//! header groups of the captures (esl-events-plain-conference-maintenance-only.txt):
//!
//! - **C block**: `Conference-Name`, `-Domain`, `-Size` (members after the change), `-Ghosts`,
//!   `-Profile-Name`, `-Unique-ID`;
//! - **M block**: C, `Floor`, the member's channel block and caller profile
//!   ([`Channel::add_basic`]), then `Video`, `Hear`, `See`, `Speak`, `Talking`, `Mute-Detect`,
//!   `Hold`, `Member-ID`, `Member-Type`, `Member-Ghost`, `Energy-Level`, `Current-Energy`;
//! - `Action` after the block; `floor-change` is C, `Action`, `Old-ID`, then (new holder) the
//!   whole M block — so the C headers appear twice — and `New-ID`.
//!
//! # The floor
//!
//! FreeSWITCH hands the audio floor to the loudest speaker by measuring energy; fsim has no
//! audio, so it uses rules that reproduce every floor change of the capture:
//!
//! - a member joining a conference without a holder gets the floor;
//! - a member starting to talk takes it when the holder is not talking (or cannot speak);
//! - a muted holder loses it to a talking member, if any;
//! - [`crate::SimNode::take_floor`] stands for "this member is now the loudest";
//! - when the holder leaves, `floor-change` fires with `Old-ID: none` and `New-ID: none` (as
//!   captured), and once the leaving channel is gone the floor goes to a talking member, or to
//!   the only member left.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use esl::Event;

use crate::channel::Channel;

/// The channels of a node, by `Unique-ID`.
pub(crate) type Channels = std::collections::HashMap<String, Channel>;
use crate::events::{CONFERENCE_MAINTENANCE, EventBuilder, EventCtx, Origin, at};

/// A conference profile (conference.conf `<profile>`): what fsim needs of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConferenceProfile {
    /// Profile name (`Conference-Profile-Name`).
    pub name: String,
    /// Sampling rate (`rate` in listings, the members' L16 read codec).
    pub rate: u32,
    /// `video-mode=mux`: the conference mixes video on a canvas (`vid-layout` works).
    pub video_mux: bool,
}

impl ConferenceProfile {
    /// A profile.
    pub fn new(name: impl Into<String>, rate: u32, video_mux: bool) -> Self {
        ConferenceProfile {
            name: name.into(),
            rate,
            video_mux,
        }
    }

    /// The profiles of the vanilla conference.conf that matter here: `default` (8 kHz, as
    /// captured), `wideband`, `ultrawideband`, `cdquality`, and the video mixing profile
    /// `video-mcu-stereo`. A name that is not configured yields FreeSWITCH's built-in defaults
    /// and `Conference-Profile-Name: none`.
    pub fn vanilla() -> Vec<ConferenceProfile> {
        vec![
            ConferenceProfile::new("default", 8000, false),
            ConferenceProfile::new("wideband", 16000, false),
            ConferenceProfile::new("ultrawideband", 32000, false),
            ConferenceProfile::new("cdquality", 48000, false),
            ConferenceProfile::new("video-mcu-stereo", 48000, true),
        ]
    }
}

/// A conference member.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub id: u32,
    pub channel: String,
    pub hear: bool,
    pub speak: bool,
    pub talking: bool,
    pub vmuted: bool,
    pub energy_level: u32,
    pub current_energy: u32,
    pub joined: Instant,
    pub last_talking: Option<Instant>,
    /// When the member last started talking (floor decisions prefer the latest talker).
    pub talk_started: Option<Instant>,
}

impl Member {
    pub fn new(id: u32, channel: String) -> Member {
        Member {
            id,
            channel,
            hear: true,
            speak: true,
            talking: false,
            vmuted: false,
            energy_level: 100,
            current_energy: 0,
            joined: Instant::now(),
            last_talking: None,
            talk_started: None,
        }
    }

    /// The `flags` field of `conference list`.
    fn list_flags(&self, floor: bool, video_floor: bool) -> String {
        let mut flags = Vec::new();
        if self.hear {
            flags.push("hear");
        }
        if self.speak {
            flags.push("speak");
        }
        if self.talking {
            flags.push("talking");
        }
        if floor {
            flags.push("floor");
        }
        if video_floor {
            flags.push("vid-floor");
        }
        flags.join("|")
    }

    fn last_talking_secs(&self) -> u64 {
        if self.talking {
            return 0;
        }
        self.last_talking.map_or(0, |t| t.elapsed().as_secs())
    }
}

/// A recording (`conference <name> record <path>`): a recording node in FreeSWITCH, which also
/// draws a member id.
#[derive(Clone, Debug)]
pub(crate) struct Recording {
    pub path: String,
    pub started: Instant,
    pub started_at: SystemTime,
}

/// A live conference.
#[derive(Clone, Debug)]
pub(crate) struct Conference {
    pub name: String,
    pub domain: String,
    /// `Conference-Profile-Name` (`none` for an unknown profile).
    pub profile_name: String,
    pub rate: u32,
    pub video_mux: bool,
    pub uuid: String,
    /// Members in join order (listings show them newest first).
    pub members: Vec<Member>,
    pub floor: Option<u32>,
    pub video_floor: Option<u32>,
    pub locked: bool,
    pub recordings: Vec<Recording>,
    pub presence_count: u32,
    pub created: Instant,
}

pub(crate) const ADD_MEMBER: Origin = at("conference_member.c", "conference_member_add", 962);
pub(crate) const DEL_MEMBER: Origin = at("conference_member.c", "conference_member_del", 1355);
const FLOOR_CHANGE: Origin = at(
    "conference_member.c",
    "conference_member_set_floor_holder",
    1158,
);
const START_TALKING: Origin = at("conference_loop.c", "conference_loop_input", 1154);
const STOP_TALKING: Origin = at("conference_loop.c", "stop_talking_handler", 783);
pub(crate) const MUTE: Origin = at("conference_api.c", "conference_api_sub_mute", 339);
pub(crate) const UNMUTE: Origin = at("conference_api.c", "conference_api_sub_unmute", 492);
pub(crate) const KICK: Origin = at("conference_api.c", "conference_api_sub_kick", 902);
const CREATE: Origin = at("mod_conference.c", "conference_new", 3848);
const DESTROY: Origin = at("mod_conference.c", "conference_thread_run", 863);
const PRESENCE: Origin = at("mod_conference.c", "conference_send_presence", 3870);
// Not in the captures: the function names are mod_conference's, the line numbers estimates.
pub(crate) const DEAF: Origin = at("conference_api.c", "conference_api_sub_deaf", 613);
pub(crate) const UNDEAF: Origin = at("conference_api.c", "conference_api_sub_undeaf", 640);
pub(crate) const VMUTE: Origin = at("conference_api.c", "conference_api_sub_vmute", 420);
pub(crate) const UNVMUTE: Origin = at("conference_api.c", "conference_api_sub_unvmute", 540);
pub(crate) const HUP: Origin = at("conference_api.c", "conference_api_sub_hup", 866);
const LOCK: Origin = at("conference_api.c", "conference_api_sub_lock", 2541);
const UNLOCK: Origin = at("conference_api.c", "conference_api_sub_unlock", 2577);
const PLAY: Origin = at("conference_api.c", "conference_api_sub_play", 2817);
const START_RECORDING: Origin = at("conference_record.c", "conference_record_thread_run", 254);
const STOP_RECORDING: Origin = at("conference_record.c", "conference_record_thread_run", 403);
const VIDEO_FLOOR: Origin = at(
    "conference_video.c",
    "conference_video_set_floor_holder",
    4046,
);

/// Energy values reported while talking / after talking (measured audio in FreeSWITCH; the
/// capture shows ~5000 for SIPp's tone and 8 for silence).
pub(crate) const TALKING_ENERGY: u32 = 5085;
pub(crate) const SILENCE_ENERGY: u32 = 8;

impl Conference {
    pub fn new(name: &str, domain: &str, profile: Option<&ConferenceProfile>) -> Conference {
        Conference {
            name: name.to_owned(),
            domain: domain.to_owned(),
            profile_name: profile.map_or_else(|| "none".to_owned(), |p| p.name.clone()),
            rate: profile.map_or(8000, |p| p.rate),
            video_mux: profile.is_some_and(|p| p.video_mux),
            uuid: uuid::Uuid::new_v4().to_string(),
            members: Vec::new(),
            floor: None,
            video_floor: None,
            locked: false,
            recordings: Vec::new(),
            presence_count: 0,
            created: Instant::now(),
        }
    }

    pub fn member(&self, id: u32) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: u32) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// `Conference-Size`: members, ghosts excluded (fsim has no ghosts).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The C block.
    pub fn add_data(&self, b: &mut EventBuilder) {
        b.add("Conference-Name", &self.name);
        b.add("Conference-Domain", &self.domain);
        b.add_display("Conference-Size", self.size());
        b.add("Conference-Ghosts", "0");
        b.add("Conference-Profile-Name", &self.profile_name);
        b.add("Conference-Unique-ID", &self.uuid);
    }

    /// The M block of `member`, whose channel is `channel`.
    pub fn add_member_data(
        &self,
        b: &mut EventBuilder,
        member: &Member,
        channel: Option<&Channel>,
    ) {
        self.add_data(b);
        b.add_bool("Floor", self.floor == Some(member.id));
        if let Some(ch) = channel {
            ch.add_basic(b);
        }
        b.add("Video", "false");
        b.add_bool("Hear", member.hear);
        b.add("See", "true");
        b.add_bool("Speak", member.speak);
        b.add_bool("Talking", member.talking);
        b.add("Mute-Detect", "false");
        b.add("Hold", "false");
        b.add_display("Member-ID", member.id);
        b.add("Member-Type", "member");
        b.add("Member-Ghost", "false");
        b.add_display("Energy-Level", member.energy_level);
        b.add_display("Current-Energy", member.current_energy);
    }

    fn base(&self, ctx: &EventCtx, origin: Origin) -> EventBuilder {
        ctx.custom(CONFERENCE_MAINTENANCE, origin)
    }

    /// A C-only event (`conference-create`, `conference-destroy`, `lock`, `unlock`).
    pub fn conference_event(&self, ctx: &EventCtx, action: &str, origin: Origin) -> Event {
        let mut b = self.base(ctx, origin);
        self.add_data(&mut b);
        b.add("Action", action);
        b.build()
    }

    pub fn created_event(&self, ctx: &EventCtx) -> Event {
        self.conference_event(ctx, "conference-create", CREATE)
    }

    pub fn destroyed_event(&self, ctx: &EventCtx) -> Event {
        self.conference_event(ctx, "conference-destroy", DESTROY)
    }

    pub fn lock_event(&self, ctx: &EventCtx, lock: bool) -> Event {
        if lock {
            self.conference_event(ctx, "lock", LOCK)
        } else {
            self.conference_event(ctx, "unlock", UNLOCK)
        }
    }

    /// `play-file` of `conference <name> play <file>`: C block, `Action`, `File`, `Async`
    /// (conference_api.c; not captured).
    pub fn play_event(&self, ctx: &EventCtx, file: &str, is_async: bool) -> Event {
        let mut b = self.base(ctx, PLAY);
        self.add_data(&mut b);
        b.add("Action", "play-file");
        b.add("File", file);
        b.add("Async", if is_async { "true" } else { "false" });
        b.build()
    }

    /// A member event (M block, then `Action`).
    pub fn member_event(
        &self,
        ctx: &EventCtx,
        member: &Member,
        channel: Option<&Channel>,
        action: &str,
        origin: Origin,
    ) -> Event {
        let mut b = self.base(ctx, origin);
        self.add_member_data(&mut b, member, channel);
        b.add("Action", action);
        b.build()
    }

    pub fn add_member_event(&self, ctx: &EventCtx, m: &Member, ch: Option<&Channel>) -> Event {
        self.member_event(ctx, m, ch, "add-member", ADD_MEMBER)
    }

    pub fn del_member_event(&self, ctx: &EventCtx, m: &Member, ch: Option<&Channel>) -> Event {
        self.member_event(ctx, m, ch, "del-member", DEL_MEMBER)
    }

    pub fn start_talking_event(&self, ctx: &EventCtx, m: &Member, ch: Option<&Channel>) -> Event {
        self.member_event(ctx, m, ch, "start-talking", START_TALKING)
    }

    pub fn stop_talking_event(&self, ctx: &EventCtx, m: &Member, ch: Option<&Channel>) -> Event {
        self.member_event(ctx, m, ch, "stop-talking", STOP_TALKING)
    }

    /// Moves the floor to `new` (`None`: nobody) and returns the `floor-change` event, or
    /// `None` when nothing changes. `report_old` false reproduces the captured departure of the
    /// holder (`Old-ID: none`).
    pub fn set_floor(
        &mut self,
        ctx: &EventCtx,
        new: Option<u32>,
        channels: &Channels,
        report_old: bool,
    ) -> Option<Event> {
        if self.floor == new && new.is_some() {
            return None;
        }
        let old = self.floor;
        self.floor = new;
        let mut b = self.base(ctx, FLOOR_CHANGE);
        self.add_data(&mut b);
        b.add("Action", "floor-change");
        match old.filter(|_| report_old) {
            Some(id) => b.add_display("Old-ID", id),
            None => b.add("Old-ID", "none"),
        };
        match new.and_then(|id| self.member(id)) {
            Some(m) => {
                let ch = channels.get(&m.channel);
                self.add_member_data(&mut b, m, ch);
                b.add_display("New-ID", m.id);
            }
            None => {
                b.add("New-ID", "none");
            }
        }
        Some(b.build())
    }

    /// `video-floor-change`: C, `Action`, `Old-ID`, `New-ID`.
    pub fn set_video_floor(&mut self, ctx: &EventCtx, new: Option<u32>) -> Event {
        let old = self.video_floor;
        self.video_floor = new;
        let mut b = self.base(ctx, VIDEO_FLOOR);
        self.add_data(&mut b);
        b.add("Action", "video-floor-change");
        match old {
            Some(id) => b.add_display("Old-ID", id),
            None => b.add("Old-ID", "none"),
        };
        match new {
            Some(id) => b.add_display("New-ID", id),
            None => b.add("New-ID", "none"),
        };
        b.build()
    }

    /// The member that should take the floor when the holder can no longer keep it: the most
    /// recent talker that can speak, other than `except`.
    pub fn best_talker(&self, except: Option<u32>) -> Option<u32> {
        self.members
            .iter()
            .filter(|m| m.talking && m.speak && Some(m.id) != except)
            .max_by_key(|m| m.talk_started)
            .map(|m| m.id)
    }

    /// The conference's presence (`PRESENCE_IN`, `proto: conf`), sent on every join and leave.
    pub fn presence_event(&mut self, ctx: &EventCtx) -> Event {
        let mut b = ctx.event("PRESENCE_IN", PRESENCE);
        b.add("proto", "conf");
        b.add("login", &self.name);
        b.add("from", &format!("{}@{}", self.name, self.domain));
        b.add("event_type", "presence");
        b.add("alt_event_type", "dialog");
        b.add_display("event_count", self.presence_count);
        b.add("unique-id", &self.name);
        match self.size() {
            0 => {
                b.add("force-status", "Inactive");
                b.add("channel-state", "CS_HANGUP");
                b.add("answer-state", "terminated");
                b.add("call-direction", "inbound");
            }
            1 => {
                b.add("force-status", "Active (1 caller)");
                b.add("channel-state", "CS_ROUTING");
                b.add("answer-state", "early");
                b.add("presence-call-direction", "outbound");
            }
            n => {
                b.add("force-status", &format!("Active ({n} callers)"));
                b.add("channel-state", "CS_ROUTING");
                b.add("answer-state", "confirmed");
                b.add("presence-call-direction", "inbound");
            }
        }
        self.presence_count += 1;
        b.build()
    }

    /// `start-recording`: C, `Action`, `Path`.
    pub fn start_recording_event(&self, ctx: &EventCtx, path: &str) -> Event {
        let mut b = self.base(ctx, START_RECORDING);
        self.add_data(&mut b);
        b.add("Action", "start-recording");
        b.add("Path", path);
        b.build()
    }

    /// `stop-recording`: C, `Action`, `Path`, `Other-Recordings`, `Samples-Out`, `Samplerate`,
    /// `Milliseconds-Elapsed`.
    pub fn stop_recording_event(&self, ctx: &EventCtx, rec: &Recording, others: usize) -> Event {
        let ms = u64::try_from(rec.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut b = self.base(ctx, STOP_RECORDING);
        self.add_data(&mut b);
        b.add("Action", "stop-recording");
        b.add("Path", &rec.path);
        b.add(
            "Other-Recordings",
            if others > 0 { "true" } else { "false" },
        );
        b.add_display("Samples-Out", ms * u64::from(self.rate) / 1000);
        b.add_display("Samplerate", self.rate);
        b.add_display("Milliseconds-Elapsed", ms);
        b.build()
    }

    /// The flags of the `conference list` header line.
    fn list_flags(&self) -> String {
        let mut flags = Vec::new();
        if self.locked {
            flags.push("locked");
        }
        flags.extend([
            "running",
            "answered",
            "enforce_min",
            "dynamic",
            "exit_sound",
            "enter_sound",
        ]);
        if !self.recordings.is_empty() {
            flags.push("recording");
        }
        if self.video_mux {
            flags.push("video_muxing");
        }
        flags.push("json_status");
        flags.join("|")
    }

    /// `+OK Conference <name> (<n> member[s] rate: <rate>[ locked] flags: ...)`.
    pub fn list_header(&self, out: &mut String) {
        let n = self.size();
        let _ = writeln!(
            out,
            "+OK Conference {} ({} member{} rate: {}{} flags: {})",
            self.name,
            n,
            if n == 1 { "" } else { "s" },
            self.rate,
            if self.locked { " locked" } else { "" },
            self.list_flags()
        );
    }

    /// The member lines of `conference [<name>] list`, newest member first.
    pub fn list_members(&self, out: &mut String, delim: &str, channels: &Channels) {
        for m in self.members.iter().rev() {
            let ch = channels.get(&m.channel);
            let (name, (cid_name, cid_num)) = match ch {
                Some(c) => (c.name.as_str(), c.caller_id()),
                None => ("", ("", "")),
            };
            let fields = [
                m.id.to_string(),
                name.to_owned(),
                m.channel.clone(),
                cid_name.to_owned(),
                cid_num.to_owned(),
                m.list_flags(self.floor == Some(m.id), self.video_floor == Some(m.id)),
                "0".to_owned(),
                "0".to_owned(),
                m.energy_level.to_string(),
            ];
            out.push_str(&fields.join(delim));
            out.push('\n');
        }
    }

    /// One conference object of `json_list`.
    pub fn json(&self, channels: &Channels) -> Json {
        let mut members = Vec::new();
        for m in self.members.iter().rev() {
            let ch = channels.get(&m.channel);
            let (cid_name, cid_num) = ch.map_or(("", ""), |c| c.caller_id());
            members.push(Json::Object(vec![
                ("type".into(), Json::str("caller")),
                ("id".into(), Json::Int(i64::from(m.id))),
                (
                    "flags".into(),
                    Json::Object(vec![
                        ("can_hear".into(), Json::Bool(m.hear)),
                        ("can_see".into(), Json::Bool(true)),
                        ("can_speak".into(), Json::Bool(m.speak)),
                        ("hold".into(), Json::Bool(false)),
                        ("mute_detect".into(), Json::Bool(false)),
                        ("talking".into(), Json::Bool(m.talking)),
                        ("has_video".into(), Json::Bool(false)),
                        ("video_bridge".into(), Json::Bool(false)),
                        ("has_floor".into(), Json::Bool(self.floor == Some(m.id))),
                        ("is_moderator".into(), Json::Bool(false)),
                        ("end_conference".into(), Json::Bool(false)),
                        ("mandatory_member_end_conference".into(), Json::Bool(false)),
                        ("pass_digits".into(), Json::Bool(false)),
                    ]),
                ),
                ("uuid".into(), Json::str(&m.channel)),
                ("caller_id_name".into(), Json::str(cid_name)),
                ("caller_id_number".into(), Json::str(cid_num)),
                ("join_time".into(), Json::secs(m.joined.elapsed().as_secs())),
                ("last_talking".into(), Json::secs(m.last_talking_secs())),
                ("energy".into(), Json::Int(i64::from(m.energy_level))),
                ("volume_in".into(), Json::Int(0)),
                ("volume_out".into(), Json::Int(0)),
                ("output-volume".into(), Json::Int(0)),
                ("input-volume".into(), Json::Int(0)),
            ]));
        }
        for rec in self.recordings.iter().rev() {
            let epoch = rec
                .started_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            members.push(Json::Object(vec![
                ("type".into(), Json::str("recording_node")),
                ("record_path".into(), Json::str(&rec.path)),
                ("join_time".into(), Json::secs(epoch)),
            ]));
        }
        let flag = |name: &str, v: bool| (name.to_owned(), Json::Bool(v));
        Json::Object(vec![
            ("conference_name".into(), Json::str(&self.name)),
            ("member_count".into(), Json::Int(self.size() as i64)),
            ("ghost_count".into(), Json::Int(0)),
            ("rate".into(), Json::Int(i64::from(self.rate))),
            (
                "run_time".into(),
                Json::secs(self.created.elapsed().as_secs()),
            ),
            ("conference_uuid".into(), Json::str(&self.uuid)),
            ("canvas_count".into(), Json::Int(i64::from(self.video_mux))),
            ("max_bw_in".into(), Json::Int(0)),
            ("force_bw_in".into(), Json::Int(0)),
            ("video_floor_packets".into(), Json::Int(0)),
            flag("locked", self.locked),
            flag("destruct", false),
            flag("wait_mod", false),
            flag("audio_always", false),
            flag("running", true),
            flag("answered", true),
            flag("enforce_min", true),
            flag("bridge_to", false),
            flag("dynamic", true),
            flag("exit_sound", true),
            flag("enter_sound", true),
            flag("recording", !self.recordings.is_empty()),
            flag("video_bridge", false),
            flag("video_floor_only", false),
            flag("video_rfc4579", false),
            ("variables".into(), Json::Object(Vec::new())),
            ("members".into(), Json::Array(members)),
        ])
    }

    /// One `<conference>` element of `xml_list` (layout not captured: attribute and element
    /// names follow mod_conference, whitespace is fsim's).
    pub fn xml(&self, out: &mut String, channels: &Channels) {
        let _ = writeln!(
            out,
            "  <conference name=\"{}\" member-count=\"{}\" ghost-count=\"0\" rate=\"{}\" uuid=\"{}\" \
             running=\"true\" answered=\"true\" enforce_min=\"true\" dynamic=\"true\" \
             exit_sound=\"true\" enter_sound=\"true\"{}{} run_time=\"{}\">",
            xml_escape(&self.name),
            self.size(),
            self.rate,
            self.uuid,
            if self.locked { " locked=\"true\"" } else { "" },
            if self.recordings.is_empty() {
                ""
            } else {
                " recording=\"true\""
            },
            self.created.elapsed().as_secs()
        );
        out.push_str("    <members>\n");
        for m in self.members.iter().rev() {
            let ch = channels.get(&m.channel);
            let (cid_name, cid_num) = ch.map_or(("", ""), |c| c.caller_id());
            out.push_str("      <member type=\"caller\">\n");
            let _ = writeln!(out, "        <id>{}</id>", m.id);
            out.push_str("        <flags>\n");
            for (name, v) in [
                ("can_hear", m.hear),
                ("can_see", true),
                ("can_speak", m.speak),
                ("mute_detect", false),
                ("talking", m.talking),
                ("has_video", false),
                ("video_bridge", false),
                ("has_floor", self.floor == Some(m.id)),
                ("is_moderator", false),
                ("end_conference", false),
            ] {
                let _ = writeln!(out, "          <{name}>{v}</{name}>");
            }
            out.push_str("        </flags>\n");
            let _ = writeln!(out, "        <uuid>{}</uuid>", m.channel);
            let _ = writeln!(
                out,
                "        <caller_id_name>{}</caller_id_name>",
                xml_escape(cid_name)
            );
            let _ = writeln!(
                out,
                "        <caller_id_number>{}</caller_id_number>",
                xml_escape(cid_num)
            );
            let _ = writeln!(
                out,
                "        <join_time>{}</join_time>",
                m.joined.elapsed().as_secs()
            );
            let _ = writeln!(
                out,
                "        <last_talking>{}</last_talking>",
                m.last_talking_secs()
            );
            let _ = writeln!(out, "        <energy>{}</energy>", m.energy_level);
            out.push_str("        <volume_in>0</volume_in>\n        <volume_out>0</volume_out>\n");
            out.push_str("        <output-volume>0</output-volume>\n        <input-volume>0</input-volume>\n");
            out.push_str("      </member>\n");
        }
        for rec in &self.recordings {
            out.push_str("      <member type=\"recording_node\">\n");
            let _ = writeln!(
                out,
                "        <record_path>{}</record_path>",
                xml_escape(&rec.path)
            );
            out.push_str("      </member>\n");
        }
        out.push_str("    </members>\n  </conference>\n");
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON value printed the way cJSON does (`cJSON_Print`: tab indentation, `"key":\tvalue`,
/// arrays joined by `, `; `cJSON_PrintUnformatted` for `compact`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    fn secs(s: u64) -> Json {
        Json::Int(i64::try_from(s).unwrap_or(i64::MAX))
    }

    /// cJSON's formatted output.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0, true);
        out
    }

    /// cJSON's unformatted output.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0, false);
        out
    }

    fn write(&self, out: &mut String, depth: usize, fmt: bool) {
        match self {
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Str(s) => write_json_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                        if fmt {
                            out.push(' ');
                        }
                    }
                    item.write(out, depth + 1, fmt);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                let depth = depth + 1;
                out.push('{');
                if fmt {
                    out.push('\n');
                }
                for (i, (key, value)) in fields.iter().enumerate() {
                    if fmt {
                        out.extend(std::iter::repeat_n('\t', depth));
                    }
                    write_json_string(out, key);
                    out.push(':');
                    if fmt {
                        out.push('\t');
                    }
                    value.write(out, depth, fmt);
                    if i + 1 < fields.len() {
                        out.push(',');
                    }
                    if fmt {
                        out.push('\n');
                    }
                }
                if fmt {
                    out.extend(std::iter::repeat_n('\t', depth - 1));
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjson_pretty_layout() {
        let v = Json::Array(vec![Json::Object(vec![
            ("a".into(), Json::Int(1)),
            ("v".into(), Json::Object(Vec::new())),
            (
                "m".into(),
                Json::Array(vec![
                    Json::Object(vec![("x".into(), Json::Bool(true))]),
                    Json::Object(vec![("y".into(), Json::str("z"))]),
                ]),
            ),
        ])]);
        assert_eq!(
            v.pretty(),
            "[{\n\t\t\"a\":\t1,\n\t\t\"v\":\t{\n\t\t},\n\t\t\"m\":\t[{\n\t\t\t\t\"x\":\ttrue\n\t\t\t}, {\n\t\t\t\t\"y\":\t\"z\"\n\t\t\t}]\n\t}]"
        );
        assert_eq!(
            v.compact(),
            "[{\"a\":1,\"v\":{},\"m\":[{\"x\":true},{\"y\":\"z\"}]}]"
        );
    }

    #[test]
    fn header_line_plural_and_lock() {
        let mut c = Conference::new("3000", "127.0.0.1", ConferenceProfile::vanilla().first());
        c.members.push(Member::new(1, "u".into()));
        let mut s = String::new();
        c.list_header(&mut s);
        assert_eq!(
            s,
            "+OK Conference 3000 (1 member rate: 8000 flags: running|answered|enforce_min|dynamic|exit_sound|enter_sound|json_status)\n"
        );
        c.locked = true;
        c.members.push(Member::new(2, "v".into()));
        s.clear();
        c.list_header(&mut s);
        assert!(
            s.starts_with("+OK Conference 3000 (2 members rate: 8000 locked flags: locked|running")
        );
    }

    #[test]
    fn best_talker_prefers_latest() {
        let mut c = Conference::new("c", "d", None);
        assert_eq!(c.profile_name, "none");
        let mut a = Member::new(1, "a".into());
        let mut b = Member::new(2, "b".into());
        a.talking = true;
        a.talk_started = Some(Instant::now());
        b.talking = true;
        b.talk_started = Some(Instant::now() + std::time::Duration::from_millis(5));
        c.members.push(a);
        c.members.push(b);
        assert_eq!(c.best_talker(None), Some(2));
        assert_eq!(c.best_talker(Some(2)), Some(1));
        c.members[0].speak = false;
        assert_eq!(c.best_talker(Some(2)), None);
    }
}
