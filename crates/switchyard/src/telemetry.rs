//! Tracing setup for the binary: logs go to stderr, as human-readable lines or JSON.
//!
//! stdout is kept free for command output (`check-config`) and the one `listening on` line
//! that scripts and the black-box tests read.

use std::io::IsTerminal;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. A non-empty `RUST_LOG` overrides `log.filter`.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).context("invalid RUST_LOG")?
        }
        _ => EnvFilter::try_new(&log.filter).context("invalid log.filter")?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match log.format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.context("a tracing subscriber is already installed")
}
