//! The subscription a client wants: event format, event names, CUSTOM subclasses and filters.
//!
//! FreeSWITCH forgets all of it when the connection closes, so the client keeps it here and
//! replays it after every reconnect. Two event types are always subscribed on top of what the
//! user asked for: `HEARTBEAT` (liveness) and `BACKGROUND_JOB` (bgapi results). Events of those
//! two types are passed on to the user only when the user subscribed to them (or to `ALL`).

use std::collections::BTreeSet;

use crate::command::Command;
use crate::event::{Event, EventFormat};

/// The event types the client subscribes to whatever the user asks for.
pub const ALWAYS_SUBSCRIBED: [&str; 2] = ["HEARTBEAT", "BACKGROUND_JOB"];

/// Desired event subscription: what `event`, `nixevent`, `noevents` and `filter` have set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    format: EventFormat,
    /// Event type names, upper case, without the `SWITCH_EVENT_` prefix (`CUSTOM` included when
    /// subscribed).
    events: BTreeSet<String>,
    /// CUSTOM subclasses (case kept: FreeSWITCH compares them exactly).
    subclasses: BTreeSet<String>,
    /// Filters in the order they were added.
    filters: Vec<(String, String)>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription::new(EventFormat::Plain)
    }
}

/// Splits event name arguments into (type names, subclasses), following FreeSWITCH: every word
/// after `CUSTOM` is a subclass. Words are split on whitespace, so `["CHANNEL_CREATE CUSTOM a::b"]`
/// and `["CHANNEL_CREATE", "CUSTOM", "a::b"]` are the same.
fn parse_names<I, S>(names: I) -> (Vec<String>, Vec<String>, bool)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut types = Vec::new();
    let mut subclasses = Vec::new();
    let mut custom = false;
    for name in names {
        for word in name.as_ref().split_whitespace() {
            if custom {
                subclasses.push(word.to_owned());
                continue;
            }
            let upper = word.to_ascii_uppercase();
            let upper = upper
                .strip_prefix("SWITCH_EVENT_")
                .map(str::to_owned)
                .unwrap_or(upper);
            if upper == "CUSTOM" {
                custom = true;
            }
            types.push(upper);
        }
    }
    (types, subclasses, custom)
}

impl Subscription {
    /// No events (other than the two the client always adds), no filters.
    pub fn new(format: EventFormat) -> Self {
        Subscription {
            format,
            events: BTreeSet::new(),
            subclasses: BTreeSet::new(),
            filters: Vec::new(),
        }
    }

