//! Checks on a deserialized [`Config`] that types cannot express.
//!
//! All violations are collected, not just the first, so one run of `check-config` shows
//! everything to fix. Each names its key the way an operator writes it (`nodes[1].esl_addr`).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

/// Upper bound of `conferences.history_retention_days`.
const MAX_RETENTION_DAYS: u32 = 36_500;

use secrecy::ExposeSecret;

use super::Config;

/// One bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted key path, e.g. `nodes[0].id`.
    pub key: String,
    pub message: String,
}

/// Every violation found in one config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub violations: Vec<Violation>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration:")?;
        for v in &self.violations {
            write!(f, "\n  - {}: {}", v.key, v.message)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Collector(Vec<Violation>);

impl Collector {
    fn check(&mut self, key: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.0.push(Violation {
                key: key.into(),
                message,
            });
        }
    }

    fn positive(&mut self, key: &str, value: u64) {
        self.check(key, nonzero(value));
    }
}

pub(super) fn validate(config: &Config) -> Result<(), Invalid> {
    let mut c = Collector::default();

    let http = &config.http;
    c.check("http.listen", host_port(&http.listen, true));
    c.positive("http.shutdown_grace_secs", http.shutdown_grace_secs);
    c.positive("http.request_timeout_secs", http.request_timeout_secs);

    let db = &config.database;
    c.check("database.url", database_url(db.url.expose_secret()));
    c.positive("database.max_connections", db.max_connections.into());

    if let Some(url) = &config.redis.url {
        c.check("redis.url", redis_url(url.expose_secret()));
    }
    c.check("redis.key_prefix", key_prefix(&config.redis.key_prefix));

    let conferences = &config.conferences;
    for (key, profile) in [
        ("conferences.audio_profile", &conferences.audio_profile),
        ("conferences.video_profile", &conferences.video_profile),
    ] {
        if !crate::ids::valid_user_id(profile) {
            c.check(
                key,
                Err(format!(
                    "{profile:?} must match {} (a conference.conf profile name)",
                    crate::ids::USER_ID_PATTERN
                )),
            );
        }
    }
    let dir = &conferences.recordings_dir;
    if !dir.starts_with('/')
        || dir.len() > 256
        || !dir
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'{' | b'}' | b'\\'))
    {
        c.check(
            "conferences.recordings_dir",
            Err(
                "must be an absolute path of printable ASCII without spaces, quotes or braces"
                    .to_owned(),
            ),
        );
    }

    let pool = &config.pool;
    c.positive("pool.heartbeat_late_secs", pool.heartbeat_late_secs);
    c.positive("pool.probe_interval_secs", pool.probe_interval_secs);
    c.positive("pool.esl_slow_ms", pool.esl_slow_ms);
    c.positive("pool.idle_timeout_secs", pool.idle_timeout_secs);
    c.positive("pool.sync_interval_secs", pool.sync_interval_secs);
    if pool.lease_ttl_secs < 2 {
        c.check(
            "pool.lease_ttl_secs",
            Err("must be at least 2 (it is renewed every third of it)".to_owned()),
        );
    }
    if !(0.0..=100.0).contains(&pool.min_idle_cpu) {
        c.check(
            "pool.min_idle_cpu",
            Err("must be a percentage between 0 and 100".to_owned()),
        );
    }

    c.check("log.filter", log_filter(&config.log.filter));

    let esl = &config.esl;
    c.positive("esl.connect_timeout_ms", esl.connect_timeout_ms);
    c.positive("esl.dead_after_secs", esl.dead_after_secs);
    c.positive("esl.backoff_min_ms", esl.backoff_min_ms);
    c.positive("esl.backoff_max_ms", esl.backoff_max_ms);
    if esl.backoff_min_ms > esl.backoff_max_ms {
        c.check(
            "esl.backoff_max_ms",
            Err(format!(
                "must not be less than esl.backoff_min_ms ({})",
                esl.backoff_min_ms
            )),
        );
    }

    let mut seen = HashSet::new();
    for (i, node) in config.nodes.iter().enumerate() {
        let key = |field: &str| format!("nodes[{i}].{field}");
        c.check(key("id"), node_id(&node.id));
        if !seen.insert(node.id.as_str()) {
            c.check(key("id"), Err(format!("duplicate node id {:?}", node.id)));
        }
        c.check(key("esl_addr"), host_port(&node.esl_addr, false));
        if node.esl_password.expose_secret().is_empty() {
            c.check(key("esl_password"), Err("must not be empty".to_owned()));
        }
        c.check(key("wss_url"), wss_url(&node.wss_url));
        c.check(key("capacity"), nonzero(node.capacity.into()));
    }

    let mut key_ids = HashSet::new();
    let mut secrets = HashSet::new();
    for (i, key) in config.api.keys.iter().enumerate() {
        let name = |field: &str| format!("api.keys[{i}].{field}");
        c.check(name("id"), node_id(&key.id));
        if !key_ids.insert(key.id.as_str()) {
            c.check(
                name("id"),
                Err(format!("duplicate API key id {:?}", key.id)),
            );
        }
        let secret = key.key.expose_secret();
        if secret.chars().count() < super::MIN_API_KEY_LEN {
            c.check(
                name("key"),
                Err(format!(
                    "must be at least {} characters long",
                    super::MIN_API_KEY_LEN
                )),
            );
        } else if !secret.chars().all(|ch| ch.is_ascii_graphic()) {
            c.check(
                name("key"),
                Err("must be printable ASCII without spaces".to_owned()),
            );
        }
        if !secrets.insert(secret) {
            c.check(
                name("key"),
                Err("the same key is configured twice".to_owned()),
            );
        }
        if key.scopes.is_empty() {
            c.check(
                name("scopes"),
                Err("must name at least one scope".to_owned()),
            );
        }
    }

    let sip = &config.sip;
    if !crate::ids::valid_domain(&sip.domain) {
        c.check(
            "sip.domain",
            Err(format!(
                "{:?} must be a host name or IPv4 address ([A-Za-z0-9.-], at most 253 characters)",
                sip.domain
            )),
        );
    }
    c.positive("sip.credential_ttl_secs", sip.credential_ttl_secs);
    if !crate::ids::valid_user_id(&sip.user_context) {
        c.check(
            "sip.user_context",
            Err(format!(
                "{:?} must match {}",
                sip.user_context,
                crate::ids::USER_ID_PATTERN
            )),
        );
    }

    if config.conferences.history_retention_days > MAX_RETENTION_DAYS {
        c.check(
            "conferences.history_retention_days",
            Err(format!(
                "must be at most {MAX_RETENTION_DAYS} (100 years); 0 keeps history forever"
            )),
        );
    }

    let fs = &config.freeswitch;
    if fs.username.is_empty() || fs.username.contains(':') {
        c.check(
            "freeswitch.username",
            Err("must be non-empty and must not contain ':'".to_owned()),
        );
    }
    if fs
        .password
        .as_ref()
        .is_some_and(|p| p.expose_secret().is_empty())
    {
        c.check(
            "freeswitch.password",
            Err("must not be empty (leave it unset to refuse every request)".to_owned()),
        );
    }
    if let Some(previous) = &fs.previous_password {
        let problem = if previous.expose_secret().is_empty() {
            Some("must not be empty (leave it unset when no rotation is under way)")
        } else if fs.password.is_none() {
            Some("needs freeswitch.password (the new one) as well")
        } else if fs
            .password
            .as_ref()
            .is_some_and(|p| p.expose_secret() == previous.expose_secret())
        {
            Some("is the same as freeswitch.password")
        } else {
            None
        };
        if let Some(problem) = problem {
            c.check("freeswitch.previous_password", Err(problem.to_owned()));
        }
    }
    for (i, cidr) in fs.allow_from.iter().enumerate() {
        if cidr.parse::<ipnet::IpNet>().is_err() {
            c.check(
                format!("freeswitch.allow_from[{i}]"),
                Err(format!(
                    "{cidr:?} is not a CIDR such as 10.0.0.0/24 or ::1/128"
                )),
            );
        }
    }
    c.positive("freeswitch.max_body_bytes", fs.max_body_bytes as u64);

    validate_webhooks(&mut c, &config.webhooks);
    validate_events(&mut c, &config.events);

    if c.0.is_empty() {
        Ok(())
    } else {
        Err(Invalid { violations: c.0 })
    }
}

