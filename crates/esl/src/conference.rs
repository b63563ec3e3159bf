//! Typed access to mod_conference's `conference::maintenance` events.
//!
//! The header groups are described in the protocol notes: every event carries the conference
//! block (`Conference-Name`, `-Size`, `-Unique-ID`, ...) and `Action`; member actions add the
//! member block (`Member-ID`, `Speak`, `Talking`, `Floor`, channel data). In `floor-change` the
//! conference block is repeated before the new holder's member block; the first value is used.

use crate::event::Event;

/// The `Event-Subclass` of mod_conference's events.
pub const MAINTENANCE: &str = "conference::maintenance";

/// The `Action` of a conference event. Unknown actions are kept verbatim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    ConferenceCreate,
    ConferenceDestroy,
    AddMember,
    DelMember,
    StartTalking,
    StopTalking,
    MuteMember,
    UnmuteMember,
    DeafMember,
    UndeafMember,
    VmuteMember,
    UnvmuteMember,
    KickMember,
    HupMember,
    FloorChange,
    VideoFloorChange,
    Lock,
    Unlock,
    StartRecording,
    StopRecording,
    PlayFile,
    PlayFileDone,
    /// Any other action (`dtmf`, `energy-level`, `talk-report`, ...).
    Other(&'a str),
}

impl<'a> Action<'a> {
    /// Parses an `Action` header value.
    pub fn parse(action: &'a str) -> Action<'a> {
        match action {
            "conference-create" => Action::ConferenceCreate,
            "conference-destroy" => Action::ConferenceDestroy,
            "add-member" => Action::AddMember,
            "del-member" => Action::DelMember,
            "start-talking" => Action::StartTalking,
            "stop-talking" => Action::StopTalking,
            "mute-member" => Action::MuteMember,
            "unmute-member" => Action::UnmuteMember,
            "deaf-member" => Action::DeafMember,
            "undeaf-member" => Action::UndeafMember,
            "vmute-member" => Action::VmuteMember,
            "unvmute-member" => Action::UnvmuteMember,
            "kick-member" => Action::KickMember,
            "hup-member" => Action::HupMember,
            "floor-change" => Action::FloorChange,
            "video-floor-change" => Action::VideoFloorChange,
            "lock" => Action::Lock,
            "unlock" => Action::Unlock,
            "start-recording" => Action::StartRecording,
            "stop-recording" => Action::StopRecording,
            "play-file" => Action::PlayFile,
            "play-file-done" => Action::PlayFileDone,
            other => Action::Other(other),
        }
    }

    /// The wire name of the action.
    pub fn as_str(&self) -> &'a str {
        match self {
            Action::ConferenceCreate => "conference-create",
            Action::ConferenceDestroy => "conference-destroy",
            Action::AddMember => "add-member",
            Action::DelMember => "del-member",
            Action::StartTalking => "start-talking",
            Action::StopTalking => "stop-talking",
            Action::MuteMember => "mute-member",
            Action::UnmuteMember => "unmute-member",
            Action::DeafMember => "deaf-member",
            Action::UndeafMember => "undeaf-member",
            Action::VmuteMember => "vmute-member",
            Action::UnvmuteMember => "unvmute-member",
            Action::KickMember => "kick-member",
            Action::HupMember => "hup-member",
            Action::FloorChange => "floor-change",
            Action::VideoFloorChange => "video-floor-change",
            Action::Lock => "lock",
            Action::Unlock => "unlock",
            Action::StartRecording => "start-recording",
            Action::StopRecording => "stop-recording",
            Action::PlayFile => "play-file",
            Action::PlayFileDone => "play-file-done",
            Action::Other(s) => s,
        }
    }
}

/// A borrowed view on a `conference::maintenance` event.
#[derive(Clone, Copy, Debug)]
pub struct ConferenceEvent<'a> {
    event: &'a Event,
}