    /// Adds event names (builder form of [`Subscription::add_events`]).
    pub fn with_events<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.add_events(names);
        self
    }

    /// Adds a filter (builder form of [`Subscription::add_filter`]).
    pub fn with_filter(mut self, header: impl Into<String>, value: impl Into<String>) -> Self {
        self.add_filter(header.into(), value.into());
        self
    }

    /// The event format (`plain`, `json`, `xml`).
    pub fn format(&self) -> EventFormat {
        self.format
    }

    /// Sets the event format.
    pub fn set_format(&mut self, format: EventFormat) {
        self.format = format;
    }

    /// Subscribed event type names (upper case), in sorted order.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(String::as_str)
    }

    /// Subscribed CUSTOM subclasses, in sorted order.
    pub fn subclasses(&self) -> impl Iterator<Item = &str> {
        self.subclasses.iter().map(String::as_str)
    }

    /// Filters, in the order they were added.
    pub fn filters(&self) -> &[(String, String)] {
        &self.filters
    }

    /// What `event <format> <names>` does: adds types, and after `CUSTOM`, subclasses.
    pub fn add_events<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (types, subclasses, _) = parse_names(names);
        self.events.extend(types);
        self.subclasses.extend(subclasses);
    }

    /// What `nixevent <names>` does: removes types, and after `CUSTOM`, subclasses (`nixevent
    /// CUSTOM` alone removes CUSTOM and every subclass). `ALL` removes everything.
    pub fn remove_events<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (types, subclasses, custom) = parse_names(names);
        for name in &types {
            if name == "ALL" {
                self.clear_events();
                return;
            }
            if name != "CUSTOM" {
                self.events.remove(name);
            }
        }
        if custom && subclasses.is_empty() {
            self.events.remove("CUSTOM");
            self.subclasses.clear();
        }
        for subclass in &subclasses {
            self.subclasses.remove(subclass);
        }
    }

    /// What `noevents` does.
    pub fn clear_events(&mut self) {
        self.events.clear();
        self.subclasses.clear();
    }

    /// What `filter <header> <value>` does. An identical filter is not added twice.
    pub fn add_filter(&mut self, header: String, value: String) {
        let exists = self
            .filters
            .iter()
            .any(|(h, v)| h.eq_ignore_ascii_case(&header) && *v == value);
        if !exists {
            self.filters.push((header, value));
        }
    }

    /// What `filter delete <header> [<value>]` does: without a value, every filter on `header`.
    pub fn remove_filter(&mut self, header: &str, value: Option<&str>) {
        self.filters.retain(|(h, v)| {
            !(h.eq_ignore_ascii_case(header) && value.is_none_or(|value| v == value))
        });
    }

    /// What `filter delete all` does.
    pub fn clear_filters(&mut self) {
        self.filters.clear();
    }

    /// The `event` command that (re)creates this subscription on a fresh connection, with
    /// [`ALWAYS_SUBSCRIBED`] first and `CUSTOM <subclasses>` last.
    pub fn event_command(&self) -> Command {
        let mut names: Vec<String> = ALWAYS_SUBSCRIBED.iter().map(|s| (*s).to_owned()).collect();
        for name in &self.events {
            if name != "CUSTOM" && !names.contains(name) {
                names.push(name.clone());
            }
        }
        if self.events.contains("CUSTOM") || !self.subclasses.is_empty() {
            names.push("CUSTOM".to_owned());
            names.extend(self.subclasses.iter().cloned());
        }
        Command::Event {
            format: self.format,
            names,
        }
    }

    /// True when the user asked for this event. Only the types the client subscribes on its own
    /// ([`ALWAYS_SUBSCRIBED`]) are held back; FreeSWITCH already filtered the rest.
    pub fn delivers(&self, event: &Event) -> bool {
        match event.event_name() {
            Some(name)
                if ALWAYS_SUBSCRIBED
                    .iter()
                    .any(|a| name.eq_ignore_ascii_case(a)) =>
            {
                self.events.contains("ALL") || self.events.contains(&name.to_ascii_uppercase())
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    fn line(sub: &Subscription) -> String {
        let bytes = sub.event_command().to_bytes().expect("encodes");
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    fn event(name: &str) -> Event {
        Event::new(
            [("Event-Name", name)].into_iter().collect::<Headers>(),
            None,
        )
    }

    #[test]
    fn event_command_always_has_liveness_types_and_custom_last() {
        let sub = Subscription::new(EventFormat::Json).with_events([
            "channel_create CUSTOM conference::maintenance",
            "sofia::register",
        ]);
        assert_eq!(
            line(&sub),
            "event json HEARTBEAT BACKGROUND_JOB CHANNEL_CREATE CUSTOM conference::maintenance sofia::register"
        );
        assert_eq!(
            line(&Subscription::default()),
            "event plain HEARTBEAT BACKGROUND_JOB"
        );
        let sub = Subscription::default().with_events(["SWITCH_EVENT_HEARTBEAT", "ALL"]);
        assert_eq!(line(&sub), "event plain HEARTBEAT BACKGROUND_JOB ALL");
    }

    #[test]
    fn nixevent_and_noevents() {
        let mut sub = Subscription::default().with_events([
            "CHANNEL_CREATE",
            "HEARTBEAT",
            "CUSTOM",
            "a::b",
            "c::d",
        ]);
        sub.remove_events(["heartbeat", "CUSTOM", "a::b"]);
        assert_eq!(
            sub.events().collect::<Vec<_>>(),
            vec!["CHANNEL_CREATE", "CUSTOM"]
        );
        assert_eq!(sub.subclasses().collect::<Vec<_>>(), vec!["c::d"]);
        sub.remove_events(["CUSTOM"]);
        assert_eq!(sub.events().collect::<Vec<_>>(), vec!["CHANNEL_CREATE"]);
        sub.remove_events(["ALL"]);
        assert_eq!(sub.events().count(), 0);
    }

    #[test]
    fn only_liveness_types_are_held_back() {
        let sub = Subscription::default().with_events(["CHANNEL_CREATE"]);
        assert!(!sub.delivers(&event("HEARTBEAT")));
        assert!(!sub.delivers(&event("BACKGROUND_JOB")));
        assert!(sub.delivers(&event("CHANNEL_ANSWER")));
        let all = Subscription::default().with_events(["ALL"]);
        assert!(all.delivers(&event("HEARTBEAT")));
        let hb = Subscription::default().with_events(["heartbeat"]);
        assert!(hb.delivers(&event("HEARTBEAT")));
        assert!(!hb.delivers(&event("BACKGROUND_JOB")));
    }

    #[test]
    fn filters() {
        let mut sub = Subscription::default()
            .with_filter("Event-Name", "CHANNEL_CREATE")
            .with_filter("Unique-ID", "a")
            .with_filter("unique-id", "a")
            .with_filter("Unique-ID", "b");
        assert_eq!(sub.filters().len(), 3);
        sub.remove_filter("UNIQUE-ID", Some("a"));
        assert_eq!(sub.filters().len(), 2);
        sub.remove_filter("Unique-ID", None);
        assert_eq!(
            sub.filters(),
            &[("Event-Name".to_owned(), "CHANNEL_CREATE".to_owned())]
        );
        sub.clear_filters();
        assert!(sub.filters().is_empty());
    }
}
