//! What is sent: bus [`Event`]s → webhook events (type + `data`), the `member.talking`
//! debouncer, and the body every delivery carries. Pure: time is an input.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::browser::protocol::CancelReason;
use crate::config::WebhookEventType;
use crate::events::Event;
use crate::live::{Change, Member};
use crate::nodes::health::Health;

/// One event to send, before it is addressed to endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub kind: WebhookEventType,
    pub data: Value,
}

impl WebhookEvent {
    fn new(kind: WebhookEventType, data: Value) -> Self {
        Self { kind, data }
    }
}

/// The body of one delivery: `{"id", "type", "created_at", "data"}`, compact JSON.
pub fn body(id: &str, event: &WebhookEvent, created_at: DateTime<Utc>) -> String {
    json!({
        "id": id,
        "type": event.kind.as_str(),
        "created_at": created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": event.data,
    })
    .to_string()
}

/// A member as webhooks show it (a stable subset of [`Member`]).
fn member(m: &Member) -> Value {
    json!({
        "member_id": m.member_id,
        "user_id": m.user_id,
        "caller_id_name": m.caller_id_name,
        "channel_uuid": m.channel_uuid,
        "joined_at": m.joined_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "muted": m.muted,
        "deaf": m.deaf,
        "video": m.video,
    })
}

fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| {
        Value::String(at.to_rfc3339_opts(SecondsFormat::Millis, true))
    })
}

fn health(h: Health) -> &'static str {
    match h {
        Health::Connecting => "connecting",
        Health::Up => "up",
        Health::Degraded => "degraded",
        Health::Down => "down",
    }
}

/// The webhook event an announcement stands for, if any. `member.talking` is not produced
/// here: it goes through the [`Debouncer`].
pub fn from_event(event: &Event) -> Option<WebhookEvent> {
    use WebhookEventType as T;
    match event {
        Event::Live { change } => match change {
            Change::ConferenceStarted { node, name, uuid } => Some(WebhookEvent::new(
                T::ConferenceStarted,
                json!({ "conference": name, "node": node, "uuid": uuid }),
            )),
            Change::MemberJoined {
                member: m,
                reconciled,
            } => Some(WebhookEvent::new(
                T::MemberJoined,
                json!({
                    "conference": m.conference,
                    "node": m.node,
                    "member": member(m),
                    "reconciled": reconciled,
                }),
            )),
            Change::MemberLeft { member: m, reason } => Some(WebhookEvent::new(
                T::MemberLeft,
                json!({
                    "conference": m.conference,
                    "node": m.node,
                    "member": member(m),
                    "reason": reason.as_str(),
                }),
            )),
            Change::RecordingStarted {
                node,
                name,
                path,
                error,
            } => Some(WebhookEvent::new(
                T::RecordingStarted,
                json!({ "conference": name, "node": node, "path": path, "error": error }),
            )),
            Change::RecordingStopped {
                node,
                name,
                path,
                milliseconds,
            } => Some(WebhookEvent::new(
                T::RecordingStopped,
                json!({
                    "conference": name,
                    "node": node,
                    "path": path,
                    "milliseconds": milliseconds,
                }),
            )),
            // The node stopped running it; the placement (what `conference.ended` is about)
            // may live on, idle.
            Change::ConferenceEnded { .. } | Change::MemberUpdated(_) => None,
        },
        Event::ConferenceEnded {
            conference: c,
            reason,
        } => Some(WebhookEvent::new(
            T::ConferenceEnded,
            json!({
                "conference": c.name,
                "conference_id": c.id,
                "node": c.node_id,
                "reason": reason.as_str(),
                "labels": c.labels,
                "created_at": time(Some(c.created_at)),
                "started_at": time(c.started_at),
                "ended_at": time(c.ended_at),
                "peak_members": c.peak_members,
            }),
        )),
        // Every replica announces its own view; the owner's is the one that counts.
        Event::NodeHealth {
            node,
            from,
            to,
            owner: true,
        } => {
            let kind = match (from, to) {
                (Health::Down, Health::Down) => return None,
                (_, Health::Down) => T::NodeDown,
                (Health::Down | Health::Connecting, Health::Up) => T::NodeUp,
                _ => return None,
            };
            Some(WebhookEvent::new(
                kind,
                json!({ "node": node, "previous": health(*from) }),
            ))
        }
        Event::InvitationCancelled {
            name,
            user_id,
            reason: reason @ (CancelReason::Declined | CancelReason::Busy),
        } => Some(WebhookEvent::new(
            T::InvitationDeclined,
            json!({
                "conference": name,
                "user_id": user_id,
                "answer": if *reason == CancelReason::Busy { "busy" } else { "declined" },
            }),
        )),
        Event::NodeHealth { owner: false, .. }
        | Event::ConferencePlaced { .. }
        | Event::Invited { .. }
        | Event::InvitationCancelled { .. } => None,
    }
}