impl<'a> ConferenceEvent<'a> {
    /// `Some` when `event` is a `conference::maintenance` event. (Only the subclass is checked:
    /// `Event-Subclass` comes first in CUSTOM events, `Action` often last, so this stays cheap
    /// on the ingest path.)
    pub fn new(event: &'a Event) -> Option<Self> {
        (event.subclass() == Some(MAINTENANCE)).then_some(ConferenceEvent { event })
    }

    /// The underlying event.
    pub fn event(&self) -> &'a Event {
        self.event
    }

    /// The action (`Other("")` if the event has no `Action` header).
    pub fn action(&self) -> Action<'a> {
        Action::parse(self.event.get("Action").unwrap_or(""))
    }

    /// `Conference-Name`.
    pub fn name(&self) -> &'a str {
        self.event.get("Conference-Name").unwrap_or("")
    }

    /// `Conference-Unique-ID`: one per conference object (a re-created conference gets a new one).
    pub fn conference_uuid(&self) -> Option<&'a str> {
        self.event.get("Conference-Unique-ID")
    }

    /// `Conference-Size`: members after the change (ghosts excluded).
    pub fn size(&self) -> Option<u32> {
        self.event.get("Conference-Size")?.parse().ok()
    }

    /// `Conference-Profile-Name` (`none` when the profile did not exist).
    pub fn profile(&self) -> Option<&'a str> {
        self.event.get("Conference-Profile-Name")
    }

    /// `Conference-Domain`.
    pub fn domain(&self) -> Option<&'a str> {
        self.event.get("Conference-Domain")
    }

    /// `Member-ID` (member actions; for `floor-change`, the new holder).
    pub fn member_id(&self) -> Option<u32> {
        self.event.get("Member-ID")?.parse().ok()
    }

    /// The member's channel `Unique-ID`.
    pub fn channel_uuid(&self) -> Option<&'a str> {
        self.event.get("Unique-ID")
    }

    /// `Member-Type` (`member` or `moderator`).
    pub fn member_type(&self) -> Option<&'a str> {
        self.event.get("Member-Type")
    }

    /// `Caller-Username`: for a SIP caller, the authenticated user.
    pub fn caller_username(&self) -> Option<&'a str> {
        self.event.get("Caller-Username")
    }

    /// `Caller-Caller-ID-Number`.
    pub fn caller_id_number(&self) -> Option<&'a str> {
        self.event.get("Caller-Caller-ID-Number")
    }

    /// `Caller-Caller-ID-Name`.
    pub fn caller_id_name(&self) -> Option<&'a str> {
        self.event.get("Caller-Caller-ID-Name")
    }

    /// `Talking`.
    pub fn talking(&self) -> Option<bool> {
        self.flag("Talking")
    }

    /// `Speak` (false while muted).
    pub fn speak(&self) -> Option<bool> {
        self.flag("Speak")
    }

    /// `Hear` (false while deaf).
    pub fn hear(&self) -> Option<bool> {
        self.flag("Hear")
    }

    /// `See` (false while video-blind).
    pub fn see(&self) -> Option<bool> {
        self.flag("See")
    }

    /// `Video`: the member's channel has video.
    pub fn video(&self) -> Option<bool> {
        self.flag("Video")
    }

    /// `Floor`: the member holds the audio floor.
    pub fn floor(&self) -> Option<bool> {
        self.flag("Floor")
    }

    /// `Hold`.
    pub fn hold(&self) -> Option<bool> {
        self.flag("Hold")
    }

    /// `Old-ID` of a floor change (`None` for `none` or when absent).
    pub fn old_floor_id(&self) -> Option<u32> {
        self.event.get("Old-ID")?.parse().ok()
    }

    /// `New-ID` of a floor change (`None` for `none` or when absent).
    pub fn new_floor_id(&self) -> Option<u32> {
        self.event.get("New-ID")?.parse().ok()
    }

    /// `Path` of a recording event.
    pub fn recording_path(&self) -> Option<&'a str> {
        self.event.get("Path")
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.event.get(name)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}
