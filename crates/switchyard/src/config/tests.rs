//! Config loading tests. `figment::Jail` gives each test its own working directory and
//! restores the environment variables it sets, and serializes the tests that use it.

// Jail's closures must return `figment::Result`, whose error is large; not our choice.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;
use secrecy::ExposeSecret;

use super::{ConferencesConfig, Config, ConfigError, LogFormat, ProblemKind, Problems};

const NODE: &str = r#"
[[nodes]]
id = "fs1"
esl_password = "s3cret-esl"
wss_url = "wss://fs1.example.com:7443"
"#;

fn load_err() -> ConfigError {
    match Config::load(None) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn problems(err: &ConfigError) -> &Problems {
    match err {
        ConfigError::Problems(problems) => problems,
        other => panic!("expected a list of problems, got {other}"),
    }
}

/// The keys of the failed checks (validation), not counting unknown keys and type errors.
fn violation_keys(err: &ConfigError) -> Vec<String> {
    problems(err)
        .keys_of(|k| matches!(k, ProblemKind::Invalid(_)))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn is_type_error(err: &ConfigError) -> bool {
    problems(err)
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::Type(_)))
}

#[test]
fn defaults_without_file_or_env() {
    Jail::expect_with(|_| {
        let config = Config::load(None).expect("defaults load");
        assert_eq!(config.http.listen, "127.0.0.1:8080");
        assert_eq!(config.http.shutdown_grace_secs, 10);
        assert_eq!(
            config.database.url.expose_secret(),
            "sqlite://switchyard.db?mode=rwc"
        );
        assert_eq!(config.database.max_connections, 5);
        assert!(config.redis.url.is_none());
        assert_eq!(config.log.format, LogFormat::Pretty);
        assert_eq!(config.log.filter, "info");
        assert_eq!(config.esl.connect_timeout_ms, 2000);
        assert_eq!(config.esl.dead_after_secs, 45);
        assert_eq!(config.esl.backoff_min_ms, 250);
        assert_eq!(config.esl.backoff_max_ms, 10_000);
        assert!(config.nodes.is_empty());
        Ok(())
    });
}

#[test]
fn file_values_override_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            &format!(
                r#"
                [http]
                listen = "0.0.0.0:9000"
                [database]
                url = "postgres://sy:pw@db:5432/switchyard"
                [log]
                format = "json"
                [esl]
                dead_after_secs = 20
                {NODE}
                esl_addr = "10.0.0.5:8021"
                capacity = 40
                labels = {{ region = "eu" }}
                "#
            ),
        )?;
        let config = Config::load(None).expect("file loads");
        assert_eq!(config.http.listen, "0.0.0.0:9000");
        assert_eq!(
            config.http.shutdown_grace_secs, 10,
            "untouched key keeps default"
        );
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.esl.dead_after_secs, 20);
        let node = &config.nodes[0];
        assert_eq!(node.id, "fs1");
        assert_eq!(node.esl_addr, "10.0.0.5:8021");
        assert_eq!(node.esl_password.expose_secret(), "s3cret-esl");
        assert_eq!(node.capacity, 40);
        assert_eq!(node.labels.get("region").map(String::as_str), Some("eu"));
        Ok(())
    });
}

#[test]
fn node_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", NODE)?;
        let config = Config::load(None).expect("loads");
        assert_eq!(config.nodes[0].esl_addr, "127.0.0.1:8021");
        assert_eq!(config.nodes[0].capacity, 100);
        assert!(config.nodes[0].labels.is_empty());
        Ok(())
    });
}

