//! Event construction: the prelude every FreeSWITCH event starts with, and the event-type names.
//!
//! # Why
//!
//! Every event a real node fires begins with the same thirteen headers, in this order, added by
//! `switch_event_create` and `switch_event_prep_for_delivery`: `Event-Name`, `Core-UUID`,
//! `FreeSWITCH-Hostname`, `-Switchname`, `-IPv4`, `-IPv6`, `Event-Date-Local`, `Event-Date-GMT`,
//! `Event-Date-Timestamp`, `Event-Calling-File`, `-Function`, `-Line-Number`, `Event-Sequence`.
//! CUSTOM events (`conference::maintenance`, `sofia::register`) carry `Event-Subclass` **before**
//! `Event-Name` (captures: esl-events-plain-*.txt). The calling file/function/line of each event
//! fsim fires is the one the captured build reported, so the header values match byte for byte.
//!
//! Headers with an empty value are not added: FreeSWITCH deletes a header set to an empty string,
//! which is why, for instance, a loopback leg without a caller-id name has no
//! `Caller-Caller-ID-Name` at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use esl::{Event, Headers};

/// `Event-Subclass` of mod_conference's events.
pub const CONFERENCE_MAINTENANCE: &str = "conference::maintenance";

/// Where an event was fired from in the captured FreeSWITCH build (`Event-Calling-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: &'static str,
    pub func: &'static str,
    pub line: u32,
}

/// Shorthand for an [`Origin`].
pub(crate) const fn at(file: &'static str, func: &'static str, line: u32) -> Origin {
    Origin { file, func, line }
}

/// What a node writes into the prelude of each event.
#[derive(Clone, Debug)]
pub(crate) struct EventCtx {
    pub core_uuid: String,
    pub hostname: String,
    pub ipv4: String,
    pub ipv6: String,
    /// The node-wide `Event-Sequence` counter (shared with the directory client, as every
    /// FreeSWITCH event of a process draws from one counter).
    pub seq: Arc<AtomicU64>,
}

impl EventCtx {
    /// A core event named `name` (e.g. `CHANNEL_CREATE`), timestamped now.
    pub fn event(&self, name: &str, origin: Origin) -> EventBuilder {
        self.event_at(name, origin, SystemTime::now())
    }

    /// A core event with an explicit timestamp.
    pub fn event_at(&self, name: &str, origin: Origin, when: SystemTime) -> EventBuilder {
        let mut b = EventBuilder {
            headers: Vec::with_capacity(64),
            body: None,
        };
        self.prelude(&mut b, name, origin, when);
        b
    }

    /// A `CUSTOM` event of `subclass`: `Event-Subclass` first, then the prelude.
    pub fn custom(&self, subclass: &str, origin: Origin) -> EventBuilder {
        let mut b = EventBuilder {
            headers: Vec::with_capacity(96),
            body: None,
        };
        b.add("Event-Subclass", subclass);
        self.prelude(&mut b, "CUSTOM", origin, SystemTime::now());
        b
    }

    /// The next `Event-Sequence` number (also consumed by events that are never delivered).
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn prelude(&self, b: &mut EventBuilder, name: &str, origin: Origin, when: SystemTime) {
        let (local, gmt, micros) = dates(when);
        b.add("Event-Name", name);
        b.add("Core-UUID", &self.core_uuid);
        b.add("FreeSWITCH-Hostname", &self.hostname);
        b.add("FreeSWITCH-Switchname", &self.hostname);
        b.add("FreeSWITCH-IPv4", &self.ipv4);
        b.add("FreeSWITCH-IPv6", &self.ipv6);
        b.add("Event-Date-Local", &local);
        b.add("Event-Date-GMT", &gmt);
        b.add("Event-Date-Timestamp", &micros.to_string());
        b.add("Event-Calling-File", origin.file);
        b.add("Event-Calling-Function", origin.func);
        b.add("Event-Calling-Line-Number", &origin.line.to_string());
        b.add("Event-Sequence", &self.next_seq().to_string());
    }
}

/// An event being assembled, header by header, in FreeSWITCH's order.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventBuilder {
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

impl EventBuilder {
    /// Appends a header; an empty value is skipped (FreeSWITCH deletes such a header).
    pub fn add(&mut self, name: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Appends a header whose value is a number or flag.
    pub fn add_display(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    /// Appends `true`/`false`.
    pub fn add_bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.add(name, if value { "true" } else { "false" })
    }

    /// Sets the event body (BACKGROUND_JOB carries the api output there).
    pub fn body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.body = Some(body.into());
        self
    }

    /// The first value of a header.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The headers so far, in order (a mod_xml_curl form is built from them).
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.headers
    }

    /// The finished event.
    pub fn build(self) -> Event {
        let mut headers = Headers::new();
        for (name, value) in &self.headers {
            headers.push(name, value);
        }
        Event::new(headers, self.body)
    }
}

/// Microseconds since the epoch.
pub(crate) fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `Event-Date-Local` (`YYYY-MM-DD HH:MM:SS`, local time), `Event-Date-GMT` (RFC 822) and
/// `Event-Date-Timestamp` (µs).
pub(crate) fn dates(t: SystemTime) -> (String, String, u64) {
    let local: chrono::DateTime<chrono::Local> = t.into();
    let utc: chrono::DateTime<chrono::Utc> = t.into();
    (
        local.format("%Y-%m-%d %H:%M:%S").to_string(),
        utc.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        micros(t),
    )
}

