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
//! Loading reports every problem at once ([`Problems`], see `check`): each unknown key (with
//! a "did you mean"), each type error and each failed check, with the file or environment
//! variable it came from, for `check-config` and `serve` alike.
//! Secrets (ESL passwords, database and Redis URLs) are [`SecretString`]s: `Debug` hides them
//! and the `Serialize` impl used by `switchyard check-config` redacts them.

mod browser;
mod check;
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

pub use browser::{DemoConfig, EventsConfig};
pub use error::{ConfigError, Problem, ProblemKind, Problems};
pub use validate::{Invalid, Violation};
pub(crate) use validate::{
    host_port as check_host_port, node_id as check_node_id, wss_url as check_wss_url,
};

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
    pub pool: PoolConfig,
    /// The FreeSWITCH nodes to keep ESL connections to (`[[nodes]]` in TOML).
    pub nodes: Vec<NodeConfig>,
    pub api: ApiConfig,
    pub sip: SipConfig,
    pub conferences: ConferencesConfig,
    pub freeswitch: FreeswitchConfig,
    pub webhooks: WebhooksConfig,
    pub events: EventsConfig,
    pub demo: DemoConfig,
}

/// `[api]`: who may call the REST API (`/v1`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// API keys, sent as `Authorization: Bearer <key>`. None configured: every `/v1` request
    /// is refused with 401.
    pub keys: Vec<ApiKeyConfig>,
}

/// One API key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the key in logs (the key itself is never logged); `[a-z0-9][a-z0-9_-]{0,62}`.
    pub id: String,
    /// The secret, at least [`MIN_API_KEY_LEN`] characters.
    #[serde(serialize_with = "secret::serialize_redacted")]
    pub key: SecretString,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

/// Shortest API key accepted (characters).
pub const MIN_API_KEY_LEN: usize = 24;

/// A permission an API key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Scope {
    /// `GET /v1/users/{id}`.
    #[serde(rename = "users:read")]
    UsersRead,
    /// `PUT` and `DELETE /v1/users/{id}`.
    #[serde(rename = "users:write")]
    UsersWrite,
    /// `POST /v1/users/{id}/sip-credentials`.
    #[serde(rename = "credentials:issue")]
    CredentialsIssue,
    /// `GET /v1/nodes`.
    #[serde(rename = "nodes:read")]
    NodesRead,
    /// `POST /v1/nodes`, drain, undrain, `DELETE /v1/nodes/{id}`.
    #[serde(rename = "nodes:write")]
    NodesWrite,
    /// `GET /v1/conferences/...`.
    #[serde(rename = "conferences:read")]
    ConferencesRead,
    /// Placing and ending conferences.
    #[serde(rename = "conferences:write")]
    ConferencesWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::CredentialsIssue => "credentials:issue",
            Self::NodesRead => "nodes:read",
            Self::NodesWrite => "nodes:write",
            Self::ConferencesRead => "conferences:read",
            Self::ConferencesWrite => "conferences:write",
        }
    }
}

/// `[sip]`: the SIP side of the users: domain, realm and credential lifetime.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// The directory domain and digest realm of every node (FreeSWITCH `force-register-domain`
    /// / `challenge-realm`). Directory requests for other domains are answered "not found".
    pub domain: String,
    /// Lifetime of a credential from `POST /v1/users/{id}/sip-credentials`.
    pub credential_ttl_secs: u64,
    /// The dialplan context users' calls run in (`user_context`).
    pub user_context: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            domain: "127.0.0.1".to_owned(),
            credential_ttl_secs: 3600,
            user_context: "default".to_owned(),
        }
    }
}

impl SipConfig {
    pub fn credential_ttl(&self) -> Duration {
        Duration::from_secs(self.credential_ttl_secs)
    }
}

/// `[conferences]`: how the API's conferences map onto the nodes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConferencesConfig {
    /// The mod_conference profile of `profile = "audio"` conferences (conference.conf.xml of
    /// `freeswitch-conf/` defines `audio`).
    pub audio_profile: String,
    /// The mod_conference profile of `profile = "video"` conferences.
    pub video_profile: String,
    /// Where recordings go on the nodes: `<dir>/<name>/<name>-<UTC time>.<wav|mp4>`.
    pub recordings_dir: String,
    /// Ended conferences, member stays and recording rows older than this many days are
    /// deleted (hourly); 0 keeps them forever. Recording files on the nodes are not touched.
    pub history_retention_days: u32,
}