#[test]
fn env_overrides_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            "[http]\nlisten = \"0.0.0.0:9000\"\n[log]\nfilter = \"debug\"\n",
        )?;
        jail.set_env("SWITCHYARD_HTTP__LISTEN", "127.0.0.1:0");
        jail.set_env("SWITCHYARD_LOG__FORMAT", "json");
        jail.set_env("SWITCHYARD_ESL__BACKOFF_MAX_MS", "5000");
        jail.set_env("SWITCHYARD_REDIS__URL", "redis://127.0.0.1:6379");
        let config = Config::load(None).expect("loads");
        assert_eq!(config.http.listen, "127.0.0.1:0");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.filter, "debug", "file value kept");
        assert_eq!(config.esl.backoff_max_ms, 5000);
        assert_eq!(
            config.redis.url.as_ref().map(|u| u.expose_secret()),
            Some("redis://127.0.0.1:6379")
        );
        Ok(())
    });
}

#[test]
fn config_path_from_flag_and_env() {
    Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "[http]\nlisten = \"127.0.0.1:1\"\n")?;
        jail.create_file("a.toml", "[http]\nlisten = \"127.0.0.1:2\"\n")?;
        jail.create_file("b.toml", "[http]\nlisten = \"127.0.0.1:3\"\n")?;

        assert_eq!(Config::load(None).expect("cwd").http.listen, "127.0.0.1:1");
        jail.set_env("SWITCHYARD_CONFIG", "a.toml");
        assert_eq!(Config::load(None).expect("env").http.listen, "127.0.0.1:2");
        let flag = Config::load(Some(Path::new("b.toml"))).expect("flag");
        assert_eq!(
            flag.http.listen, "127.0.0.1:3",
            "--config wins over the env var"
        );
        Ok(())
    });
}

#[test]
fn named_file_must_exist() {
    Jail::expect_with(|jail| {
        let err = Config::load(Some(Path::new("missing.toml"))).expect_err("must fail");
        assert!(matches!(err, ConfigError::FileNotFound { .. }), "{err}");
        assert!(err.to_string().contains("missing.toml"), "{err}");

        jail.set_env("SWITCHYARD_CONFIG", "gone.toml");
        let err = load_err();
        assert!(err.to_string().contains("gone.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors() {
    Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "[http]\nlisten_addr = \"127.0.0.1:1\"\n")?;
        let err = load_err();
        assert_eq!(
            problems(&err).keys_of(|k| matches!(k, ProblemKind::UnknownKey { .. })),
            ["http.listen_addr"],
            "{err}"
        );

        jail.create_file("switchyard.toml", "[metrics]\nenabled = true\n")?;
        assert!(load_err().to_string().contains("metrics"));

        jail.create_file("switchyard.toml", &format!("{NODE}\npassword = \"x\"\n"))?;
        assert!(load_err().to_string().contains("password"));

        jail.create_file("switchyard.toml", "")?;
        jail.set_env("SWITCHYARD_HTTP__LISTN", "127.0.0.1:1");
        assert!(load_err().to_string().contains("listn"));
        Ok(())
    });
}

#[test]
fn type_errors_name_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            "[http]\nshutdown_grace_secs = \"soon\"\n",
        )?;
        let err = load_err().to_string();
        assert!(err.contains("shutdown_grace_secs"), "{err}");

        jail.create_file("switchyard.toml", "[log]\nformat = \"xml\"\n")?;
        let err = load_err().to_string();
        assert!(err.contains("format") && err.contains("xml"), "{err}");
        Ok(())
    });
}

#[test]
fn node_password_is_required() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            "[[nodes]]\nid = \"fs1\"\nwss_url = \"wss://fs1:7443\"\n",
        )?;
        let err = load_err().to_string();
        assert!(err.contains("esl_password"), "{err}");
        Ok(())
    });
}

