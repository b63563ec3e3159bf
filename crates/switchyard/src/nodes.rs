//! ESL connections to FreeSWITCH nodes (wired in by the lead).
//!
//! Inputs already in place: `config.nodes` and `config.esl` on [`crate::App::config`]; spawn
//! the per-node tasks on [`crate::App::tasks`] and stop them on [`crate::App::shutdown`] (see
//! the comment in [`crate::run`]).