fn validate_events(c: &mut Collector, events: &super::EventsConfig) {
    c.check(
        "events.token_ttl_secs",
        if (60..=events.token_max_ttl_secs).contains(&events.token_ttl_secs) {
            Ok(())
        } else {
            Err("must be at least 60 and at most events.token_max_ttl_secs".to_owned())
        },
    );
    c.check(
        "events.sip_credentials_ttl_secs",
        if events.sip_credentials_ttl_secs >= 60 {
            Ok(())
        } else {
            Err("must be at least 60 (the browser needs time to answer)".to_owned())
        },
    );
    c.check(
        "events.heartbeat_secs",
        if (5..=300).contains(&events.heartbeat_secs) {
            Ok(())
        } else {
            Err("must be between 5 and 300".to_owned())
        },
    );
    c.positive("events.replay_events", u64::from(events.replay_events));
    c.positive("events.replay_secs", events.replay_secs);
    c.positive(
        "events.max_connections_per_user",
        u64::from(events.max_connections_per_user),
    );
    c.check(
        "events.max_message_chars",
        if (1..=4000).contains(&events.max_message_chars) {
            Ok(())
        } else {
            Err("must be between 1 and 4000 (a frame is at most 16 KiB)".to_owned())
        },
    );
}

fn validate_webhooks(c: &mut Collector, webhooks: &super::WebhooksConfig) {
    let mut ids = HashSet::new();
    for (i, endpoint) in webhooks.endpoints.iter().enumerate() {
        let key = |field: &str| format!("webhooks.endpoints[{i}].{field}");
        c.check(key("id"), node_id(&endpoint.id));
        if !ids.insert(endpoint.id.as_str()) {
            c.check(
                key("id"),
                Err(format!("duplicate webhook endpoint id {:?}", endpoint.id)),
            );
        }
        c.check(key("url"), webhook_url(endpoint.url.expose_secret()));
        if endpoint.secret.expose_secret().chars().count() < super::MIN_WEBHOOK_SECRET_LEN {
            c.check(
                key("secret"),
                Err(format!(
                    "must be at least {} characters long",
                    super::MIN_WEBHOOK_SECRET_LEN
                )),
            );
        }
        match &endpoint.events {
            Some(events) if events.is_empty() => c.check(
                key("events"),
                Err("must name at least one event type (leave it out for all of them)".to_owned()),
            ),
            Some(events) if events.contains(&super::WebhookEventType::MemberTalking) => c.check(
                key("events"),
                Err("member.talking is opt-in: set talking = true instead".to_owned()),
            ),
            _ => {}
        }
    }
    c.positive("webhooks.timeout_ms", webhooks.timeout_ms);
    c.positive("webhooks.retry_min_ms", webhooks.retry_min_ms);
    c.positive("webhooks.retry_max_ms", webhooks.retry_max_ms);
    if webhooks.retry_min_ms > webhooks.retry_max_ms {
        c.check(
            "webhooks.retry_max_ms",
            Err(format!(
                "must not be less than webhooks.retry_min_ms ({})",
                webhooks.retry_min_ms
            )),
        );
    }
    c.positive("webhooks.max_attempts", webhooks.max_attempts.into());
    c.positive("webhooks.max_age_secs", webhooks.max_age_secs);
}

