//! The ESL ingest benchmark (`just bench`): corpus, replay server, measured consumers, report.
//!
//! Bench-only package; see `src/bin/esl-ingest.rs` for what is measured and how.

pub mod clients;
pub mod corpus;
pub mod decode;
pub mod measure;
pub mod server;