#[test]
fn validation_errors_name_every_key() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [http]
            listen = "localhost"
            shutdown_grace_secs = 0
            [database]
            url = "mysql://db/x"
            [log]
            filter = "info,=="
            [esl]
            backoff_min_ms = 500
            backoff_max_ms = 100
            [redis]
            url = "http://cache"

            [[nodes]]
            id = "FS1"
            esl_addr = "fs1"
            esl_password = ""
            wss_url = "https://fs1"
            capacity = 0

            [[nodes]]
            id = "fs2"
            esl_password = "x"
            wss_url = "wss://fs2"
            [[nodes]]
            id = "fs2"
            esl_addr = "10.0.0.1:0"
            esl_password = "x"
            wss_url = "wss://fs2b"
            "#,
        )?;
        let err = load_err();
        let keys = violation_keys(&err);
        for expected in [
            "http.listen",
            "http.shutdown_grace_secs",
            "database.url",
            "log.filter",
            "esl.backoff_max_ms",
            "redis.url",
            "nodes[0].id",
            "nodes[0].esl_addr",
            "nodes[0].esl_password",
            "nodes[0].wss_url",
            "nodes[0].capacity",
            "nodes[2].id",
            "nodes[2].esl_addr",
        ] {
            assert!(
                keys.iter().any(|k| k == expected),
                "{expected} missing from {keys:?}"
            );
        }
        assert_eq!(keys.len(), 13, "{keys:?}");
        let text = err.to_string();
        assert!(text.contains("duplicate node id \"fs2\""), "{text}");
        assert!(!text.contains("mysql://"), "URLs may hold secrets: {text}");
        Ok(())
    });
}

#[test]
fn secrets_stay_out_of_debug_and_check_config_output() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            &format!(
                "[database]\nurl = \"postgres://sy:db-pass@db/sy\"\n[redis]\nurl = \"redis://:redis-pass@cache\"\n{NODE}"
            ),
        )?;
        let config = Config::load(None).expect("loads");
        let debug = format!("{config:?}");
        let toml = config.to_redacted_toml().expect("serializes");
        for output in [&debug, &toml] {
            for secret in ["s3cret-esl", "db-pass", "redis-pass"] {
                assert!(!output.contains(secret), "{secret} leaked:\n{output}");
            }
        }
        assert!(toml.contains("postgres://sy:[redacted]@db/sy"), "{toml}");
        assert!(toml.contains("esl_password = \"[redacted]\""), "{toml}");
        Ok(())
    });
}

#[test]
fn example_config_is_valid_and_complete() {
    Jail::expect_with(|jail| {
        let example = include_str!("../../switchyard.example.toml");
        jail.create_file("switchyard.toml", example)?;
        let config = Config::load(None).expect("the shipped example loads");
        assert_eq!(config.nodes.len(), 1);
        // Every key the service knows appears in the example (commented out or not).
        let printed = config.to_redacted_toml().expect("serializes");
        let printed: toml::Table = toml::from_str(&printed).expect("TOML");
        for (section, value) in &printed {
            let keys: Vec<&String> = match value {
                toml::Value::Table(table) => table.keys().collect(),
                toml::Value::Array(nodes) => nodes
                    .iter()
                    .filter_map(toml::Value::as_table)
                    .flat_map(|t| t.keys())
                    .collect(),
                _ => Vec::new(),
            };
            for key in keys {
                assert!(
                    example.contains(&format!("{key} = ")),
                    "{section}.{key} is not documented in switchyard.example.toml"
                );
            }
        }
        assert!(
            example.contains("# url = \"redis://"),
            "redis.url documented"
        );
        Ok(())
    });
}

#[test]
fn api_keys_and_node_password_load_validate_and_stay_secret() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [api]
            keys = [
              { id = "backend", key = "k-0123456789abcdefghijklmnop", scopes = ["users:read", "users:write", "credentials:issue"] },
            ]
            [sip]
            domain = "sip.example.com"
            credential_ttl_secs = 600
            [freeswitch]
            password = "node-secret-pw"
            allow_from = ["10.0.0.0/24"]
            "#,
        )?;
        let config = Config::load(None).expect("loads");
        assert_eq!(config.api.keys[0].id, "backend");
        assert_eq!(config.api.keys[0].scopes.len(), 3);
        assert_eq!(config.sip.domain, "sip.example.com");
        assert_eq!(config.sip.credential_ttl_secs, 600);
        assert_eq!(config.freeswitch.username, "freeswitch", "default");
        let toml = config.to_redacted_toml().expect("serializes");
        assert!(!toml.contains("k-0123456789"), "{toml}");
        assert!(!toml.contains("node-secret-pw"), "{toml}");
        assert!(!format!("{config:?}").contains("node-secret-pw"));
        assert!(!format!("{config:?}").contains("k-0123456789"));
        Ok(())
    });
}