/// An absolute `http://` or `https://` URL with a host and no fragment: what the webhook
/// sender can POST to. Messages show the URL with its password redacted.
fn webhook_url(url: &str) -> Result<(), String> {
    let shown = super::secret::redact_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{shown:?} must be an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    if parsed.fragment().is_some() {
        return Err(format!("{shown:?} must not have a #fragment"));
    }
    Ok(())
}

fn nonzero(value: u64) -> Result<(), String> {
    if value == 0 {
        Err("must be greater than 0".to_owned())
    } else {
        Ok(())
    }
}

/// Printable ASCII without spaces or braces, at most 64 characters (may be empty).
fn key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
    {
        Ok(())
    } else {
        Err("must be at most 64 printable ASCII characters without spaces or braces".to_owned())
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`: safe in logs, metric labels, Redis keys and URLs.
pub(crate) fn node_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    let valid = id.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{id:?} must match [a-z0-9][a-z0-9_-]{{0,62}} (lowercase letters, digits, '_' and '-', \
             at most 63 characters)"
        ))
    }
}

/// `host:port` or `[v6]:port`, where host is an IP or a DNS name.
pub(crate) fn host_port(addr: &str, allow_port_zero: bool) -> Result<(), String> {
    let port = if let Ok(sa) = addr.parse::<SocketAddr>() {
        sa.port()
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("{addr:?} is not host:port"));
        };
        if host.is_empty() {
            return Err(format!("{addr:?} has no host"));
        }
        if host.contains(':') || host.starts_with('[') {
            return Err(format!(
                "{addr:?} is not host:port (write IPv6 addresses as [::1]:port)"
            ));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("{addr:?} has an invalid host name"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{addr:?} has an invalid port (expected 0-65535)"))?
    };
    if port == 0 && !allow_port_zero {
        return Err(format!("{addr:?}: port must not be 0"));
    }
    Ok(())
}

fn database_url(url: &str) -> Result<(), String> {
    let ok = ["sqlite://", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
    if ok {
        Ok(())
    } else {
        Err(
            "must start with sqlite://, postgres:// or postgresql:// and name a database"
                .to_owned(),
        )
    }
}

fn redis_url(url: &str) -> Result<(), String> {
    let ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
    if ok {
        Ok(())
    } else {
        Err("must start with redis://, rediss://, redis+unix:// or unix://".to_owned())
    }
}

fn log_filter(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("{filter:?} is not a valid tracing filter: {e}"))
}

pub(crate) fn wss_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!("{url:?} must be a ws:// or wss:// URL with a host")),
    }
}

#[cfg(test)]
mod unit {
    use super::{host_port, node_id, webhook_url};

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://hooks.example.com/switchyard",
            "http://127.0.0.1:9000/hook?token=x",
            "https://user:pw@[::1]:8443/",
        ] {
            assert!(webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "hooks.example.com/x",
            "ftp://example.com/",
            "https://",
            "https://example.com/#frag",
            "wss://example.com/",
        ] {
            assert!(webhook_url(bad).is_err(), "{bad}");
        }
        let err = webhook_url("ftp://u:hunter2@example.com/").expect_err("scheme");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn node_ids() {
        for ok in ["a", "fs1", "eu-west_2", "0", &"a".repeat(63)] {
            assert!(node_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "fs.1", "fs 1", "é", &"a".repeat(64)] {
            assert!(node_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:8021",
            "[::1]:8021",
            "fs1.example.com:8021",
            "localhost:1",
        ] {
            assert!(host_port(ok, false).is_ok(), "{ok}");
        }
        assert!(host_port("127.0.0.1:0", true).is_ok());
        for bad in [
            "127.0.0.1",
            ":8021",
            "::1:8021",
            "host:99999",
            "host:port",
            "127.0.0.1:0",
            "ho st:1",
            "[::1:1",
        ] {
            assert!(host_port(bad, false).is_err(), "{bad}");
        }
    }
}
