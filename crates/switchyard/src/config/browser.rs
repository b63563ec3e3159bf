//! `[events]` (the browser event channel) and `[demo]` (the demo page and its stand-in backend).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[events]`: the browser event channel (`GET /v1/events`, `docs/events.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Lifetime of a session token when the request names none.
    pub token_ttl_secs: u64,
    /// Longest lifetime a request may ask for.
    pub token_max_ttl_secs: u64,
    /// Lifetime of the SIP credentials sent with each `invited` event.
    pub sip_credentials_ttl_secs: u64,
    /// How often browsers ping (and Switchyard sends WebSocket pings); a channel silent for
    /// twice this plus 10 s is closed.
    pub heartbeat_secs: u64,
    /// Events kept per user for resumption after a short disconnect...
    pub replay_events: u32,
    /// ...for this long after the user's newest event.
    pub replay_secs: u64,
    /// Open channels per user on one replica.
    pub max_connections_per_user: u32,
    /// Longest text message, in Unicode scalar values.
    pub max_message_chars: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 900,
            token_max_ttl_secs: 86_400,
            sip_credentials_ttl_secs: 600,
            heartbeat_secs: 25,
            replay_events: 256,
            replay_secs: 120,
            max_connections_per_user: 16,
            max_message_chars: 2000,
        }
    }
}

impl EventsConfig {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// Silence after which a channel is closed (`4008 heartbeat_timeout`).
    pub fn idle_limit(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs * 2 + 10)
    }

    pub fn replay_window(&self) -> Duration {
        Duration::from_secs(self.replay_secs)
    }
}

/// `[demo]`: serves the demo page and an unauthenticated stand-in for a customer's web backend
/// (`/demo/api/*`). Never enable it on a reachable address: anyone could log in as anyone.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub enabled: bool,
    /// The directory served at `/demo/` (`examples/web` in the repository).
    pub web_root: PathBuf,
    /// Let the demo backend answer non-loopback clients too (off: 403 for them).
    pub allow_remote: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            web_root: PathBuf::from("examples/web"),
            allow_remote: false,
        }
    }
}
