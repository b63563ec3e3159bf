//! Integration tests, linked into one binary (faster to build than one binary per file).
//!
//! - `store`: the same assertions against SQLite and PostgreSQL (`DATABASE_URL`).
//! - `serve`: `switchyard::run` in-process on a port-0 listener.
//! - `nodes`: ESL supervision against simulated FreeSWITCH nodes (fsim).
//! - `conferences`: invitations, live members, control, limits, history over REST with fsim.
//! - `freeswitch_conf`: `freeswitch-conf/` is well-formed and agrees with the config defaults.
//! - `pool`: the node pool (nodes API, health, placement, drain, loss, reconciliation, metrics).
//! - `replicas`: several replicas on PostgreSQL + Redis (leases, shared placement and live state).
//! - `redis`: the optional Redis connection (`REDIS_URL`).
//! - `webhooks`: signed deliveries to a test receiver, retries, restarts, node death.
//! - `binary`: the real `switchyard` executable: startup line, probes, signals, bad configs.
//! - `check_config`: `switchyard check-config` reports every problem of a file at once.

mod binary;
mod check_config;
mod conferences;
mod demo;
mod directory;
mod events;
mod freeswitch_conf;
mod nodes;
mod pool;
mod redis;
mod replicas;
mod serve;
mod store;
mod support;
mod users;
mod webhooks;
