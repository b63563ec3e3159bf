//! The health of one node as one replica sees it: a small state machine fed by the ESL
//! connection, HEARTBEATs and probe round trips, with time as an input.
//!
//! | from | to | when |
//! |---|---|---|
//! | `connecting` | `up` | the connection is authenticated and subscribed |
//! | `connecting` | `down` | no connection within `connecting_limit` of the start (the node's downtime counts from the start) |
//! | `up` | `degraded` | no HEARTBEAT for `heartbeat_late` (FreeSWITCH sends one every 20 s), or the last `api status` probe failed or took longer than `esl_slow` |
//! | `degraded` | `up` | a HEARTBEAT arrived within `heartbeat_late` and the last probe was fast |
//! | any connected | `down` | the connection is lost (closed, disconnect notice, dead peer) |
//! | `down` | `up` | reconnected (then reconciled) |
//!
//! `degraded` only stops new placements (a blip must not move conferences, as Jitsi's Jicofo
//! learned); `down` stops them at once and, after `node_down_grace`, ends the node's conferences
//! (the supervisor does that, not this module). Draining is an operator flag kept beside this
//! state, not part of it.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Connection health of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not connected yet since this replica started (or since the node was added).
    Connecting,
    /// Connected, heartbeats on time, commands answered quickly.
    Up,
    /// Connected but late or slow: no new conferences.
    Degraded,
    /// Not connected: no new conferences; live ones end after the grace period.
    Down,
}

impl Health {
    /// How bad a state is for placement: of two views of a node, the worse one counts.
    pub fn severity(self) -> u8 {
        match self {
            Self::Up => 0,
            Self::Degraded => 1,
            Self::Connecting => 2,
            Self::Down => 3,
        }
    }

    /// The worse of two views.
    pub fn worst(self, other: Health) -> Health {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// The thresholds of the transitions.
#[derive(Debug, Clone, Copy)]
pub struct HealthRules {
    /// No HEARTBEAT for this long → `degraded`.
    pub heartbeat_late: Duration,
    /// An `api` probe slower than this (or failing) → `degraded`.
    pub esl_slow: Duration,
    /// Never connected for this long → `down`.
    pub connecting_limit: Duration,
}

/// Why a connected node is `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DegradedReason {
    HeartbeatLate,
    EslSlow,
    ProbeFailed,
}

impl DegradedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeartbeatLate => "heartbeat_late",
            Self::EslSlow => "esl_slow",
            Self::ProbeFailed => "probe_failed",
        }
    }
}

/// Health state machine of one node.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    rules: HealthRules,
    health: Health,
    created: Instant,
    /// Last HEARTBEAT, or the connection time if none came since.
    fresh_since: Option<Instant>,
    down_since: Option<Instant>,
    last_rtt: Option<Duration>,
    probe_failed: bool,
}