#[test]
fn bad_access_settings_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [api]
            keys = [
              { id = "a", key = "short", scopes = ["users:read"] },
              { id = "a", key = "same-key-0123456789abcdefgh", scopes = [] },
              { id = "B", key = "same-key-0123456789abcdefgh", scopes = ["users:write"] },
            ]
            [sip]
            domain = "$${domain}"
            credential_ttl_secs = 0
            [freeswitch]
            username = "a:b"
            password = ""
            allow_from = ["10.0.0.0/33", "nope"]
            max_body_bytes = 0
            "#,
        )?;
        let keys = violation_keys(&load_err());
        for key in [
            "api.keys[0].key",
            "api.keys[1].id",
            "api.keys[1].scopes",
            "api.keys[2].id",
            "api.keys[2].key",
            "sip.domain",
            "sip.credential_ttl_secs",
            "freeswitch.username",
            "freeswitch.password",
            "freeswitch.allow_from[0]",
            "freeswitch.allow_from[1]",
            "freeswitch.max_body_bytes",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        Ok(())
    });
}

#[test]
fn unknown_scopes_are_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [api]
            keys = [{ id = "a", key = "k-0123456789abcdefghijklmnop", scopes = ["admin"] }]
            "#,
        )?;
        assert!(is_type_error(&load_err()));
        Ok(())
    });
}

/// `just demo` must keep starting: its config is loaded and validated like any other.
#[test]
fn demo_config_is_valid() {
    Jail::expect_with(|jail| {
        let demo = include_str!("../../../../examples/demo/switchyard.toml");
        jail.create_file("switchyard.toml", demo)?;
        let config = Config::load(None).expect("the demo config loads");
        assert_eq!(config.nodes.len(), 2);
        assert!(
            config.freeswitch.password.is_some(),
            "fsim sends credentials"
        );
        Ok(())
    });
}

#[test]
fn webhooks_load_with_defaults_and_stay_secret() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [webhooks]
            endpoints = [
              { id = "backend", url = "https://hooks:url-pass@backend.example.com/hook", secret = "whsec-0123456789abcdef" },
              { id = "audit", url = "http://10.0.0.9:9000/", secret = "whsec-fedcba9876543210", events = ["member.left", "node.down"], talking = true },
            ]
            retry_max_ms = 5000
            "#,
        )?;
        let config = Config::load(None).expect("loads");
        let webhooks = &config.webhooks;
        assert_eq!(webhooks.endpoints.len(), 2);
        assert_eq!(webhooks.timeout_ms, 10_000, "default");
        assert_eq!(webhooks.retry_min_ms, 1_000, "default");
        assert_eq!(webhooks.retry_max_ms, 5_000);
        assert_eq!(webhooks.max_attempts, 200, "default");
        assert_eq!(webhooks.max_age_secs, 86_400, "default");
        assert_eq!(webhooks.talking_debounce_ms, 1_000, "default");

        use super::WebhookEventType as T;
        let (backend, audit) = (&webhooks.endpoints[0], &webhooks.endpoints[1]);
        for kind in T::ALL {
            assert_eq!(backend.wants(kind), kind != T::MemberTalking, "{kind:?}");
        }
        assert!(audit.wants(T::MemberLeft) && audit.wants(T::NodeDown));
        assert!(audit.wants(T::MemberTalking), "talking = true");
        assert!(!audit.wants(T::MemberJoined));

        let toml = config.to_redacted_toml().expect("serializes");
        let debug = format!("{config:?}");
        for output in [&toml, &debug] {
            for secret in [
                "whsec-0123456789abcdef",
                "whsec-fedcba9876543210",
                "url-pass",
            ] {
                assert!(!output.contains(secret), "{secret} leaked:\n{output}");
            }
        }
        assert!(
            toml.contains("https://hooks:[redacted]@backend.example.com/hook"),
            "{toml}"
        );
        // What check-config prints loads again (with the secrets redacted).
        let printed: toml::Table = toml::from_str(&toml).expect("TOML");
        assert!(printed["webhooks"]["endpoints"].is_array(), "{toml}");
        Ok(())
    });
}

