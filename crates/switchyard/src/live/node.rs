//! `NodeLive`: the conferences and members live on one node, kept by the replica that owns the
//! node (its lease holder) from `conference::maintenance` events and from `conference json_list`
//! snapshots. Pure: no IO, time is an argument. Every input returns the [`Change`]s it caused,
//! which the caller persists (shared live store) and announces (events, webhooks).
//!
//! Inputs are idempotent, because after a (re)connect events queued before a snapshot may be
//! applied after it: an `add-member` for a known member updates it, a `del-member` for an
//! unknown one is ignored.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use esl::conference::{Action, ConferenceEvent};

use super::snapshot::ConferenceSnapshot;
use super::{Change, LeaveReason, Member};

/// One live conference on the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveConference {
    /// FreeSWITCH's `Conference-Unique-ID`.
    pub uuid: Option<String>,
    pub members: BTreeMap<u32, Member>,
}

/// Everything live on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLive {
    node: String,
    conferences: BTreeMap<String, LiveConference>,
    /// Why members are about to leave: announced by Switchyard (uninvited, ended, …) or by a
    /// `kick-member` event, so that their `del-member` carries the reason.
    exits: Vec<(String, u32, LeaveReason)>,
}

impl NodeLive {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            conferences: BTreeMap::new(),
            exits: Vec::new(),
        }
    }

    /// Rebuilds the state from what the shared store holds (after taking the node over).
    pub fn from_parts(
        node: impl Into<String>,
        conferences: BTreeMap<String, LiveConference>,
    ) -> Self {
        Self {
            node: node.into(),
            conferences,
            exits: Vec::new(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn conferences(&self) -> &BTreeMap<String, LiveConference> {
        &self.conferences
    }

    pub fn member_count(&self) -> usize {
        self.conferences.values().map(|c| c.members.len()).sum()
    }

    /// Applies one `conference::maintenance` event.
    pub fn apply_event(&mut self, ev: &ConferenceEvent<'_>, now: DateTime<Utc>) -> Vec<Change> {
        let name = ev.name();
        let mut changes = Vec::new();
        match ev.action() {
            Action::ConferenceCreate => {
                self.ensure_conference(name, ev.conference_uuid(), &mut changes);
            }
            Action::ConferenceDestroy => {
                self.end_conference(name, LeaveReason::Hangup, &mut changes);
            }
            Action::AddMember => {
                let Some(id) = ev.member_id() else {
                    return changes;
                };
                // `Member-Type` is `member` or `moderator` here (json_list says `caller`).
                if ev.member_type() == Some("recording_node") {
                    return changes;
                }
                self.ensure_conference(name, ev.conference_uuid(), &mut changes);
                let node = self.node.clone();
                let Some(conf) = self.conferences.get_mut(name) else {
                    return changes;
                };
                let known = conf.members.contains_key(&id);
                let member = conf.members.entry(id).or_insert_with(|| Member {
                    conference: name.to_owned(),
                    node,
                    member_id: id,
                    user_id: ev.caller_id_number().map(str::to_owned),
                    caller_id_name: ev.caller_id_name().unwrap_or_default().to_owned(),
                    channel_uuid: ev.channel_uuid().map(str::to_owned),
                    joined_at: now,
                    last_talking_at: None,
                    talking: false,
                    muted: false,
                    deaf: false,
                    video: false,
                    floor: false,
                });
                flags_from_event(member, ev, now);
                let member = member.clone();
                changes.push(if known {
                    Change::MemberUpdated(member)
                } else {
                    Change::MemberJoined {
                        member,
                        reconciled: false,
                    }
                });
            }
            Action::DelMember => {
                if let Some(id) = ev.member_id() {
                    let reason = self.take_exit(name, id).unwrap_or(LeaveReason::Hangup);
                    if let Some(member) = self
                        .conferences
                        .get_mut(name)
                        .and_then(|c| c.members.remove(&id))
                    {
                        changes.push(Change::MemberLeft { member, reason });
                    }
                }
            }
            Action::KickMember => {
                // A kick Switchyard announced keeps its own reason (uninvited, ended, …).
                if let Some(id) = ev.member_id()
                    && !self.exits.iter().any(|(n, i, _)| n == name && *i == id)
                {
                    self.exits.push((name.to_owned(), id, LeaveReason::Kicked));
                }
            }
            Action::StartTalking
            | Action::StopTalking
            | Action::MuteMember
            | Action::UnmuteMember
            | Action::DeafMember
            | Action::UndeafMember
            | Action::VmuteMember
            | Action::UnvmuteMember
            | Action::VideoFloorChange => {
                if let Some(member) = ev
                    .member_id()
                    .and_then(|id| self.conferences.get_mut(name)?.members.get_mut(&id))
                {
                    let before = member.clone();
                    flags_from_event(member, ev, now);
                    if *member != before {
                        changes.push(Change::MemberUpdated(member.clone()));
                    }
                }
            }
            Action::FloorChange => self.move_floor(name, ev, &mut changes),
            Action::StartRecording => {
                if let Some(path) = ev.recording_path() {
                    changes.push(Change::RecordingStarted {
                        node: self.node.clone(),
                        name: name.to_owned(),
                        path: path.to_owned(),
                        error: ev.event().get("Error").map(str::to_owned),
                    });
                }
            }
            Action::StopRecording => {
                if let Some(path) = ev.recording_path() {
                    changes.push(Change::RecordingStopped {
                        node: self.node.clone(),
                        name: name.to_owned(),
                        path: path.to_owned(),
                        milliseconds: ev
                            .event()
                            .get("Milliseconds-Elapsed")
                            .and_then(|v| v.trim().parse().ok()),
                    });
                }
            }
            _ => {}
        }
        changes
    }

    /// Brings the state in line with a `conference json_list` of the node.
    pub fn reconcile(
        &mut self,
        snapshot: &[ConferenceSnapshot],
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let live: BTreeMap<&str, &ConferenceSnapshot> =
            snapshot.iter().map(|c| (c.name.as_str(), c)).collect();
        let gone: Vec<String> = self
            .conferences
            .keys()
            .filter(|name| !live.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.end_conference(&name, LeaveReason::Reconciled, &mut changes);
        }
        for snap in snapshot {
            self.ensure_conference(&snap.name, snap.uuid.as_deref(), &mut changes);
            let node = self.node.clone();
            let Some(conf) = self.conferences.get_mut(&snap.name) else {
                continue;
            };
            let present: BTreeMap<u32, _> = snap.members.iter().map(|m| (m.id, m)).collect();
            let left: Vec<u32> = conf
                .members
                .keys()
                .filter(|id| !present.contains_key(id))
                .copied()
                .collect();
            for id in left {
                if let Some(member) = conf.members.remove(&id) {
                    changes.push(Change::MemberLeft {
                        member,
                        reason: LeaveReason::Reconciled,
                    });
                }
            }
            for m in &snap.members {
                let fresh = Member {
                    conference: snap.name.clone(),
                    node: node.clone(),
                    member_id: m.id,
                    user_id: m.caller_id_number.clone(),
                    caller_id_name: m.caller_id_name.clone().unwrap_or_default(),
                    channel_uuid: m.uuid.clone(),
                    joined_at: now - Duration::seconds(i64::from(m.join_time)),
                    last_talking_at: (m.last_talking > 0)
                        .then(|| now - Duration::seconds(i64::from(m.last_talking))),
                    talking: m.talking,
                    muted: !m.can_speak,
                    deaf: !m.can_hear,
                    video: m.has_video,
                    floor: m.has_floor,
                };
                match conf.members.get_mut(&m.id) {
                    Some(known) => {
                        // Keep our own, more precise times; take FreeSWITCH's flags.
                        let updated = Member {
                            joined_at: known.joined_at,
                            last_talking_at: known.last_talking_at.or(fresh.last_talking_at),
                            ..fresh
                        };
                        if *known != updated {
                            *known = updated.clone();
                            changes.push(Change::MemberUpdated(updated));
                        }
                    }
                    None => {
                        conf.members.insert(m.id, fresh.clone());
                        changes.push(Change::MemberJoined {
                            member: fresh,
                            reconciled: true,
                        });
                    }
                }
            }
        }
        changes
    }

    /// Everything on the node is gone (down past the grace period, or restarted).
    pub fn clear(&mut self, reason: LeaveReason) -> Vec<Change> {
        let mut changes = Vec::new();
        let names: Vec<String> = self.conferences.keys().cloned().collect();
        for name in names {
            self.end_conference(&name, reason, &mut changes);
        }
        self.exits.clear();
        changes
    }

    fn ensure_conference(&mut self, name: &str, uuid: Option<&str>, changes: &mut Vec<Change>) {
        if let Some(conf) = self.conferences.get_mut(name) {
            if conf.uuid.is_none() {
                conf.uuid = uuid.map(str::to_owned);
            }
            return;
        }
        self.conferences.insert(
            name.to_owned(),
            LiveConference {
                uuid: uuid.map(str::to_owned),
                members: BTreeMap::new(),
            },
        );
        changes.push(Change::ConferenceStarted {
            node: self.node.clone(),
            name: name.to_owned(),
            uuid: uuid.map(str::to_owned),
        });
    }

    fn end_conference(&mut self, name: &str, reason: LeaveReason, changes: &mut Vec<Change>) {
        let Some(conf) = self.conferences.remove(name) else {
            return;
        };
        for (id, member) in conf.members {
            let reason = self.take_exit(name, id).unwrap_or(reason);
            changes.push(Change::MemberLeft { member, reason });
        }
        self.exits.retain(|(n, _, _)| n != name);
        changes.push(Change::ConferenceEnded {
            node: self.node.clone(),
            name: name.to_owned(),
            reason,
        });
    }

    /// Records why member `id` of conference `name` is about to leave (announced by
    /// Switchyard before it kicks or hangs up the member).
    pub fn expect_exit(&mut self, name: &str, id: u32, reason: LeaveReason) {
        self.exits.retain(|(n, i, _)| !(n == name && *i == id));
        self.exits.push((name.to_owned(), id, reason));
    }

    fn take_exit(&mut self, name: &str, id: u32) -> Option<LeaveReason> {
        let at = self
            .exits
            .iter()
            .position(|(n, i, _)| n == name && *i == id)?;
        Some(self.exits.swap_remove(at).2)
    }

    /// `floor-change`: the member in `New-ID` holds the audio floor, nobody else does.
    fn move_floor(&mut self, name: &str, ev: &ConferenceEvent<'_>, changes: &mut Vec<Change>) {
        let holder = ev.new_floor_id();
        let Some(conf) = self.conferences.get_mut(name) else {
            return;
        };
        for member in conf.members.values_mut() {
            let floor = Some(member.member_id) == holder;
            if member.floor != floor {
                member.floor = floor;
                changes.push(Change::MemberUpdated(member.clone()));
            }
        }
    }
}

/// Copies the member flags an event carries (each header is optional).
fn flags_from_event(member: &mut Member, ev: &ConferenceEvent<'_>, now: DateTime<Utc>) {
    if let Some(talking) = ev.talking() {
        if talking || member.talking {
            member.last_talking_at = Some(now);
        }
        member.talking = talking;
    }
    if let Some(speak) = ev.speak() {
        member.muted = !speak;
    }
    if let Some(hear) = ev.hear() {
        member.deaf = !hear;
    }
    if let Some(video) = ev.video() {
        member.video = video;
    }
    if let Some(floor) = ev.floor() {
        member.floor = floor;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::live::snapshot::parse_json_list;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/freeswitch/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    /// Every event of a captured stream, in order.
    fn events(name: &str) -> Vec<esl::Event> {
        let (frames, _) = esl::frame::decode_all(&fixture(name), esl::Limits::default()).unwrap();
        frames
            .into_iter()
            .filter_map(|f| match esl::Message::try_from(f) {
                Ok(esl::Message::Event(e)) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn replay(live: &mut NodeLive, events: &[esl::Event]) -> Vec<Change> {
        let now = Utc::now();
        events
            .iter()
            .filter_map(|e| e.conference())
            .flat_map(|c| live.apply_event(&c, now))
            .collect()
    }

    fn kinds(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::ConferenceStarted { name, .. } => Some(format!("start {name}")),
                Change::MemberJoined { member, .. } => Some(format!(
                    "join {} {}",
                    member.member_id,
                    member.user_id.as_deref().unwrap_or("-")
                )),
                Change::MemberLeft { member, reason } => {
                    Some(format!("leave {} {}", member.member_id, reason.as_str()))
                }
                Change::ConferenceEnded { name, reason, .. } => {
                    Some(format!("end {name} {}", reason.as_str()))
                }
                Change::MemberUpdated(_) => None,
                Change::RecordingStarted { path, .. } => Some(format!("record {path}")),
                Change::RecordingStopped { path, .. } => Some(format!("stop {path}")),
            })
            .collect()
    }

    /// The captured conference session: two SIP callers, a loopback pair of which one is
    /// kicked, everyone leaves, the conference is destroyed.
    #[test]
    fn the_captured_session_joins_and_leaves_everyone() {
        let mut live = NodeLive::new("fs1");
        let changes = replay(
            &mut live,
            &events("esl-events-plain-conference-maintenance-only.txt"),
        );
        assert_eq!(
            kinds(&changes),
            [
                "start 3000",
                "join 1 1001",
                "join 2 1002",
                "join 3 0000000000",
                "join 4 default",
                "leave 4 kicked",
                "leave 3 hangup",
                "leave 2 hangup",
                "leave 1 hangup",
                "end 3000 hangup",
            ]
        );
        assert!(live.conferences().is_empty());
        // Talking, mute and floor changes were tracked on the way.
        let updates = changes
            .iter()
            .filter(|c| matches!(c, Change::MemberUpdated(_)))
            .count();
        assert!(updates >= 10, "{updates} updates");
        let talked = changes.iter().any(|c| {
            matches!(c, Change::MemberUpdated(m) if m.member_id == 1 && m.last_talking_at.is_some())
        });
        assert!(talked);
    }

    #[test]
    fn replaying_events_twice_changes_nothing_new() {
        let evs = events("esl-events-plain-conference-maintenance-only.txt");
        let joins: Vec<esl::Event> = evs
            .iter()
            .filter(|e| {
                e.conference()
                    .is_some_and(|c| matches!(c.action(), Action::AddMember))
            })
            .cloned()
            .collect();
        let mut live = NodeLive::new("fs1");
        replay(&mut live, &joins);
        let again = replay(&mut live, &joins);
        assert!(
            again.iter().all(|c| matches!(c, Change::MemberUpdated(_))),
            "{again:?}"
        );
        assert_eq!(live.member_count(), 4);
    }

    #[test]
    fn reconcile_adopts_then_closes_what_is_gone() {
        let body = String::from_utf8(fixture("esl-api-conference-3000-json_list.txt")).unwrap();
        let snapshot = parse_json_list(body.split_once("\n\n").unwrap().1).unwrap();
        let now = Utc::now();
        let mut live = NodeLive::new("fs1");
        let changes = live.reconcile(&snapshot, now);
        assert_eq!(
            kinds(&changes),
            ["start 3000", "join 2 1002", "join 1 1001"]
        );
        let Change::MemberJoined { member, reconciled } = &changes[2] else {
            panic!("{changes:?}");
        };
        assert!(*reconciled);
        assert_eq!(member.joined_at, now - Duration::seconds(5));
        assert!(member.floor && member.talking);

        assert!(live.reconcile(&snapshot, now).is_empty(), "idempotent");

        let mut one_left = snapshot.clone();
        one_left[0].members.retain(|m| m.id == 1);
        assert_eq!(
            kinds(&live.reconcile(&one_left, now)),
            ["leave 2 reconciled"]
        );
        assert_eq!(
            kinds(&live.reconcile(&[], now)),
            ["leave 1 reconciled", "end 3000 reconciled"]
        );
    }

    #[test]
    fn clearing_a_node_ends_everything_with_the_reason() {
        let mut live = NodeLive::new("fs1");
        let evs = events("esl-events-plain-conference-maintenance-only.txt");
        // Up to the second add-member.
        let upto: Vec<esl::Event> = evs
            .into_iter()
            .scan(0, |joins, e| {
                if e.conference()
                    .is_some_and(|c| matches!(c.action(), Action::AddMember))
                {
                    *joins += 1;
                }
                (*joins <= 2).then_some(e)
            })
            .collect();
        replay(&mut live, &upto);
        assert_eq!(live.member_count(), 2);
        assert_eq!(
            kinds(&live.clear(LeaveReason::NodeDown)),
            [
                "leave 1 node_down",
                "leave 2 node_down",
                "end 3000 node_down"
            ]
        );
    }
}