impl HealthTracker {
    pub fn new(rules: HealthRules, now: Instant) -> Self {
        Self {
            rules,
            health: Health::Connecting,
            created: now,
            fresh_since: None,
            down_since: None,
            last_rtt: None,
            probe_failed: false,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Why the node is degraded (`None` unless it is).
    pub fn degraded_reason(&self, now: Instant) -> Option<DegradedReason> {
        match self.health {
            Health::Up | Health::Degraded => self.connected_problem(now),
            Health::Connecting | Health::Down => None,
        }
    }

    /// What would make a connected node degraded at `now`.
    fn connected_problem(&self, now: Instant) -> Option<DegradedReason> {
        if self.probe_failed {
            Some(DegradedReason::ProbeFailed)
        } else if self.last_rtt.is_some_and(|rtt| rtt > self.rules.esl_slow) {
            Some(DegradedReason::EslSlow)
        } else if self
            .fresh_since
            .is_none_or(|t| now.saturating_duration_since(t) > self.rules.heartbeat_late)
        {
            Some(DegradedReason::HeartbeatLate)
        } else {
            None
        }
    }

    /// How long the node has been down (`None` when it is not).
    pub fn down_for(&self, now: Instant) -> Option<Duration> {
        (self.health == Health::Down)
            .then(|| self.down_since.map(|t| now.saturating_duration_since(t)))
            .flatten()
    }

    /// The last probe's round trip.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    pub fn on_connected(&mut self, now: Instant) -> Option<(Health, Health)> {
        self.fresh_since = Some(now);
        self.down_since = None;
        self.probe_failed = false;
        self.last_rtt = None;
        self.settle(now)
    }

    pub fn on_disconnected(&mut self, now: Instant) -> Option<(Health, Health)> {
        if self.health != Health::Down {
            self.down_since = Some(now);
        }
        self.set(Health::Down)
    }

    pub fn on_heartbeat(&mut self, now: Instant) -> Option<(Health, Health)> {
        self.fresh_since = Some(now);
        self.tick(now)
    }

    /// The result of an `api` probe: its round trip, or `None` if it failed or timed out.
    pub fn on_probe(&mut self, now: Instant, rtt: Option<Duration>) -> Option<(Health, Health)> {
        self.probe_failed = rtt.is_none();
        self.last_rtt = rtt;
        self.tick(now)
    }

    /// Re-evaluates the time-based rules.
    pub fn tick(&mut self, now: Instant) -> Option<(Health, Health)> {
        match self.health {
            Health::Up | Health::Degraded => self.settle(now),
            Health::Connecting
                if now.saturating_duration_since(self.created) > self.rules.connecting_limit =>
            {
                self.down_since = Some(self.created);
                self.set(Health::Down)
            }
            Health::Connecting | Health::Down => None,
        }
    }

    /// Sets `up` or `degraded`, whichever the rules say for a connected node.
    fn settle(&mut self, now: Instant) -> Option<(Health, Health)> {
        let next = match self.connected_problem(now) {
            Some(_) => Health::Degraded,
            None => Health::Up,
        };
        self.set(next)
    }

    fn set(&mut self, next: Health) -> Option<(Health, Health)> {
        let prev = std::mem::replace(&mut self.health, next);
        (prev != next).then_some((prev, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: HealthRules = HealthRules {
        heartbeat_late: Duration::from_secs(30),
        esl_slow: Duration::from_secs(1),
        connecting_limit: Duration::from_secs(5),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn connects_degrades_on_late_heartbeat_and_recovers() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(RULES, t0);
        assert_eq!(h.health(), Health::Connecting);
        assert_eq!(h.tick(t0 + secs(5)), None, "time alone never connects");
        assert_eq!(h.on_connected(t0), Some((Health::Connecting, Health::Up)));
        assert_eq!(h.tick(t0 + secs(30)), None, "30 s is not late yet");
        assert_eq!(h.tick(t0 + secs(31)), Some((Health::Up, Health::Degraded)));
        assert_eq!(
            h.degraded_reason(t0 + secs(31)),
            Some(DegradedReason::HeartbeatLate)
        );
        assert_eq!(
            h.on_heartbeat(t0 + secs(32)),
            Some((Health::Degraded, Health::Up))
        );
        assert_eq!(h.degraded_reason(t0 + secs(32)), None);
    }

    #[test]
    fn slow_or_failed_probes_degrade_until_a_fast_one() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(RULES, t0);
        h.on_connected(t0);
        assert_eq!(
            h.on_probe(t0, Some(Duration::from_millis(1500))),
            Some((Health::Up, Health::Degraded))
        );
        assert_eq!(h.degraded_reason(t0), Some(DegradedReason::EslSlow));
        assert_eq!(h.on_probe(t0, None), None);
        assert_eq!(h.degraded_reason(t0), Some(DegradedReason::ProbeFailed));
        assert_eq!(
            h.on_probe(t0, Some(Duration::from_millis(3))),
            Some((Health::Degraded, Health::Up))
        );
    }

    #[test]
    fn down_counts_from_the_first_loss_and_ends_on_reconnect() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(RULES, t0);
        h.on_connected(t0);
        assert_eq!(h.down_for(t0), None);
        assert_eq!(
            h.on_disconnected(t0 + secs(1)),
            Some((Health::Up, Health::Down))
        );
        // A failed reconnect attempt reports the loss again: the clock keeps running.
        assert_eq!(h.on_disconnected(t0 + secs(3)), None);
        assert_eq!(h.down_for(t0 + secs(6)), Some(secs(5)));
        assert_eq!(
            h.tick(t0 + secs(100)),
            None,
            "down stays down until reconnected"
        );
        assert_eq!(
            h.on_connected(t0 + secs(7)),
            Some((Health::Down, Health::Up))
        );
        assert_eq!(h.down_for(t0 + secs(8)), None);
    }

    #[test]
    fn a_node_never_reached_is_down_since_the_start() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(RULES, t0);
        assert_eq!(
            h.tick(t0 + secs(6)),
            Some((Health::Connecting, Health::Down))
        );
        assert_eq!(h.down_for(t0 + secs(8)), Some(secs(8)));
    }

    #[test]
    fn a_heartbeat_while_down_changes_nothing() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(RULES, t0);
        h.on_connected(t0);
        h.on_disconnected(t0);
        assert_eq!(h.on_heartbeat(t0), None);
        assert_eq!(h.health(), Health::Down);
    }
}
