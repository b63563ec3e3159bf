//! Service configuration, loaded in layers and validated once at startup.
//!
//! Layers, later ones win (figment, as in zero-to-production's `configuration.rs`):
//! 1. built-in defaults (the `Default` impls below, applied by `#[serde(default)]`);
//! 2. a TOML file: `--config PATH`, else `$SWITCHYARD_CONFIG`, else `switchyard.toml` in the
//!    working directory (only the last one may be missing);
//! 3. `SWITCHYARD_`-prefixed environment variables, `__` separating nested keys
//!    (`SWITCHYARD_HTTP__LISTEN=0.0.0.0:8080`).
//!
//! Every section denies unknown keys, so a typo fails startup instead of being ignored.
//! Extraction checks types; [`Config::validate`] then checks what types cannot (unique node
//! ids, `host:port` addresses, non-zero durations, URL schemes) and names the offending key.
//! Secrets (ESL passwords, database and Redis URLs) are [`SecretString`]s: `Debug` hides them
//! and the `Serialize` impl used by `switchyard check-config` redacts them.

mod error;
mod secret;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use validate::{Invalid, Violation};

/// The file read from the working directory when no path is given.
pub const DEFAULT_CONFIG_FILE: &str = "switchyard.toml";
/// Environment variable naming the config file (`--config` wins over it).
pub const CONFIG_PATH_ENV: &str = "SWITCHYARD_CONFIG";
/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SWITCHYARD_";

/// The whole service configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub esl: EslConfig,
    /// The FreeSWITCH nodes to keep ESL connections to (`[[nodes]]` in TOML).
    pub nodes: Vec<NodeConfig>,
}

/// `[http]`: the API listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to bind; port 0 picks a free port (the bound address is printed).
    pub listen: String,
    /// After a shutdown signal, how long in-flight requests and tasks may take.
    pub shutdown_grace_secs: u64,
    /// Upper bound for one request; slower ones get a 503 problem document.
    pub request_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_secs: 10,
            request_timeout_secs: 30,
        }
    }
}

impl HttpConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// `[database]`: SQLite (embedded default) or PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH[?mode=rwc]` or `postgres://…` / `postgresql://…`. Secret: it may hold a
    /// password.
    #[serde(serialize_with = "secret::serialize_url")]
    pub url: SecretString,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://switchyard.db?mode=rwc"),
            max_connections: 5,
        }
    }
}

/// `[redis]`: optional until replicas share state.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    #[serde(serialize_with = "secret::serialize_opt_url")]
    pub url: Option<SecretString>,
}

/// `[log]`: where tracing output goes and how much of it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info,switchyard=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[esl]`: how every node connection is dialled and watched.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EslConfig {
    pub connect_timeout_ms: u64,
    /// No bytes and no HEARTBEAT for this long means the connection is dead: reconnect.
    pub dead_after_secs: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for EslConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2000,
            dead_after_secs: 45,
            backoff_min_ms: 250,
            backoff_max_ms: 10_000,
        }
    }
}

impl EslConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn dead_after(&self) -> Duration {
        Duration::from_secs(self.dead_after_secs)
    }

    pub fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.backoff_min_ms)
    }

    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }
}

/// One `[[nodes]]` entry: a FreeSWITCH node Switchyard may place conferences on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable name, `[a-z0-9][a-z0-9_-]{0,62}`; used in logs, metrics and the `nodes` table.
    pub id: String,
    /// mod_event_socket `host:port`.
    #[serde(default = "default_esl_addr")]
    pub esl_addr: String,
    /// mod_event_socket password. Required: FreeSWITCH's stock `ClueCon` is not a secret.
    #[serde(serialize_with = "secret::serialize_redacted")]
    pub esl_password: SecretString,
    /// Where browsers reach this node's SIP-over-WebSocket listener (`wss://…`).
    pub wss_url: String,
    /// How many conference members the node may carry.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Free-form placement hints (`region = "eu"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_esl_addr() -> String {
    "127.0.0.1:8021".to_owned()
}

fn default_capacity() -> u32 {
    100
}

impl Config {
    /// The layered sources (defaults come from serde), without extracting them.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(file) = file {
            // `file_exact`: a relative path means the working directory, never a parent.
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"))
    }

    /// Loads, extracts and validates. `explicit` is the `--config` flag.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let (file, required) = match explicit {
            Some(path) => (path.to_path_buf(), true),
            None => match std::env::var_os(CONFIG_PATH_ENV) {
                Some(path) if !path.is_empty() => (PathBuf::from(path), true),
                _ => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
            },
        };
        let file = if file.is_file() {
            Some(file)
        } else if required {
            return Err(ConfigError::FileNotFound { path: file });
        } else {
            None
        };
        Self::from_figment(&Self::figment(file.as_deref()))
    }

    /// Extracts and validates any figment (tests and embedders build their own).
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: Self = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot; every violation is reported, each naming its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::validate(self)
    }

    /// The config as TOML with every secret redacted, for `switchyard check-config`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}