#[test]
fn bad_webhook_settings_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [webhooks]
            endpoints = [
              { id = "a", url = "ftp://example.com/", secret = "short" },
              { id = "a", url = "not a url", secret = "whsec-0123456789abcdef", events = [] },
              { id = "B", url = "https://example.com/", secret = "whsec-0123456789abcdef", events = ["member.talking"] },
            ]
            timeout_ms = 0
            retry_min_ms = 5000
            retry_max_ms = 1000
            max_attempts = 0
            max_age_secs = 0
            "#,
        )?;
        let keys = violation_keys(&load_err());
        for key in [
            "webhooks.endpoints[0].url",
            "webhooks.endpoints[0].secret",
            "webhooks.endpoints[1].id",
            "webhooks.endpoints[1].url",
            "webhooks.endpoints[1].events",
            "webhooks.endpoints[2].id",
            "webhooks.endpoints[2].events",
            "webhooks.timeout_ms",
            "webhooks.retry_max_ms",
            "webhooks.max_attempts",
            "webhooks.max_age_secs",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        assert!(
            !keys.iter().any(|k| k == "webhooks.endpoints[0].id"),
            "{keys:?}"
        );
        Ok(())
    });
}

#[test]
fn unknown_webhook_event_types_are_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [webhooks]
            endpoints = [{ id = "a", url = "https://example.com/", secret = "whsec-0123456789abcdef", events = ["member.joined", "member.exploded"] }]
            "#,
        )?;
        let err = load_err();
        assert!(is_type_error(&err), "{err}");
        assert!(err.to_string().contains("member.exploded"), "{err}");
        Ok(())
    });
}

#[test]
fn conference_settings_are_checked() {
    let mut config = Config::default();
    config.conferences.audio_profile = "bad profile".to_owned();
    config.conferences.recordings_dir = "relative/dir".to_owned();
    config.conferences.history_retention_days = u32::MAX;
    let err = config.validate().expect_err("invalid");
    let keys: Vec<&str> = err.violations.iter().map(|v| v.key.as_str()).collect();
    assert!(keys.contains(&"conferences.audio_profile"), "{keys:?}");
    assert!(keys.contains(&"conferences.recordings_dir"), "{keys:?}");
    assert!(
        keys.contains(&"conferences.history_retention_days"),
        "{keys:?}"
    );
    let defaults = ConferencesConfig::default();
    assert_eq!(defaults.node_profile("video"), "video");
    assert_eq!(defaults.node_profile("default"), "default");
}