/// (node, conference, member id).
type MemberKey = (String, String, u32);

#[derive(Debug)]
struct Tracked {
    member: Member,
    /// The talking state the node reports now.
    current: bool,
    /// The last state sent (`false` until a `member.talking` went out).
    sent: bool,
    /// When `current` last changed.
    since: Instant,
}

/// Turns members' talking flips into `member.talking` events: a state is sent once it has
/// held for the debounce period, so a blip shorter than that sends nothing, and a member who
/// talks for a while gets one `true` and one `false`. A member who leaves is forgotten (its
/// `member.left` implies it stopped talking).
#[derive(Debug)]
pub struct Debouncer {
    debounce: Duration,
    members: HashMap<MemberKey, Tracked>,
    /// Members whose `current` differs from `sent`.
    pending: HashSet<MemberKey>,
}

fn key(m: &Member) -> MemberKey {
    (m.node.clone(), m.conference.clone(), m.member_id)
}

impl Debouncer {
    pub fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            members: HashMap::new(),
            pending: HashSet::new(),
        }
    }

    /// Takes note of an announcement.
    pub fn observe(&mut self, event: &Event, now: Instant) {
        let Event::Live { change } = event else {
            return;
        };
        match change {
            Change::MemberJoined { member, .. } | Change::MemberUpdated(member) => {
                let k = key(member);
                let tracked = self.members.entry(k.clone()).or_insert_with(|| Tracked {
                    member: member.clone(),
                    current: false,
                    sent: false,
                    since: now,
                });
                if tracked.current != member.talking {
                    tracked.current = member.talking;
                    tracked.since = now;
                }
                tracked.member = member.clone();
                if tracked.current == tracked.sent {
                    self.pending.remove(&k);
                } else {
                    self.pending.insert(k);
                }
            }
            Change::MemberLeft { member, .. } => {
                let k = key(member);
                self.members.remove(&k);
                self.pending.remove(&k);
            }
            Change::ConferenceEnded { node, name, .. } => {
                self.members
                    .retain(|(n, c, _), _| !(n == node && c == name));
                self.pending.retain(|(n, c, _)| !(n == node && c == name));
            }
            _ => {}
        }
    }

    /// When the next state becomes due, if one is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter_map(|k| self.members.get(k))
            .map(|t| t.since + self.debounce)
            .min()
    }

    /// The `member.talking` events due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<WebhookEvent> {
        let mut out = Vec::new();
        let debounce = self.debounce;
        let members = &mut self.members;
        self.pending.retain(|k| {
            let Some(t) = members.get_mut(k) else {
                return false;
            };
            if now < t.since + debounce {
                return true;
            }
            t.sent = t.current;
            out.push(WebhookEvent::new(
                WebhookEventType::MemberTalking,
                json!({
                    "conference": t.member.conference,
                    "node": t.member.node,
                    "member": member(&t.member),
                    "talking": t.current,
                }),
            ));
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use chrono::TimeZone as _;

    use super::*;
    use crate::live::LeaveReason;
    use crate::store::{ConferenceOptions, ConferenceRecord, EndReason};

    fn alice(talking: bool) -> Member {
        Member {
            conference: "team".to_owned(),
            node: "fs1".to_owned(),
            member_id: 7,
            user_id: Some("alice".to_owned()),
            caller_id_name: "Alice".to_owned(),
            channel_uuid: Some("c-1".to_owned()),
            joined_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
            last_talking_at: None,
            talking,
            muted: false,
            deaf: false,
            video: false,
            floor: false,
        }
    }

    fn live(change: Change) -> Event {
        Event::Live { change }
    }

    fn kind(event: &Event) -> Option<&'static str> {
        from_event(event).map(|e| e.kind.as_str())
    }

    #[test]
    fn maps_announcements_to_types() {
        let joined = from_event(&live(Change::MemberJoined {
            member: alice(false),
            reconciled: true,
        }))
        .unwrap();
        assert_eq!(joined.kind, WebhookEventType::MemberJoined);
        assert_eq!(
            joined.data,
            json!({
                "conference": "team",
                "node": "fs1",
                "member": {
                    "member_id": 7,
                    "user_id": "alice",
                    "caller_id_name": "Alice",
                    "channel_uuid": "c-1",
                    "joined_at": "2025-01-02T03:04:05.000Z",
                    "muted": false,
                    "deaf": false,
                    "video": false,
                },
                "reconciled": true,
            })
        );
        let left = from_event(&live(Change::MemberLeft {
            member: alice(false),
            reason: LeaveReason::NodeDown,
        }))
        .unwrap();
        assert_eq!(left.kind, WebhookEventType::MemberLeft);
        assert_eq!(left.data["reason"], "node_down");

        assert_eq!(
            kind(&live(Change::ConferenceStarted {
                node: "fs1".into(),
                name: "team".into(),
                uuid: None
            })),
            Some("conference.started")
        );
        assert_eq!(
            kind(&live(Change::RecordingStarted {
                node: "fs1".into(),
                name: "team".into(),
                path: "/r.wav".into(),
                error: None
            })),
            Some("recording.started")
        );
        assert_eq!(
            kind(&live(Change::RecordingStopped {
                node: "fs1".into(),
                name: "team".into(),
                path: "/r.wav".into(),
                milliseconds: Some(5)
            })),
            Some("recording.stopped")
        );
        // Not webhooks: the node merely stopped running it; talking goes through the debouncer.
        assert_eq!(
            kind(&live(Change::ConferenceEnded {
                node: "fs1".into(),
                name: "team".into(),
                reason: LeaveReason::Hangup
            })),
            None
        );
        assert_eq!(kind(&live(Change::MemberUpdated(alice(true)))), None);

        let record = ConferenceRecord {
            id: "cf_1".into(),
            name: "team".into(),
            node_id: "fs1".into(),
            profile: "default".into(),
            labels: BTreeMap::new(),
            origin: "placed".into(),
            created_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 0, 0).unwrap(),
            idle_since: None,
            peak_members: 3,
            ended_at: Some(Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap()),
            end_reason: Some("node_down".into()),
            options: ConferenceOptions::default(),
            member_count: 0,
            started_at: None,
        };
        let ended = from_event(&Event::ConferenceEnded {
            conference: record,
            reason: EndReason::NodeDown,
        })
        .unwrap();
        assert_eq!(ended.kind, WebhookEventType::ConferenceEnded);
        assert_eq!(ended.data["reason"], "node_down");
        assert_eq!(ended.data["conference_id"], "cf_1");
        assert_eq!(ended.data["ended_at"], "2025-01-02T04:00:00.000Z");
        assert_eq!(ended.data["started_at"], Value::Null);
    }

    #[test]
    fn node_health_only_from_the_owner_and_only_down_and_recoveries() {
        let health = |from, to, owner| Event::NodeHealth {
            node: "fs1".into(),
            from,
            to,
            owner,
        };
        use Health::*;
        assert_eq!(kind(&health(Up, Down, true)), Some("node.down"));
        assert_eq!(kind(&health(Degraded, Down, true)), Some("node.down"));
        assert_eq!(kind(&health(Connecting, Down, true)), Some("node.down"));
        assert_eq!(kind(&health(Down, Up, true)), Some("node.up"));
        assert_eq!(kind(&health(Connecting, Up, true)), Some("node.up"));
        assert_eq!(kind(&health(Degraded, Up, true)), None);
        assert_eq!(kind(&health(Up, Degraded, true)), None);
        assert_eq!(kind(&health(Up, Down, false)), None);
        assert_eq!(kind(&health(Down, Up, false)), None);
        let down = from_event(&health(Degraded, Down, true)).unwrap();
        assert_eq!(down.data, json!({"node": "fs1", "previous": "degraded"}));
    }

    #[test]
    fn declines_and_busy_answers_become_invitation_declined() {
        let cancelled = |reason| Event::InvitationCancelled {
            name: "team".into(),
            user_id: "bob".into(),
            reason,
        };
        let busy = from_event(&cancelled(CancelReason::Busy)).expect("busy is sent");
        assert_eq!(busy.kind, WebhookEventType::InvitationDeclined);
        assert_eq!(
            busy.data,
            json!({"conference": "team", "user_id": "bob", "answer": "busy"})
        );
        let declined = from_event(&cancelled(CancelReason::Declined)).expect("declined is sent");
        assert_eq!(declined.data["answer"], "declined");
        assert_eq!(kind(&cancelled(CancelReason::Cancelled)), None);
        assert_eq!(kind(&cancelled(CancelReason::Answered)), None);
    }

    #[test]
    fn body_shape() {
        let event = WebhookEvent::new(
            WebhookEventType::NodeDown,
            json!({"node": "fs1", "previous": "up"}),
        );
        let at = Utc.timestamp_millis_opt(1_735_787_045_678).unwrap();
        assert_eq!(
            body("wh_0123456789abcdef0123456789abcdef", &event, at),
            r#"{"id":"wh_0123456789abcdef0123456789abcdef","type":"node.down","created_at":"2025-01-02T03:04:05.678Z","data":{"node":"fs1","previous":"up"}}"#
        );
    }

    #[test]
    fn talking_is_sent_once_stable() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debouncer::new(ms(500));
        d.observe(
            &live(Change::MemberJoined {
                member: alice(false),
                reconciled: false,
            }),
            t0,
        );
        assert_eq!(d.next_due(), None);
        // A blip shorter than the debounce sends nothing.
        d.observe(&live(Change::MemberUpdated(alice(true))), t0 + ms(100));
        assert_eq!(d.next_due(), Some(t0 + ms(600)));
        d.observe(&live(Change::MemberUpdated(alice(false))), t0 + ms(300));
        assert_eq!(d.next_due(), None);
        assert!(d.due(t0 + ms(1000)).is_empty());
        // Talking that holds is sent once, after the debounce; other updates do not restart it.
        d.observe(&live(Change::MemberUpdated(alice(true))), t0 + ms(1000));
        let mut muted = alice(true);
        muted.muted = true;
        d.observe(&live(Change::MemberUpdated(muted)), t0 + ms(1200));
        assert!(d.due(t0 + ms(1499)).is_empty());
        let sent = d.due(t0 + ms(1500));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, WebhookEventType::MemberTalking);
        assert_eq!(sent[0].data["talking"], true);
        assert_eq!(sent[0].data["member"]["muted"], true, "the latest state");
        assert!(d.due(t0 + ms(5000)).is_empty(), "sent once");
        // Stopping is sent too.
        d.observe(&live(Change::MemberUpdated(alice(false))), t0 + ms(6000));
        let sent = d.due(t0 + ms(6500));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data["talking"], false);
        // Leaving forgets a pending state.
        d.observe(&live(Change::MemberUpdated(alice(true))), t0 + ms(7000));
        d.observe(
            &live(Change::MemberLeft {
                member: alice(true),
                reason: LeaveReason::Hangup,
            }),
            t0 + ms(7100),
        );
        assert_eq!(d.next_due(), None);
        assert!(d.due(t0 + ms(9000)).is_empty());
        assert!(d.members.is_empty());
    }

    #[test]
    fn zero_debounce_sends_every_change_and_ended_conferences_are_forgotten() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::ZERO);
        d.observe(&live(Change::MemberUpdated(alice(true))), t0);
        assert_eq!(d.due(t0).len(), 1);
        d.observe(&live(Change::MemberUpdated(alice(false))), t0);
        d.observe(
            &live(Change::ConferenceEnded {
                node: "fs1".into(),
                name: "team".into(),
                reason: LeaveReason::Hangup,
            }),
            t0,
        );
        assert!(d.due(t0).is_empty());
        assert!(d.members.is_empty());
    }
}
