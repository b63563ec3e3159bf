//! Event delivery to ESL listeners: subscriptions, filters and bounded queues.
//!
//! # Why
//!
//! mod_event_socket decides, **when an event is fired**, whether each listener gets a copy: the
//! listener must have run `event` (and not `noevents`), be subscribed to the event's type (or
//! `ALL`), to the subclass of a CUSTOM event, and pass the filters. The copy then waits in the
//! listener's queue of 100 000 events; when the queue is full the event is lost, and after more
//! than 500 consecutive losses the listener is killed with the disconnect notice
//! `killed listener because of lost events\n` (protocol doc §1.1, §1.7). Reproducing this —
//! including its surprises, e.g. `nixevent X` after `event ALL` turning `ALL` into "every type"
//! so that CUSTOM events then need their subclass — lets Switchyard be tested against the rules
//! it will meet.
//!
//! The command reply texts are FreeSWITCH's (captures esl-filter-*.txt, esl-nixevent*.txt,
//! esl-noevents.txt, esl-event-*.txt).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use esl::{Event, EventFormat};
use tokio::sync::{Notify, mpsc};

use crate::events::event_type;

/// Consecutive lost events after which a listener is killed (MAX_MISSED).
pub(crate) const MAX_MISSED: u32 = 500;

/// The disconnect notice of a killed slow listener.
pub(crate) const KILLED_NOTICE: &str = "killed listener because of lost events\n";

/// Locks a mutex, recovering the data of a poisoned one (a panicking holder leaves the
/// simulated node usable; fsim never relies on an invariant a panic could break half-way).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one listener wants.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// `LFLAG_EVENTS`: set by `event`, cleared by `noevents`.
    pub enabled: bool,
    pub format: EventFormat,
    all: bool,
    types: HashSet<&'static str>,
    subclasses: HashSet<String>,
    /// Filters in the order they were added (`filter <header> <value>`).
    filters: Vec<(String, String)>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            enabled: false,
            format: EventFormat::Plain,
            all: false,
            types: HashSet::new(),
            subclasses: HashSet::new(),
            filters: Vec::new(),
        }
    }
}

/// The words after the command word: FreeSWITCH splits at single spaces from the first space.
fn words(line: &str, command_len: usize) -> Vec<&str> {
    let rest = line.get(command_len..).unwrap_or("");
    match rest.find(' ') {
        Some(pos) => rest[pos + 1..].split(' ').collect(),
        None => Vec::new(),
    }
}

impl Subscription {
    /// `event [plain|json|xml] <names...>`; returns the reply text.
    pub fn event_command(&mut self, line: &str) -> String {
        let mut key_count = 0;
        let mut custom = false;
        for (i, word) in words(line, 5).into_iter().enumerate() {
            if i == 0 {
                let format = match word.to_ascii_lowercase().as_str() {
                    "plain" => Some(EventFormat::Plain),
                    "json" => Some(EventFormat::Json),
                    "xml" => Some(EventFormat::Xml),
                    _ => None,
                };
                if let Some(format) = format {
                    self.format = format;
                    continue;
                }
            }
            if custom {
                self.subclasses.insert(word.to_owned());
            } else if let Some(kind) = event_type(word) {
                key_count += 1;
                if kind == "ALL" {
                    self.all = true;
                } else {
                    self.types.insert(kind);
                }
                if kind == "CUSTOM" {
                    custom = true;
                }
            }
        }
        if key_count == 0 {
            return "-ERR no keywords supplied".into();
        }
        self.enabled = true;
        format!("+OK event listener enabled {}", self.format.as_str())
    }

    /// `nixevent <names...>`.
    pub fn nixevent_command(&mut self, line: &str) -> String {
        let mut key_count = 0;
        let mut custom = false;
        for word in words(line, 8) {
            if custom {
                self.subclasses.remove(word);
            } else if let Some(kind) = event_type(word) {
                key_count += 1;
                match kind {
                    "CUSTOM" => custom = true,
                    "ALL" => {
                        self.all = false;
                        self.types.clear();
                    }
                    _ => {
                        if self.all {
                            // ALL becomes "every type", then this one is removed.
                            self.all = false;
                            self.types = crate::events::EVENT_NAMES
                                .iter()
                                .copied()
                                .filter(|n| *n != "ALL")
                                .collect();
                        }
                        self.types.remove(kind);
                    }
                }
            }
        }
        if key_count == 0 {
            return "-ERR no keywords supplied".into();
        }
        if !self.types.contains("CUSTOM") {
            self.subclasses.clear();
        }
        "+OK events nixed".into()
    }

    /// `noevents`. The caller flushes the queue when this returns `true`.
    pub fn noevents_command(&mut self) -> (String, bool) {
        if !self.enabled {
            return ("-ERR not listening for events".into(), false);
        }
        self.enabled = false;
        self.all = false;
        self.types.clear();
        self.subclasses.clear();
        ("+OK no longer listening for events".into(), true)
    }