#[test]
fn previous_freeswitch_password_needs_a_distinct_current_one() {
    use secrecy::SecretString;
    let secret = |s: &str| Some(SecretString::from(s));
    for (password, previous, ok) in [
        (secret("new"), secret("old"), true),
        (None, secret("old"), false),
        (secret("same"), secret("same"), false),
        (secret("new"), secret(""), false),
        (secret("new"), None, true),
    ] {
        let mut config = Config::default();
        config.freeswitch.password = password;
        config.freeswitch.previous_password = previous;
        let keys: Vec<String> = config
            .validate()
            .err()
            .map(|e| e.violations.into_iter().map(|v| v.key).collect())
            .unwrap_or_default();
        assert_eq!(
            !keys.contains(&"freeswitch.previous_password".to_owned()),
            ok,
            "{keys:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [http]
            listn = "127.0.0.1:1"
            shutdown_grace_secs = "soon"
            request_timeout_secs = 0
            [log]
            format = "xml"
            [metrics]
            enabled = true

            [[nodes]]
            id = 7
            esl_password = "x"
            wss_url = "wss://fs1"

            [[nodes]]
            id = "fs2"
            esl_password = "x"
            wss_url = "wss://fs2"
            esl_adr = "10.0.0.1:8021"
            capacity = 0
            "#,
        )?;
        jail.set_env("SWITCHYARD_ESL__DEAD_AFTER", "5");
        let err = load_err();
        let all = problems(&err);
        let unknown = all.keys_of(|k| matches!(k, ProblemKind::UnknownKey { .. }));
        for key in [
            "http.listn",
            "metrics",
            "nodes[1].esl_adr",
            "esl.dead_after",
        ] {
            assert!(unknown.contains(&key), "{key} missing from {unknown:?}");
        }
        let types = all.keys_of(|k| matches!(k, ProblemKind::Type(_)));
        for key in ["http.shutdown_grace_secs", "log.format", "nodes[0].id"] {
            assert!(types.contains(&key), "{key} missing from {types:?}");
        }
        // nodes[0] was dropped for its bad id: the second node keeps its index.
        let invalid = all.keys_of(|k| matches!(k, ProblemKind::Invalid(_)));
        assert_eq!(
            invalid,
            ["http.request_timeout_secs", "nodes[1].capacity"],
            "{err}"
        );
        assert!(
            all.keys_of(|k| *k == ProblemKind::Missing).is_empty(),
            "a removed bad id is not also missing: {err}"
        );
        assert_eq!(all.problems.len(), 9, "{err}");

        let text = err.to_string();
        assert!(text.contains("did you mean `listen`?"), "{text}");
        assert!(text.contains("did you mean `esl_addr`?"), "{text}");
        assert!(text.contains("did you mean `dead_after_secs`?"), "{text}");
        assert!(
            text.contains("environment variable SWITCHYARD_ESL__DEAD_AFTER"),
            "{text}"
        );
        assert!(text.contains("switchyard.toml"), "{text}");
        assert!(text.ends_with("9 problems found"), "{text}");
        for line in text.lines().skip(1).take(9) {
            assert!(line.starts_with("  - "), "one problem per line: {line}");
        }
        Ok(())
    });
}

#[test]
fn missing_required_keys_are_reported_with_the_rest() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            r#"
            [[nodes]]
            id = "fs1"
            wss_url = "wss://fs1"
            [[nodes]]
            id = "FS2"
            esl_password = "x"
            wss_url = "wss://fs2"
            "#,
        )?;
        let err = load_err();
        let all = problems(&err);
        assert_eq!(
            all.keys_of(|k| *k == ProblemKind::Missing),
            ["nodes[0].esl_password"]
        );
        assert_eq!(
            all.keys_of(|k| matches!(k, ProblemKind::Invalid(_))),
            ["nodes[1].id"],
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn validation_problems_name_their_source() {
    Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "[http]\nlisten = \"nowhere\"\n")?;
        jail.set_env("SWITCHYARD_DATABASE__URL", "mysql://db/x");
        let err = load_err();
        let all = problems(&err);
        let source = |key: &str| {
            all.problems
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.source.clone())
                .unwrap_or_else(|| panic!("{key} not reported: {err}"))
        };
        assert_eq!(source("http.listen"), "switchyard.toml");
        assert_eq!(
            source("database.url"),
            "environment variable SWITCHYARD_DATABASE__URL"
        );
        Ok(())
    });
}

#[test]
fn syntax_errors_still_stop_at_once() {
    Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "[http\nlisten = 1\n")?;
        let err = load_err();
        assert!(matches!(err, ConfigError::Load(_)), "{err}");
        assert!(err.to_string().contains("switchyard.toml"), "{err}");
        Ok(())
    });
}