impl Default for ConferencesConfig {
    fn default() -> Self {
        Self {
            audio_profile: "audio".to_owned(),
            video_profile: "video".to_owned(),
            recordings_dir: "/var/lib/freeswitch/recordings".to_owned(),
            history_retention_days: 0,
        }
    }
}

impl ConferencesConfig {
    /// The mod_conference profile of an API profile (`audio` or `video`); other names (adopted
    /// conferences) are the node's own and pass through.
    pub fn node_profile<'a>(&'a self, profile: &'a str) -> &'a str {
        match profile {
            "audio" => &self.audio_profile,
            "video" => &self.video_profile,
            other => other,
        }
    }
}

/// `[freeswitch]`: who may call the mod_xml_curl endpoints (`/freeswitch/...`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreeswitchConfig {
    /// HTTP basic auth user (mod_xml_curl `gateway-credentials` = `username:password`).
    pub username: String,
    /// HTTP basic auth password. Unset: every request is refused with 401.
    #[serde(serialize_with = "secret::serialize_opt_redacted")]
    pub password: Option<SecretString>,
    /// Also accepted while nodes move to a new `password` (rotation without a gap); remove it
    /// once no node uses it (the log says which node still does).
    #[serde(serialize_with = "secret::serialize_opt_redacted")]
    pub previous_password: Option<SecretString>,
    /// Node addresses allowed to call (CIDRs, e.g. `10.0.0.0/24`, `::1/128`); others get 403.
    pub allow_from: Vec<String>,
    /// Largest request body accepted (mod_xml_curl forms are about 1–2 KiB); larger get 413.
    pub max_body_bytes: usize,
    /// Directory cache size (SIP usernames); 0 disables it. Used with SQLite only: with
    /// PostgreSQL, replicas cannot yet invalidate each other's caches.
    pub directory_cache_entries: usize,
}

impl Default for FreeswitchConfig {
    fn default() -> Self {
        Self {
            username: "freeswitch".to_owned(),
            password: None,
            previous_password: None,
            allow_from: vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()],
            max_body_bytes: 64 * 1024,
            directory_cache_entries: 100_000,
        }
    }
}

/// `[webhooks]`: HTTP endpoints that receive signed event notifications (see
/// `docs/webhooks.md`). No endpoint configured: nothing is recorded or sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Where events are POSTed (`endpoints = [{ id, url, secret, ... }]` in TOML).
    pub endpoints: Vec<WebhookEndpointConfig>,
    /// Upper bound of one delivery attempt (connect, send, response status).
    pub timeout_ms: u64,
    /// First retry delay; it doubles per failed attempt (with jitter) up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// A delivery is given up (and logged at error) after this many attempts...
    pub max_attempts: u32,
    /// ...or once it is this old, whichever comes first.
    pub max_age_secs: u64,
    /// `member.talking` is sent once a member's talking state has held for this long (0: every
    /// change).
    pub talking_debounce_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            timeout_ms: 10_000,
            retry_min_ms: 1_000,
            retry_max_ms: 600_000,
            max_attempts: 200,
            max_age_secs: 86_400,
            talking_debounce_ms: 1_000,
        }
    }
}

impl WebhooksConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn retry_min(&self) -> Duration {
        Duration::from_millis(self.retry_min_ms)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_secs)
    }

    pub fn talking_debounce(&self) -> Duration {
        Duration::from_millis(self.talking_debounce_ms)
    }
}

/// One webhook receiver.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// Names the endpoint in logs and in the delivery queue; `[a-z0-9][a-z0-9_-]{0,62}`.
    pub id: String,
    /// `http://` or `https://` URL the events are POSTed to. Secret (it may hold a password
    /// or a token): `Debug` hides it, `check-config` shows it with its password redacted.
    #[serde(serialize_with = "secret::serialize_url")]
    pub url: SecretString,
    /// HMAC-SHA256 key of the signature header, at least [`MIN_WEBHOOK_SECRET_LEN`] characters.
    #[serde(serialize_with = "secret::serialize_redacted")]
    pub secret: SecretString,
    /// The event types to send; unset: every type except `member.talking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WebhookEventType>>,
    /// Also send `member.talking` (opt-in: it is the chattiest event).
    #[serde(default)]
    pub talking: bool,
}