    /// `filter <header> <value>`, `filter add ...`, `filter delete <header> [<value>]`,
    /// `filter delete all`.
    pub fn filter_command(&mut self, line: &str) -> String {
        let rest = line.get(7..).unwrap_or("").trim_start_matches(' ');
        let (name, value) = match rest.split_once(' ') {
            Some((n, v)) => (n, Some(v)),
            None => (rest, None),
        };
        if name.eq_ignore_ascii_case("delete")
            && let Some(args) = value
        {
            let (name, value) = match args.split_once(' ') {
                Some((n, v)) => (n, Some(v)),
                None => (args, None),
            };
            if name.eq_ignore_ascii_case("all") {
                self.filters.clear();
            } else {
                self.filters.retain(|(n, v)| {
                    !(n.eq_ignore_ascii_case(name) && value.is_none_or(|value| v == value))
                });
            }
            return format!(
                "+OK filter deleted. [{name}][{}]",
                value.unwrap_or_default()
            );
        }
        let Some(value) = value else {
            return "-ERR invalid syntax".into();
        };
        let (name, value) = if name.eq_ignore_ascii_case("add") {
            match value.split_once(' ') {
                Some((n, v)) => (n, v),
                None => return "-ERR invalid syntax".into(),
            }
        } else {
            (name, value)
        };
        self.filters.push((name.to_owned(), value.to_owned()));
        format!("+OK filter added. [{name}]=[{value}]")
    }

    /// Whether `event` is delivered to this listener (subscription, then filters).
    pub fn wants(&self, event: &Event) -> bool {
        if !self.enabled {
            return false;
        }
        let name = event.event_name().unwrap_or("");
        let subscribed = self.all
            || (self.types.contains(name)
                && (name != "CUSTOM"
                    || event
                        .subclass()
                        .is_none_or(|sub| self.subclasses.contains(sub))));
        subscribed && self.filters_pass(event)
    }

    /// mod_event_socket's filter loop: with filters, an event is sent only if a positive filter
    /// matches and no negative one does before it.
    fn filters_pass(&self, event: &Event) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let mut send = false;
        for (name, stored) in &self.filters {
            let Some(value) = event.get(name) else {
                continue;
            };
            let mut positive = true;
            let mut comp = stored.as_str();
            loop {
                match comp.as_bytes().first() {
                    Some(b'+') => positive = true,
                    Some(b'-') => positive = false,
                    Some(b' ') => {}
                    _ => break,
                }
                comp = &comp[1..];
            }
            if send && positive {
                continue;
            }
            let matched = if stored.starts_with('/') {
                regex_match(comp, value)
            } else {
                comp.eq_ignore_ascii_case(value)
            };
            if matched {
                if positive {
                    send = true;
                } else {
                    return false;
                }
            }
        }
        send
    }
}

/// `switch_regex_perform` with a `/pattern/flags` expression (flags `i`, `s`). An invalid
/// pattern matches nothing.
fn regex_match(expr: &str, value: &str) -> bool {
    let body = expr.strip_prefix('/').unwrap_or(expr);
    let (pattern, flags) = match body.rfind('/') {
        Some(pos) => (&body[..pos], &body[pos + 1..]),
        None => (body, ""),
    };
    regex::RegexBuilder::new(pattern)
        .case_insensitive(flags.contains('i'))
        .dot_matches_new_line(flags.contains('s'))
        .build()
        .is_ok_and(|re| re.is_match(value))
}

/// One ESL connection's side of the bus.
#[derive(Debug)]
pub(crate) struct Listener {
    pub id: u64,
    pub sub: Mutex<Subscription>,
    tx: mpsc::Sender<Arc<Event>>,
    missed: AtomicU32,
    killed: AtomicBool,
    /// Woken when the listener is killed for losing events.
    pub kill: Notify,
}