/// `YYYY-MM-DD HH:MM:SS` in local time (channel `*_stamp` variables, `show channels`).
pub(crate) fn local_stamp(t: SystemTime) -> String {
    let local: chrono::DateTime<chrono::Local> = t.into();
    local.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The event types `switch_name_event` knows (FreeSWITCH: src/switch_event.c `EVENT_NAMES`), in
/// their enum order. `ALL` is last. Names are matched case-insensitively, with an optional
/// `SWITCH_EVENT_` prefix.
pub(crate) const EVENT_NAMES: &[&str] = &[
    "CUSTOM",
    "CLONE",
    "CHANNEL_CREATE",
    "CHANNEL_DESTROY",
    "CHANNEL_STATE",
    "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_OUTGOING",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_APPLICATION",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "API",
    "LOG",
    "INBOUND_CHAN",
    "OUTBOUND_CHAN",
    "STARTUP",
    "SHUTDOWN",
    "PUBLISH",
    "UNPUBLISH",
    "TALK",
    "NOTALK",
    "SESSION_CRASH",
    "MODULE_LOAD",
    "MODULE_UNLOAD",
    "DTMF",
    "MESSAGE",
    "PRESENCE_IN",
    "NOTIFY_IN",
    "PRESENCE_OUT",
    "PRESENCE_PROBE",
    "MESSAGE_WAITING",
    "MESSAGE_QUERY",
    "ROSTER",
    "CODEC",
    "BACKGROUND_JOB",
    "DETECTED_SPEECH",
    "DETECTED_TONE",
    "PRIVATE_COMMAND",
    "HEARTBEAT",
    "TRAP",
    "ADD_SCHEDULE",
    "DEL_SCHEDULE",
    "EXE_SCHEDULE",
    "RE_SCHEDULE",
    "RELOADXML",
    "NOTIFY",
    "PHONE_FEATURE",
    "PHONE_FEATURE_SUBSCRIBE",
    "SEND_MESSAGE",
    "RECV_MESSAGE",
    "REQUEST_PARAMS",
    "CHANNEL_DATA",
    "GENERAL",
    "COMMAND",
    "SESSION_HEARTBEAT",
    "CLIENT_DISCONNECTED",
    "SERVER_DISCONNECTED",
    "SEND_INFO",
    "RECV_INFO",
    "RECV_RTCP_MESSAGE",
    "SEND_RTCP_MESSAGE",
    "CALL_SECURE",
    "NAT",
    "RECORD_START",
    "RECORD_STOP",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "CALL_UPDATE",
    "FAILURE",
    "SOCKET_DATA",
    "MEDIA_BUG_START",
    "MEDIA_BUG_STOP",
    "CONFERENCE_DATA_QUERY",
    "CONFERENCE_DATA",
    "CALL_SETUP_REQ",
    "CALL_SETUP_RESULT",
    "CALL_DETAIL",
    "DEVICE_STATE",
    "TEXT",
    "SHUTDOWN_REQUESTED",
    "ALL",
];

/// The canonical name of an event type word from an `event`/`nixevent` command, if known.
pub(crate) fn event_type(word: &str) -> Option<&'static str> {
    let word = match word.get(..13) {
        Some(prefix) if prefix.eq_ignore_ascii_case("SWITCH_EVENT_") => &word[13..],
        _ => word,
    };
    EVENT_NAMES
        .iter()
        .copied()
        .find(|name| name.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EventCtx {
        EventCtx {
            core_uuid: "c".into(),
            hostname: "vm".into(),
            ipv4: "192.0.2.2".into(),
            ipv6: "fd00::2".into(),
            seq: Arc::new(AtomicU64::new(10)),
        }
    }

    #[test]
    fn prelude_order_and_subclass_first() {
        let e = ctx()
            .custom(CONFERENCE_MAINTENANCE, at("f.c", "fn", 1))
            .build();
        let names: Vec<&str> = e.headers().iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Event-Subclass",
                "Event-Name",
                "Core-UUID",
                "FreeSWITCH-Hostname",
                "FreeSWITCH-Switchname",
                "FreeSWITCH-IPv4",
                "FreeSWITCH-IPv6",
                "Event-Date-Local",
                "Event-Date-GMT",
                "Event-Date-Timestamp",
                "Event-Calling-File",
                "Event-Calling-Function",
                "Event-Calling-Line-Number",
                "Event-Sequence",
            ]
        );
        assert_eq!(e.get("Event-Sequence"), Some("11"));
        assert_eq!(e.get("Event-Name"), Some("CUSTOM"));
    }

    #[test]
    fn empty_values_are_dropped() {
        let mut b = ctx().event("API", at("f.c", "fn", 1));
        b.add("API-Command-Argument", "");
        assert!(b.get("API-Command-Argument").is_none());
    }

    #[test]
    fn gmt_date_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_315_532);
        let (_, gmt, us) = dates(t);
        assert_eq!(gmt, "Sun, 22 Nov 2026 02:45:32 GMT");
        assert_eq!(us, 1_795_315_532_000_000);
    }

    #[test]
    fn event_type_names() {
        assert_eq!(event_type("heartbeat"), Some("HEARTBEAT"));
        assert_eq!(event_type("SWITCH_EVENT_CUSTOM"), Some("CUSTOM"));
        assert_eq!(event_type("bogus"), None);
        assert_eq!(event_type("all"), Some("ALL"));
    }
}
