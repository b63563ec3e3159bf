//! Integration tests, linked into one binary (faster to build than one binary per file).
//!
//! - `store`: the same assertions against SQLite and PostgreSQL (`DATABASE_URL`).
//! - `serve`: `switchyard::run` in-process on a port-0 listener.
//! - `binary`: the real `switchyard` executable: startup line, probes, signals, bad configs.

mod binary;
mod serve;
mod store;
mod support;