impl WebhookEndpointConfig {
    /// Whether this endpoint receives events of type `kind`.
    pub fn wants(&self, kind: WebhookEventType) -> bool {
        if kind == WebhookEventType::MemberTalking {
            return self.talking;
        }
        match &self.events {
            Some(events) => events.contains(&kind),
            None => true,
        }
    }
}

/// Shortest webhook secret accepted (characters).
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// The type of a webhook event (`type` in its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum WebhookEventType {
    #[serde(rename = "conference.started")]
    ConferenceStarted,
    #[serde(rename = "conference.ended")]
    ConferenceEnded,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.left")]
    MemberLeft,
    #[serde(rename = "member.talking")]
    MemberTalking,
    /// An invitee's browser declined or answered busy.
    #[serde(rename = "invitation.declined")]
    InvitationDeclined,
    #[serde(rename = "recording.started")]
    RecordingStarted,
    #[serde(rename = "recording.stopped")]
    RecordingStopped,
    #[serde(rename = "node.down")]
    NodeDown,
    #[serde(rename = "node.up")]
    NodeUp,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 10] = [
        Self::ConferenceStarted,
        Self::ConferenceEnded,
        Self::MemberJoined,
        Self::MemberLeft,
        Self::MemberTalking,
        Self::InvitationDeclined,
        Self::RecordingStarted,
        Self::RecordingStopped,
        Self::NodeDown,
        Self::NodeUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConferenceStarted => "conference.started",
            Self::ConferenceEnded => "conference.ended",
            Self::MemberJoined => "member.joined",
            Self::MemberLeft => "member.left",
            Self::MemberTalking => "member.talking",
            Self::InvitationDeclined => "invitation.declined",
            Self::RecordingStarted => "recording.started",
            Self::RecordingStopped => "recording.stopped",
            Self::NodeDown => "node.down",
            Self::NodeUp => "node.up",
        }
    }
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

/// `[redis]`: what several replicas share. Unset: one replica with in-process state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    #[serde(serialize_with = "secret::serialize_opt_url")]
    pub url: Option<SecretString>,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "switchyard:".to_owned(),
        }
    }
}

/// `[pool]`: node health, placement and ownership (see ARCHITECTURE.md for the rules).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// No HEARTBEAT for this long makes a node `degraded` (FreeSWITCH sends one every 20 s).
    pub heartbeat_late_secs: u64,
    /// How often each node is probed with `api status`.
    pub probe_interval_secs: u64,
    /// A probe slower than this makes a node `degraded`.
    pub esl_slow_ms: u64,
    /// How long a node may be `down` before its conferences are ended (reason `node_down`).
    pub node_down_grace_secs: u64,
    /// A placement nobody is in for this long is ended (reason `idle_timeout`).
    pub idle_timeout_secs: u64,
    /// Nodes whose last HEARTBEAT reported less idle CPU (percent) get no new conferences.
    pub min_idle_cpu: f64,
    /// How often each replica re-reads the node list (nodes added, drained or removed elsewhere).
    pub sync_interval_secs: u64,
    /// Lifetime of a node lease in Redis; renewed every third of it. A dead replica's nodes
    /// are taken over within about this long.
    pub lease_ttl_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            heartbeat_late_secs: 30,
            probe_interval_secs: 10,
            esl_slow_ms: 1000,
            node_down_grace_secs: 5,
            idle_timeout_secs: 600,
            min_idle_cpu: 5.0,
            sync_interval_secs: 2,
            lease_ttl_secs: 6,
        }
    }
}

impl PoolConfig {
    pub fn heartbeat_late(&self) -> Duration {
        Duration::from_secs(self.heartbeat_late_secs)
    }

    pub fn probe_interval(&self) -> Duration {
        Duration::from_secs(self.probe_interval_secs)
    }

    pub fn esl_slow(&self) -> Duration {
        Duration::from_millis(self.esl_slow_ms)
    }

    pub fn node_down_grace(&self) -> Duration {
        Duration::from_secs(self.node_down_grace_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn sync_interval(&self) -> Duration {
        Duration::from_secs(self.sync_interval_secs)
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }
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

    /// Extracts and validates any figment (tests and embedders build their own). Every
    /// problem is reported, not just the first ([`ConfigError::Problems`]).
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        check::extract(figment)
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
