//! Switchyard: the control plane for conferences on a pool of FreeSWITCH nodes.
//!
//! # Layout
//!
//! - [`config`]: layered configuration (defaults → TOML file → `SWITCHYARD_*` env), validated.
//! - [`store`]: SQLite or PostgreSQL through sqlx; the only module with SQL.
//! - [`http`]: the axum router; the only module that imports axum. Errors are
//!   [`http::ApiError`] problem documents.
//! - [`nodes`]: the node pool: ESL supervision, health, placement, ownership, reconciliation.
//! - [`live`]: live conferences and members (in process, or in Redis for several replicas).
//! - [`coord`]: Redis, shared by replicas (optional): connection, key prefix, node leases.
//! - [`events`]: the in-process bus of what happened.
//! - [`webhooks`]: signed HTTP notifications of bus events, queued in the store, retried.
//! - [`metrics`]: Prometheus counters; gauges are computed at scrape time.
//! - [`auth`]: API keys (`/v1`), node basic auth and allow-list (`/freeswitch`).
//! - [`credentials`]: short-lived SIP credentials (generation, digest A1).
//! - [`freeswitch`]: mod_xml_curl requests and the directory documents (no axum).
//! - [`ids`]: the strict charsets of user ids and domains.
//! - [`app`]: [`App`], the shared state, and [`AppState`], how handlers receive it.
//! - [`startup`]: [`run`] serves on a bound listener until a shutdown future resolves, then
//!   drains within the grace period.
//! - [`telemetry`]: tracing subscriber for the binary.
//!
//! The binary (`main.rs`) only parses the command line, loads the config, installs tracing
//! and signal handlers, binds the listener and calls [`run`].

pub mod app;
pub mod auth;
pub mod browser;
pub mod config;
pub mod coord;
pub mod credentials;
pub mod events;
pub mod freeswitch;
pub mod housekeeping;
pub mod http;
pub mod ids;
pub mod live;
pub mod metrics;
pub mod nodes;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use app::{App, AppState};
pub use config::Config;
pub use startup::{run, shutdown_signal};

/// `err: cause: cause…`, for messages that must carry the whole chain on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