impl Listener {
    /// Queues `event` if the listener wants it.
    fn offer(&self, event: &Arc<Event>) {
        if !lock(&self.sub).wants(event) {
            return;
        }
        match self.tx.try_send(Arc::clone(event)) {
            Ok(()) => {
                let lost = self.missed.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    tracing::warn!(listener = self.id, lost, "Lost [{lost}] events!");
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let lost = self.missed.fetch_add(1, Ordering::Relaxed) + 1;
                if lost == 1 {
                    tracing::error!(listener = self.id, "Event enqueue ERROR");
                }
                if lost > MAX_MISSED && !self.killed.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        listener = self.id,
                        "killing listener because of lost events"
                    );
                    self.kill.notify_one();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// True once the listener has been killed for losing events.
    #[cfg(test)]
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

/// All listeners of a node.
#[derive(Debug, Default)]
pub(crate) struct Bus {
    listeners: Mutex<Vec<Arc<Listener>>>,
    next_id: AtomicU64,
}

impl Bus {
    /// A new listener with a queue of `queue_len` events.
    pub fn register(&self, queue_len: usize) -> (Arc<Listener>, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let listener = Arc::new(Listener {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            sub: Mutex::new(Subscription::default()),
            tx,
            missed: AtomicU32::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        lock(&self.listeners).push(Arc::clone(&listener));
        (listener, rx)
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.listeners).retain(|l| l.id != id);
    }

    /// Fires events in order to every listener.
    pub fn fire(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let listeners = lock(&self.listeners).clone();
        for event in events {
            let event = Arc::new(event);
            for l in &listeners {
                l.offer(&event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esl::Headers;

    fn ev(pairs: &[(&str, &str)]) -> Event {
        Event::new(pairs.iter().copied().collect::<Headers>(), None)
    }

    #[test]
    fn event_command_replies_and_format() {
        let mut s = Subscription::default();
        assert_eq!(
            s.event_command("event bogus CHANNEL_CREATE"),
            "+OK event listener enabled plain"
        );
        assert_eq!(
            s.event_command("event json HEARTBEAT"),
            "+OK event listener enabled json"
        );
        // An unknown first word leaves the format as it was.
        assert_eq!(
            s.event_command("event bogus CHANNEL_CREATE"),
            "+OK event listener enabled json"
        );
        assert_eq!(s.event_command("event plain"), "-ERR no keywords supplied");
        assert_eq!(
            s.event_command("event plain nothing"),
            "-ERR no keywords supplied"
        );
    }

    #[test]
    fn custom_subclasses() {
        let mut s = Subscription::default();
        s.event_command("event plain HEARTBEAT CUSTOM conference::maintenance");
        let conf = ev(&[
            ("Event-Subclass", "conference::maintenance"),
            ("Event-Name", "CUSTOM"),
        ]);
        let sofia = ev(&[
            ("Event-Subclass", "sofia::register"),
            ("Event-Name", "CUSTOM"),
        ]);
        assert!(s.wants(&conf));
        assert!(!s.wants(&sofia));
        assert!(s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        assert!(!s.wants(&ev(&[("Event-Name", "CHANNEL_CREATE")])));
        assert_eq!(
            s.nixevent_command("nixevent CUSTOM conference::maintenance"),
            "+OK events nixed"
        );
        assert!(!s.wants(&conf));
    }

    #[test]
    fn nixevent_after_all_needs_subclasses() {
        let mut s = Subscription::default();
        s.event_command("event plain ALL");
        let conf = ev(&[
            ("Event-Subclass", "conference::maintenance"),
            ("Event-Name", "CUSTOM"),
        ]);
        assert!(s.wants(&conf));
        s.nixevent_command("nixevent HEARTBEAT");
        assert!(!s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        assert!(s.wants(&ev(&[("Event-Name", "API")])));
        assert!(!s.wants(&conf));
    }

    #[test]
    fn noevents_and_nixevent_replies() {
        let mut s = Subscription::default();
        assert_eq!(s.noevents_command().0, "-ERR not listening for events");
        assert_eq!(
            s.nixevent_command("nixevent CHANNEL_CREATE"),
            "+OK events nixed"
        );
        assert_eq!(s.nixevent_command("nixevent"), "-ERR no keywords supplied");
        s.event_command("event plain ALL");
        assert_eq!(s.noevents_command().0, "+OK no longer listening for events");
        assert!(!s.wants(&ev(&[("Event-Name", "API")])));
    }

    #[test]
    fn filters() {
        let mut s = Subscription::default();
        s.event_command("event plain ALL");
        assert_eq!(
            s.filter_command("filter Event-Name CHANNEL_CREATE"),
            "+OK filter added. [Event-Name]=[CHANNEL_CREATE]"
        );
        assert!(s.wants(&ev(&[("Event-Name", "channel_create")])));
        assert!(!s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        assert_eq!(
            s.filter_command("filter Unique-ID -abc"),
            "+OK filter added. [Unique-ID]=[-abc]"
        );
        assert!(!s.wants(&ev(&[
            ("Event-Name", "CHANNEL_CREATE"),
            ("Unique-ID", "abc")
        ])));
        assert_eq!(
            s.filter_command("filter delete Event-Name CHANNEL_CREATE"),
            "+OK filter deleted. [Event-Name][CHANNEL_CREATE]"
        );
        assert_eq!(
            s.filter_command("filter delete all"),
            "+OK filter deleted. [all][]"
        );
        assert!(s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        assert_eq!(s.filter_command("filter Unique-ID"), "-ERR invalid syntax");
        s.filter_command("filter Event-Name /^CHANNEL_.*/");
        assert!(s.wants(&ev(&[("Event-Name", "CHANNEL_ANSWER")])));
        assert!(!s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        s.filter_command("filter add Event-Name /heart/i");
        assert!(s.wants(&ev(&[("Event-Name", "HEARTBEAT")])));
        // Events lacking every filtered header are dropped.
        assert!(!s.wants(&ev(&[("Other", "x")])));
    }

    #[tokio::test]
    async fn slow_listener_is_killed_after_500_losses() {
        let bus = Bus::default();
        let (l, _rx) = bus.register(2);
        lock(&l.sub).event_command("event plain ALL");
        let events: Vec<Event> = (0..2 + MAX_MISSED as usize)
            .map(|_| ev(&[("Event-Name", "API")]))
            .collect();
        bus.fire(events);
        assert!(!l.is_killed());
        bus.fire(vec![ev(&[("Event-Name", "API")])]);
        assert!(l.is_killed());
    }
}
