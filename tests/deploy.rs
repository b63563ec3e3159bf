//! The `deploy/` deliverable, checked without a Docker daemon, a FreeSWITCH or a registry:
//!
//! - `docker-compose.yml` as YAML: every service has an image or a build, a health check (or is
//!   a one-shot job someone waits for), `depends_on` conditions that can be met, volumes and
//!   networks that exist, mounted files that exist in the repository, fixed addresses inside
//!   the lab subnet; every `${VAR}` it uses is in `.env.example`, which holds no secret;
//! - the Switchyard replicas' environment (interpolated with `.env.example` and dummy secrets)
//!   plus their mounted `lab/switchyard.toml`, loaded by switchyard's own loader
//!   (`Config::figment` + `Config::from_figment`, what the binary runs): a renamed or
//!   misspelt key fails here, not at `docker compose up`;
//! - `lab/fs-conf.sh` run for real into a temporary directory with the compose file's
//!   `FSVAR_*` values: the FreeSWITCH `vars.xml` it writes agrees with the replicas' config
//!   (domain, node id, passwords, ESL port and ACL, allow-list, mod_xml_curl URL, RTP range);
//! - the nginx configs agree with the compose addresses and keep `/metrics`, `/readyz` and
//!   `/freeswitch/*` private; `nginx -t` when nginx is installed (the front config, and the
//!   HTTP half of `rtmp.conf`, since stock nginx has no RTMP module);
//! - `lab/make-certs.sh` run into a temporary directory when openssl is installed;
//! - the systemd unit as INI with its hardening keys, its stop timeout above the shutdown grace
//!   of `systemd/switchyard.toml` (loaded with `switchyard.env.example` by the same loader), and
//!   `systemd-analyze verify` when available;
//! - `bash -n` / `sh -n` on every shell script; the Dockerfile's stages, non-root `USER`,
//!   health check and entry point; `docker compose config -q` when the compose plugin exists.
//!
//! Tools that are missing are skipped with a printed note; nothing is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use figment::Jail;
use secrecy::ExposeSecret as _;
use serde_norway::Value;
use switchyard::Config;

// ---------------------------------------------------------------------------------------------
// Files and small parsers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn have(tool: &str, version_arg: &str) -> bool {
    Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn note(what: &str) {
    eprintln!("note: {what}");
}

/// `KEY=VALUE` lines (dotenv / systemd EnvironmentFile): comments and blank lines skipped, a
/// value in single quotes taken literally.
fn env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line:?}"));
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        vars.insert(key.trim().to_owned(), value.to_owned());
    }
    vars
}

/// Is this `.env` name a secret (whose shipped value must be empty)?
fn is_secret(name: &str) -> bool {
    name.contains("PASSWORD") || name.ends_with("_KEY") || name.contains("SECRET")
}

/// `.env.example` as the tests use it: shipped values, empty secrets replaced by distinct
/// dummy values (letters and digits, long enough for an API key), and a documentation address
/// for the host's LAN address.
fn lab_env() -> BTreeMap<String, String> {
    let mut vars = env_file(&read(&deploy_dir().join(".env.example")));
    for (name, value) in vars.iter_mut() {
        if value.is_empty() && is_secret(name) {
            *value = format!(
                "{}0123456789abcdef01234567",
                name.to_ascii_lowercase().replace('_', "")
            );
        }
    }
    vars.insert("LAB_PUBLIC_IP".to_owned(), "192.0.2.10".to_owned());
    vars
}

/// Compose's interpolation: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
/// `${NAME:?error}`, `${NAME?error}`. An unset variable without a default is an error here
/// (compose would warn and use ""), so a typo cannot hide. Names used go into `used`.
fn interpolate(
    s: &str,
    vars: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let expr = &body[..end];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            used.insert(name.to_owned());
            let value = vars.get(name);
            let set_nonempty = value.filter(|v| !v.is_empty());
            let resolved = if let Some(default) = op.strip_prefix(":-") {
                set_nonempty.cloned().unwrap_or_else(|| default.to_owned())
            } else if let Some(default) = op.strip_prefix('-') {
                value.cloned().unwrap_or_else(|| default.to_owned())
            } else if let Some(message) = op.strip_prefix(":?") {
                set_nonempty
                    .cloned()
                    .ok_or_else(|| format!("{name}: {message}"))?
            } else if let Some(message) = op.strip_prefix('?') {
                value.cloned().ok_or_else(|| format!("{name}: {message}"))?
            } else if op.is_empty() {
                value.cloned().ok_or_else(|| format!("{name} is not set"))?
            } else {
                return Err(format!("unsupported interpolation ${{{expr}}}"));
            };
            out.push_str(&resolved);
            rest = &body[end + 1..];
        } else {
            let name_len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if name_len == 0 {
                out.push('$');
                rest = tail;
                continue;
            }
            let name = &tail[..name_len];
            used.insert(name.to_owned());
            out.push_str(vars.get(name).ok_or_else(|| format!("{name} is not set"))?);
            rest = &tail[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_value(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
) {
    match value {
        Value::String(s) => {
            *s = interpolate(s, vars, used).unwrap_or_else(|e| panic!("compose: {e}"));
        }
        Value::Sequence(items) => {
            for item in items {
                interpolate_value(item, vars, used);
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                interpolate_value(item, vars, used);
            }
        }
        Value::Tagged(tagged) => interpolate_value(&mut tagged.value, vars, used),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The compose file, merge keys applied, interpolated with [`lab_env`]; and the variable names
/// it uses.
fn compose() -> (Value, BTreeSet<String>) {
    let text = read(&deploy_dir().join("docker-compose.yml"));
    let mut doc: Value = serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("YAML merge keys");
    let mut used = BTreeSet::new();
    interpolate_value(&mut doc, &lab_env(), &mut used);
    (doc, used)
}

fn services(doc: &Value) -> BTreeMap<String, Value> {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_owned(), v.clone()))
        .collect()
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A service's `environment`, mapping or `KEY=VALUE` list form.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').expect("KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment: {other:?}"),
    }
}

/// A service's volumes as (type, source, target): "bind", "volume" or "tmpfs".
fn volumes(service: &Value) -> Vec<(String, String, String)> {
    let Some(list) = service.get("volumes").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v {
            Value::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                assert!(parts.len() >= 2, "volume {short:?} has no target");
                let source = parts[0];
                let kind = if source.starts_with('.') || source.starts_with('/') {
                    "bind"
                } else {
                    "volume"
                };
                (kind.to_owned(), source.to_owned(), parts[1].to_owned())
            }
            Value::Mapping(_) => (
                v.get("type").map(scalar).expect("volume type"),
                v.get("source").map(scalar).unwrap_or_default(),
                v.get("target").map(scalar).expect("volume target"),
            ),
            other => panic!("volume {other:?}"),
        })
        .collect()
}

/// The host file behind a container path of a service's bind mounts.
fn host_path_of(service: &Value, container_path: &str) -> PathBuf {
    volumes(service)
        .into_iter()
        .find(|(kind, _, target)| kind == "bind" && target == container_path)
        .map(|(_, source, _)| deploy_dir().join(source))
        .unwrap_or_else(|| panic!("nothing is mounted at {container_path}"))
}

/// The fixed lab address of a service (`networks.<net>.ipv4_address`).
fn ipv4_of(service: &Value) -> Option<Ipv4Addr> {
    service
        .get("networks")?
        .as_mapping()?
        .values()
        .find_map(|net| net.get("ipv4_address"))
        .map(|ip| scalar(ip).parse().expect("ipv4_address"))
}

fn aliases_of(service: &Value) -> BTreeSet<String> {
    service
        .get("networks")
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(|nets| nets.values())
        .filter_map(|net| net.get("aliases").and_then(Value::as_sequence))
        .flatten()
        .map(scalar)
        .collect()
}

/// `a.b.c.d/n`.
fn cidr(text: &str) -> (Ipv4Addr, u32) {
    let (ip, len) = text.split_once('/').unwrap_or((text, "32"));
    (
        ip.parse().unwrap_or_else(|_| panic!("CIDR {text:?}")),
        len.parse().unwrap_or_else(|_| panic!("CIDR {text:?}")),
    )
}

fn in_cidr(ip: Ipv4Addr, text: &str) -> bool {
    let (net, len) = cidr(text);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// `host:port` → port.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// One published port mapping; ranges are (first, last), single ports (p, p).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    host: (u16, u16),
    container: (u16, u16),
    proto: String,
}

/// A service's published ports.
fn published(service: &Value) -> Vec<Published> {
    let range = |s: &str| -> (u16, u16) {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        (a.parse().expect("port"), b.parse().expect("port"))
    };
    service
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|p| {
            let p = scalar(p);
            let (ports, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            let (host, container) = ports.rsplit_once(':').expect("host:container");
            let host = host.rsplit(':').next().expect("host port");
            Published {
                host: range(host),
                container: range(container),
                proto: proto.to_owned(),
            }
        })
        .collect()
}

/// Loads a config the way the binary does: `Config::figment(file)` (file, then `SWITCHYARD_*`
/// variables) and `Config::from_figment`, with exactly `vars` as the environment.
// figment::Jail's closures return figment's (large) error type.
#[allow(clippy::result_large_err)]
fn load_config(file: &Path, vars: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut result = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (key, value) in vars {
            jail.set_env(key, value);
        }
        result = Some(
            Config::from_figment(&Config::figment(Some(file)))
                .map_err(|e| switchyard::error_chain(&e)),
        );
        Ok(())
    });
    result.expect("jail ran")
}

/// The `set` lines of a FreeSWITCH vars.xml: name → value.
fn vars_xml(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let Some(at) = line.find("cmd=\"set\" data=\"") else {
            continue;
        };
        let data = &line[at + "cmd=\"set\" data=\"".len()..];
        let data = &data[..data.find('"').expect("closing quote")];
        let (name, value) = data.split_once('=').expect("name=value");
        vars.insert(name.to_owned(), value.to_owned());
    }
    vars
}

/// The Switchyard replicas: services built from deploy/Dockerfile.
fn replicas(doc: &Value) -> BTreeMap<String, Value> {
    services(doc)
        .into_iter()
        .filter(|(_, s)| {
            s.get("build")
                .and_then(|b| b.get("dockerfile"))
                .is_some_and(|d| scalar(d) == "deploy/Dockerfile")
        })
        .collect()
}

/// Each replica's config, loaded from its environment and mounted file.
fn replica_configs(doc: &Value) -> BTreeMap<String, Config> {
    replicas(doc)
        .into_iter()
        .map(|(name, service)| {
            let env = environment(&service);
            for key in env.keys() {
                assert!(
                    key.starts_with("SWITCHYARD_"),
                    "{name}: environment variable {key} is not a SWITCHYARD_ config variable"
                );
            }
            let file = host_path_of(&service, &env["SWITCHYARD_CONFIG"]);
            let config = load_config(&file, &env)
                .unwrap_or_else(|e| panic!("{name}: the config does not load: {e}"));
            (name, config)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

#[test]
fn compose_services_are_complete_and_consistent() {
    let (doc, used) = compose();
    let services = services(&doc);
    let named_volumes: BTreeSet<String> = doc
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().map(scalar).collect())
        .unwrap_or_default();
    let networks: BTreeSet<String> = doc
        .get("networks")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().map(scalar).collect())
        .unwrap_or_default();

    for expected in [
        "postgres",
        "redis",
        "switchyard-1",
        "switchyard-2",
        "fs1",
        "nginx",
        "rtmp",
    ] {
        assert!(services.contains_key(expected), "no service {expected}");
    }

    let mut waited_to_complete = BTreeSet::new();
    for (name, service) in &services {
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name}: neither image nor build"
        );
        if let Some(deps) = service.get("depends_on").and_then(Value::as_mapping) {
            for (dep, how) in deps {
                let dep = scalar(dep);
                let target = services
                    .get(&dep)
                    .unwrap_or_else(|| panic!("{name} depends on unknown service {dep}"));
                let condition = how.get("condition").map(scalar).unwrap_or_default();
                match condition.as_str() {
                    "service_healthy" => assert!(
                        target.get("healthcheck").is_some(),
                        "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                    ),
                    "service_completed_successfully" => {
                        waited_to_complete.insert(dep);
                    }
                    "service_started" => {}
                    other => panic!("{name}: depends_on {dep}: condition {other:?}"),
                }
            }
        }
        for (kind, source, target) in volumes(service) {
            match kind.as_str() {
                "bind" => assert!(
                    deploy_dir().join(&source).exists() || source.starts_with("./lab/certs"),
                    "{name}: {source} (mounted at {target}) does not exist in the repository"
                ),
                "volume" => assert!(
                    named_volumes.contains(&source),
                    "{name}: volume {source} is not declared under volumes:"
                ),
                "tmpfs" => {}
                other => panic!("{name}: volume type {other}"),
            }
        }
        if let Some(nets) = service.get("networks") {
            let names: Vec<String> = match nets {
                Value::Sequence(list) => list.iter().map(scalar).collect(),
                Value::Mapping(map) => map.keys().map(scalar).collect(),
                other => panic!("{name}: networks {other:?}"),
            };
            for net in names {
                assert!(networks.contains(&net), "{name}: unknown network {net}");
            }
        }
    }
    // Long-running services have a health check; one-shot jobs are waited for instead.
    for (name, service) in &services {
        if waited_to_complete.contains(name) {
            assert_eq!(
                service.get("restart").map(scalar).as_deref(),
                Some("no"),
                "{name} is a one-shot job: restart must be \"no\""
            );
        } else {
            let check = service
                .get("healthcheck")
                .unwrap_or_else(|| panic!("{name}: no healthcheck"));
            assert!(
                check.get("test").is_some(),
                "{name}: healthcheck without test"
            );
        }
    }

    // Fixed addresses: inside the subnet, outside Docker's dynamic range, unique.
    let ipam = doc
        .get("networks")
        .and_then(|n| n.get("lab"))
        .and_then(|n| n.get("ipam"))
        .and_then(|i| i.get("config"))
        .and_then(Value::as_sequence)
        .and_then(|c| c.first())
        .expect("networks.lab.ipam.config");
    let subnet = scalar(ipam.get("subnet").expect("subnet"));
    let ip_range = scalar(ipam.get("ip_range").expect("ip_range"));
    let mut seen = BTreeSet::new();
    for (name, service) in &services {
        if let Some(ip) = ipv4_of(service) {
            assert!(in_cidr(ip, &subnet), "{name}: {ip} outside {subnet}");
            assert!(
                !in_cidr(ip, &ip_range),
                "{name}: {ip} inside the dynamic range {ip_range}"
            );
            assert!(seen.insert(ip), "{name}: {ip} used twice");
        }
    }

    // Images of third-party software are variables, FreeSWITCH's and nginx-rtmp's above all.
    let text = read(&deploy_dir().join("docker-compose.yml"));
    for var in ["FREESWITCH_IMAGE", "RTMP_IMAGE"] {
        assert!(
            text.contains(&format!("${{{var}")),
            "the image is not ${{{var}}}"
        );
    }

    // Every variable the compose file uses is documented in .env.example, and the example
    // ships no secret.
    let example = env_file(&read(&deploy_dir().join(".env.example")));
    for var in &used {
        assert!(
            example.contains_key(var),
            "docker-compose.yml uses ${{{var}}}, which deploy/.env.example does not list"
        );
    }
    for (name, value) in &example {
        if is_secret(name) {
            assert!(
                value.is_empty(),
                ".env.example ships a value for the secret {name}"
            );
        }
    }
    let ignore = read(&deploy_dir().join(".gitignore"));
    assert!(
        ignore.lines().any(|l| l.trim() == "/.env"),
        "deploy/.env is not git-ignored"
    );
}

#[test]
fn replica_environment_is_real_switchyard_config() {
    let (doc, _) = compose();
    let configs = replica_configs(&doc);
    assert_eq!(
        configs.len(),
        2,
        "two replicas built from deploy/Dockerfile"
    );
    for (name, config) in &configs {
        assert!(
            config
                .database
                .url
                .expose_secret()
                .starts_with("postgres://"),
            "{name}: replicas share PostgreSQL"
        );
        assert!(config.redis.url.is_some(), "{name}: replicas share Redis");
        assert!(!config.nodes.is_empty(), "{name}: no [[nodes]]");
        assert!(!config.api.keys.is_empty(), "{name}: no API key");
        assert!(
            config.freeswitch.password.is_some(),
            "{name}: no mod_xml_curl password"
        );
        assert_eq!(port_of(&config.http.listen), 8080, "{name}: http.listen");
    }
    let mut all: Vec<&Config> = configs.values().collect();
    let first = all.remove(0);
    for other in all {
        assert_eq!(
            first.redis.key_prefix, other.redis.key_prefix,
            "replicas of one deployment share the Redis key prefix"
        );
        assert_eq!(
            first.database.url.expose_secret(),
            other.database.url.expose_secret()
        );
    }
    // Stop grace: compose's SIGKILL comes after the drain.
    for (name, service) in replicas(&doc) {
        let grace = scalar(service.get("stop_grace_period").expect("stop_grace_period"));
        let secs: u64 = grace
            .trim_end_matches('s')
            .parse()
            .expect("stop_grace_period in s");
        assert!(
            secs > configs[&name].http.shutdown_grace_secs,
            "{name}: stop_grace_period {secs}s must exceed http.shutdown_grace_secs"
        );
    }

    // The loader does reject what it does not know, so the checks above mean something.
    let replica = &replicas(&doc)["switchyard-1"];
    let mut env = environment(replica);
    let file = host_path_of(replica, &env["SWITCHYARD_CONFIG"]);
    env.insert(
        "SWITCHYARD_HTTP__LISTEN_ADDR".to_owned(),
        "0.0.0.0:8080".to_owned(),
    );
    assert!(
        load_config(&file, &env).is_err(),
        "an unknown SWITCHYARD_ key must fail to load"
    );
}

#[test]
fn freeswitch_node_vars_agree_with_the_replicas() {
    let (doc, _) = compose();
    let services = services(&doc);
    let configs = replica_configs(&doc);
    let fs_conf = &services["fs-conf"];

    // Run deploy/lab/fs-conf.sh as the fs-conf service would, into a temporary directory.
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    let dst = tmp.path().join("etc-freeswitch");
    std::fs::create_dir_all(dst.join("tls")).expect("mkdir");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::write(certs.join("fs1-wss.pem"), "test certificate\n").expect("write");
    // Left over from an earlier run: the stale file goes, the node's DTLS certificate stays.
    std::fs::write(dst.join("stale.xml"), "<x/>").expect("write");
    std::fs::write(dst.join("tls/dtls-srtp.pem"), "dtls").expect("write");
    let script = host_path_of(fs_conf, "/fs-conf.sh");
    let src = host_path_of(fs_conf, "/src/freeswitch-conf");
    let run = |fsvars: &BTreeMap<String, String>| {
        Command::new("sh")
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FS_CONF_SRC", &src)
            .env("FS_CONF_DST", &dst)
            .env("FS_CERTS_SRC", &certs)
            .envs(fsvars)
            .output()
            .expect("run sh fs-conf.sh")
    };
    let fsvars = environment(fs_conf);
    let output = run(&fsvars);
    assert!(
        output.status.success(),
        "fs-conf.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !dst.join("stale.xml").exists(),
        "fs-conf.sh keeps stale files"
    );
    assert!(
        dst.join("tls/dtls-srtp.pem").exists(),
        "fs-conf.sh removed tls/"
    );
    assert!(
        dst.join("tls/wss.pem").exists(),
        "fs-conf.sh installs no wss.pem"
    );
    assert!(dst.join("freeswitch.xml").exists());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (name, value) in &fsvars {
        if name.contains("pass") {
            assert!(!stdout.contains(value.as_str()), "fs-conf.sh prints {name}");
        }
    }

    let rendered = read(&dst.join("vars.xml"));
    assert!(!rendered.contains("CHANGE-ME"));
    let vars = vars_xml(&rendered);
    let original = vars_xml(&read(&src.join("vars.xml")));
    assert_eq!(
        vars.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>(),
        "fs-conf.sh changes values, never the set of variables"
    );
    for (name, value) in &fsvars {
        let var = name.strip_prefix("FSVAR_").expect("FSVAR_ prefix");
        assert_eq!(vars.get(var), Some(value), "vars.xml {var}");
    }

    // Agreement with every replica (freeswitch-conf/README.md, "Agreement with switchyard.toml").
    let fs1 = &services["fs1"];
    let fs1_ip = ipv4_of(fs1).expect("fs1 has a fixed address");
    for (name, config) in &configs {
        assert_eq!(vars["domain"], config.sip.domain, "{name}: sip.domain");
        assert_eq!(
            vars["switchyard_user_context"], config.sip.user_context,
            "{name}: sip.user_context"
        );
        assert_eq!(
            vars["switchyard_xml_curl_user"], config.freeswitch.username,
            "{name}: freeswitch.username"
        );
        assert_eq!(
            Some(vars["switchyard_xml_curl_password"].as_str()),
            config
                .freeswitch
                .password
                .as_ref()
                .map(|p| p.expose_secret()),
            "{name}: freeswitch.password"
        );
        assert!(
            config
                .freeswitch
                .allow_from
                .iter()
                .any(|c| in_cidr(fs1_ip, c)),
            "{name}: freeswitch.allow_from does not let fs1 ({fs1_ip}) in"
        );
        let node = config
            .nodes
            .iter()
            .find(|n| n.id == vars["switchyard_node_id"])
            .unwrap_or_else(|| panic!("{name}: no [[nodes]] id {}", vars["switchyard_node_id"]));
        assert_eq!(
            vars["switchyard_esl_password"],
            node.esl_password.expose_secret(),
            "{name}: esl_password"
        );
        let (esl_host, esl_port) = node.esl_addr.rsplit_once(':').expect("host:port");
        assert_eq!(
            esl_port, vars["switchyard_esl_listen_port"],
            "{name}: ESL port"
        );
        assert!(
            services.contains_key(esl_host) && ipv4_of(&services[esl_host]) == Some(fs1_ip),
            "{name}: esl_addr {} is not fs1",
            node.esl_addr
        );
        assert!(
            node.capacity <= vars["switchyard_max_sessions"].parse().expect("number"),
            "{name}: capacity above the node's max-sessions"
        );
        assert!(
            node.wss_url
                .starts_with(&format!("wss://{}:", vars["domain"]))
        );
        // mod_xml_curl reaches this replica by the shared alias, on its listen port.
        let url = &vars["switchyard_url"];
        let host_port = url.strip_prefix("http://").expect("http:// URL");
        let (host, port) = host_port.split_once(':').expect("host:port");
        assert!(
            aliases_of(&replicas(&doc)[name]).contains(host),
            "{name} does not answer to {host}"
        );
        assert_eq!(port.parse::<u16>().ok(), Some(port_of(&config.http.listen)));
    }
    // The node's ESL ACL lets every replica in; it binds the address the others use.
    for (name, service) in replicas(&doc) {
        let ip = ipv4_of(&service).expect("replicas have fixed addresses");
        assert!(
            vars["switchyard_esl_allowed_cidrs"]
                .split(',')
                .any(|c| in_cidr(ip, c)),
            "switchyard_esl_allowed_cidrs does not let {name} ({ip}) in"
        );
    }
    assert_eq!(vars["switchyard_bind_ip"], fs1_ip.to_string());
    // RTP: the range FreeSWITCH uses is the one published.
    let rtp = (
        vars["switchyard_rtp_start_port"].parse().expect("port"),
        vars["switchyard_rtp_end_port"].parse().expect("port"),
    );
    assert!(
        published(fs1)
            .iter()
            .any(|p| p.proto == "udp" && p.host == rtp && p.container == rtp),
        "fs1 does not publish its RTP range {rtp:?} over UDP"
    );
    // Nothing else of the node is published: WSS goes through nginx, ESL stays inside.
    assert!(published(fs1).iter().all(|p| p.proto == "udp"));

    // A variable vars.xml does not set is refused, and so is an unsafe value.
    let mut bad = fsvars.clone();
    bad.insert("FSVAR_switchyard_no_such_var".to_owned(), "x".to_owned());
    assert!(
        !run(&bad).status.success(),
        "an unknown FSVAR_ name must fail"
    );
    let mut bad = fsvars;
    bad.insert("FSVAR_domain".to_owned(), "a\"b".to_owned());
    assert!(!run(&bad).status.success(), "a quote in a value must fail");
}

// ---------------------------------------------------------------------------------------------
// nginx

/// `server a.b.c.d:port` lines of an upstream block.
fn upstream_servers(conf: &str, name: &str) -> Vec<(Ipv4Addr, u16)> {
    let start = conf
        .find(&format!("upstream {name} {{"))
        .unwrap_or_else(|| panic!("no upstream {name}"));
    let block = &conf[start..start + conf[start..].find('}').expect("block end")];
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|rest| {
            let addr = rest.split([' ', ';']).next().expect("address");
            let (ip, port) = addr.split_once(':').expect("ip:port");
            (
                ip.parse().expect("IPv4 upstream"),
                port.parse().expect("port"),
            )
        })
        .collect()
}

/// The body of the first `location <spec> {` block.
fn location<'a>(conf: &'a str, spec: &str) -> &'a str {
    let start = conf
        .find(&format!("location {spec} {{"))
        .unwrap_or_else(|| panic!("no location {spec}"));
    &conf[start..start + conf[start..].find('}').expect("block end")]
}

/// Seconds of an nginx time value (`90s`, `15m`, `90`).
fn nginx_secs(value: &str) -> u64 {
    let value = value.trim().trim_end_matches(';');
    if let Some(m) = value.strip_suffix('m') {
        m.parse::<u64>().expect("minutes") * 60
    } else {
        value.trim_end_matches('s').parse().expect("seconds")
    }
}

fn directive<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(name).filter(|r| r.starts_with(' ')))
        .map(|r| r.trim().trim_end_matches(';'))
}

/// The event channel's heartbeat: `[events] heartbeat_secs` of the example config, 25 s when
/// the key is not there.
fn heartbeat_secs() -> u64 {
    read(&root().join("crates/switchyard/switchyard.example.toml"))
        .lines()
        .find_map(|l| l.trim().strip_prefix("heartbeat_secs = "))
        .map_or(25, |v| v.trim().parse().expect("heartbeat_secs"))
}

#[test]
fn nginx_front_matches_the_lab_and_keeps_internals_private() {
    let (doc, _) = compose();
    let services = services(&doc);
    let configs = replica_configs(&doc);
    let conf = read(&deploy_dir().join("nginx/switchyard.conf"));

    // Upstreams are the compose services' fixed addresses and ports.
    let mut replica_addrs: Vec<(Ipv4Addr, u16)> = replicas(&doc)
        .iter()
        .map(|(name, s)| {
            (
                ipv4_of(s).expect("fixed address"),
                port_of(&configs[name].http.listen),
            )
        })
        .collect();
    replica_addrs.sort();
    let mut upstream = upstream_servers(&conf, "switchyard");
    upstream.sort();
    assert_eq!(
        upstream, replica_addrs,
        "upstream switchyard = the replicas"
    );

    let fs_conf_env = environment(&services["fs-conf"]);
    let wss_port: u16 = read(&root().join("freeswitch-conf/vars.xml"))
        .lines()
        .find_map(|l| l.split("data=\"switchyard_wss_port=").nth(1))
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .expect("switchyard_wss_port in vars.xml");
    assert!(!fs_conf_env.contains_key("FSVAR_switchyard_wss_port"));
    assert_eq!(
        upstream_servers(&conf, "fs1_wss"),
        vec![(ipv4_of(&services["fs1"]).expect("fs1 address"), wss_port)],
        "upstream fs1_wss = the node's sofia wss-binding"
    );
    let rtmp_conf = read(&deploy_dir().join("nginx/rtmp.conf"));
    let hls_port = rtmp_conf
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("listen "))
        .map(|p| p.trim_end_matches(';'))
        .find(|p| *p != "1935")
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the HTTP listen port of rtmp.conf");
    assert_eq!(
        upstream_servers(&conf, "hls_origin"),
        vec![(ipv4_of(&services["rtmp"]).expect("rtmp address"), hls_port)]
    );

    // The node's WSS URL (what browsers dial) is nginx's TLS listener for it, published.
    for (name, config) in &configs {
        for node in &config.nodes {
            let port = port_of(&node.wss_url);
            assert!(
                conf.contains(&format!("listen {port} ssl;")),
                "{name}: {} has no TLS listener in nginx",
                node.wss_url
            );
            assert!(
                published(&services["nginx"])
                    .iter()
                    .any(|p| p.host == (port, port) && p.container == (port, port)),
                "nginx does not publish {port}"
            );
        }
    }

    // Private endpoints.
    for spec in [
        "= /metrics",
        "= /readyz",
        "/freeswitch/",
        "= /freeswitch",
        "/demo/",
    ] {
        let body = location(&conf, spec);
        assert!(
            body.contains("return 404") || body.contains("deny all"),
            "location {spec} must not reach Switchyard"
        );
        assert!(!body.contains("proxy_pass"), "location {spec} proxies");
    }

    // The event channel: WebSocket upgrade, and a read timeout above the point where
    // Switchyard itself gives up on a silent channel (2 x heartbeat + 10 s).
    let events = location(&conf, "= /v1/events");
    assert!(events.contains("proxy_pass http://switchyard"));
    assert!(events.contains("Upgrade $http_upgrade"));
    assert!(conf.contains("proxy_set_header Connection $connection_upgrade"));
    assert!(conf.contains("proxy_http_version 1.1"));
    let read_timeout = nginx_secs(directive(events, "proxy_read_timeout").expect("timeout"));
    assert!(
        read_timeout > 2 * heartbeat_secs() + 10,
        "/v1/events proxy_read_timeout {read_timeout}s is not above 2 x heartbeat + 10 s"
    );
    for header in [
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Content-Security-Policy",
        "Referrer-Policy",
    ] {
        assert!(
            conf.contains(&format!("add_header {header} ")),
            "no {header}"
        );
    }

    // rtmp.conf: HLS and DASH on, publishing limited, latency settings present, MIME types.
    for needle in [
        "hls on;",
        "dash on;",
        "hls_fragment ",
        "hls_playlist_length ",
        "dash_fragment ",
        "dash_playlist_length ",
        "deny publish all;",
        "deny play all;",
        "application/vnd.apple.mpegurl m3u8;",
        "video/mp2t ts;",
        "application/dash+xml mpd;",
        "Access-Control-Allow-Origin",
    ] {
        assert!(rtmp_conf.contains(needle), "rtmp.conf lacks {needle:?}");
    }
    let (subnet_ip, _) = rtmp_conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("allow publish "))
        .map(|c| cidr(c.trim_end_matches(';')))
        .expect("allow publish");
    let fs1_ip = ipv4_of(&services["fs1"]).expect("fs1 address");
    assert!(
        rtmp_conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("allow publish "))
            .any(|c| in_cidr(fs1_ip, c.trim_end_matches(';'))),
        "fs1 ({fs1_ip}) may not publish (first rule {subnet_ip})"
    );
}

/// Removes the top-level `rtmp { ... }` block (stock nginx has no RTMP module).
fn without_rtmp_block(conf: &str) -> String {
    let start = conf.find("\nrtmp {").expect("rtmp block");
    let mut depth = 0;
    for (i, c) in conf[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{}", &conf[..start], &conf[start + i + 1..]);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced rtmp block");
}

#[test]
fn lab_certificates_and_nginx_syntax() {
    if !have("openssl", "version") {
        note("openssl not found: make-certs.sh and nginx -t skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    let output = Command::new("bash")
        .arg(deploy_dir().join("lab/make-certs.sh"))
        .args(["--out".as_ref(), certs.as_os_str()])
        .arg("lab.example")
        .env("LAB_PUBLIC_IP", "192.0.2.10")
        .output()
        .expect("run make-certs.sh");
    assert!(
        output.status.success(),
        "make-certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in [
        "ca.crt",
        "server.crt",
        "server.key",
        "fs1.crt",
        "fs1.key",
        "fs1-wss.pem",
    ] {
        assert!(certs.join(file).is_file(), "make-certs.sh wrote no {file}");
    }
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(certs.join("ca.crt"))
        .arg(certs.join("server.crt"))
        .arg(certs.join("fs1.crt"))
        .output()
        .expect("openssl verify");
    assert!(
        verify.status.success(),
        "lab certificates do not chain to the lab CA"
    );
    let san = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(certs.join("server.crt"))
        .output()
        .expect("openssl x509");
    let san = String::from_utf8_lossy(&san.stdout);
    assert!(
        san.contains("DNS:lab.example") && san.contains("IP Address:192.0.2.10"),
        "{san}"
    );
    let pem = read(&certs.join("fs1-wss.pem"));
    assert!(
        pem.find("BEGIN CERTIFICATE") < pem.find("PRIVATE KEY"),
        "wss.pem: certificate(s) first, then the key"
    );

    if !have("nginx", "-v") {
        note("nginx not found: nginx -t skipped (configs checked as text only)");
        return;
    }
    // nginx -t in a private prefix: the configs' relative paths (certs/...) resolve there.
    let prefix = tmp.path();
    let check = |name: &str, text: &str| {
        let file = prefix.join(name);
        std::fs::write(&file, text).expect("write");
        let output = Command::new("nginx")
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&file)
            .args(["-e", "stderr"])
            .output()
            .expect("run nginx -t");
        assert!(
            output.status.success(),
            "nginx -t {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    check(
        "switchyard.conf",
        &read(&deploy_dir().join("nginx/switchyard.conf")),
    );
    check(
        "rtmp-http.conf",
        &without_rtmp_block(&read(&deploy_dir().join("nginx/rtmp.conf"))),
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

/// An INI file as (section, key, value) triples, in order (keys repeat in systemd units).
fn ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        assert!(
            !section.is_empty(),
            "line {}: key before any section",
            n + 1
        );
        assert!(!line.ends_with('\\'), "line {}: continuation lines", n + 1);
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not Key=Value: {line:?}", n + 1));
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

#[test]
fn systemd_unit_is_hardened_and_consistent() {
    let dir = deploy_dir().join("systemd");
    let unit_text = read(&dir.join("switchyard.service"));
    let unit = ini(&unit_text);
    let sections: BTreeSet<&str> = unit.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        sections,
        BTreeSet::from(["Unit", "Service", "Install"]),
        "sections"
    );
    let service = |key: &str| -> Vec<&str> {
        unit.iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let values = service(key);
        assert_eq!(
            values.len(),
            1,
            "[Service] {key}: expected once, got {values:?}"
        );
        values[0]
    };
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("StateDirectory", "switchyard"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
    ] {
        assert_eq!(one(key), expected, "[Service] {key}");
    }
    assert!(service("SystemCallFilter").contains(&"@system-service"));
    // The state directory is the only writable path: nothing widens ProtectSystem=strict.
    assert!(
        service("ReadWritePaths")
            .iter()
            .all(|p| p.trim_start_matches('-') == "/var/lib/switchyard")
    );
    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE number");
    assert!(
        nofile >= 65536,
        "LimitNOFILE {nofile} too low for many WebSockets"
    );
    let env_file_path = one("EnvironmentFile");
    assert_eq!(
        env_file_path.trim_start_matches('-'),
        "/etc/switchyard/switchyard.env"
    );

    // ExecStart names the config file; that file (shipped as systemd/switchyard.toml) plus the
    // environment file's example load through switchyard's loader, and the stop timeout covers
    // the shutdown grace.
    let exec = one("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    let config_at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("ExecStart --config");
    assert_eq!(args[config_at + 1], "/etc/switchyard/switchyard.toml");
    assert_eq!(args.last(), Some(&"serve"));
    let env = env_file(&read(&dir.join("switchyard.env.example")));
    let config = load_config(&dir.join("switchyard.toml"), &env)
        .unwrap_or_else(|e| panic!("systemd/switchyard.toml + switchyard.env.example: {e}"));
    assert!(
        config
            .database
            .url
            .expose_secret()
            .starts_with("sqlite:///var/lib/switchyard/")
    );
    let stop = one("TimeoutStopSec").trim_end_matches('s');
    let stop: u64 = stop.parse().expect("TimeoutStopSec in seconds");
    assert!(
        stop > config.http.shutdown_grace_secs,
        "TimeoutStopSec {stop}s must exceed http.shutdown_grace_secs"
    );

    if !have("systemd-analyze", "--version") {
        note("systemd-analyze not found: unit verification skipped");
        return;
    }
    // verify insists the executable exists: point ExecStart at one that does.
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("switchyard.service");
    std::fs::write(
        &copy,
        unit_text.replace("ExecStart=/usr/local/bin/switchyard", "ExecStart=/bin/true"),
    )
    .expect("write");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scripts and the Dockerfile

#[test]
fn shell_scripts_parse() {
    let mut scripts = Vec::new();
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 2, "scripts: {scripts:?}");
    for script in scripts {
        let first = read(&script).lines().next().unwrap_or_default().to_owned();
        // POSIX sh scripts (run by busybox) must parse as such too.
        let shells: &[&str] = if first.ends_with("/sh") {
            &["sh", "bash"]
        } else {
            &["bash"]
        };
        for shell in shells {
            let output = Command::new(shell)
                .arg("-n")
                .arg(&script)
                .output()
                .expect("run the shell");
            assert!(
                output.status.success(),
                "{shell} -n {}: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn dockerfile_builds_a_non_root_multi_stage_image() {
    let text = read(&deploy_dir().join("Dockerfile"));
    // Instructions, with continuation lines joined.
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (op, args) = pending.split_once(' ').unwrap_or((&pending, ""));
        instructions.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let build_stage = froms[0]
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("AS"))
        .map(|w| w[1].to_owned())
        .expect("the build stage is named");
    let last_from = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("FROM");
    let runtime = &instructions[last_from..];
    let find = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert!(
        instructions.iter().any(
            |(op, a)| op == "RUN" && a.contains("cargo build --release -p switchyard --locked")
        ),
        "the build runs cargo build --release -p switchyard --locked"
    );
    assert!(
        find("COPY")
            .iter()
            .any(|a| a.starts_with(&format!("--from={build_stage} "))),
        "the runtime stage copies the binary from {build_stage}"
    );
    let user = find("USER");
    let user = user.last().expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: a fixed numeric uid"));
    assert_ne!(uid, 0, "USER must not be root");
    assert!(
        find("VOLUME")
            .iter()
            .any(|v| v.contains("/var/lib/switchyard"))
    );
    let healthcheck = find("HEALTHCHECK");
    assert!(
        healthcheck.iter().any(|h| h.contains("/healthz")),
        "HEALTHCHECK on /healthz"
    );
    assert_eq!(find("ENTRYPOINT"), vec![r#"["switchyard"]"#]);
    assert_eq!(find("CMD"), vec![r#"["serve"]"#]);

    // The image's own environment is real configuration, and agrees with EXPOSE and the
    // health check.
    let mut env = BTreeMap::new();
    for args in find("ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let config = load_config(&empty, &env).unwrap_or_else(|e| panic!("Dockerfile ENV: {e}"));
    let port = port_of(&config.http.listen);
    assert!(
        find("EXPOSE")
            .iter()
            .any(|p| p.split_whitespace().any(|p| p == port.to_string()))
    );
    assert!(
        healthcheck
            .iter()
            .all(|h| h.contains(&format!("/127.0.0.1/{port}")))
    );
    assert!(
        config
            .database
            .url
            .expose_secret()
            .starts_with("sqlite:///var/lib/switchyard/"),
        "the SQLite default lives in the volume"
    );

    // The build context keeps the workspace and drops the rest.
    let ignore = read(&root().join(".dockerignore"));
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["**/target", ".git", "deploy/.env"] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}");
    }
    for kept in ["Cargo.toml", "Cargo.lock", "crates", "tests"] {
        assert!(!patterns.contains(&kept), ".dockerignore drops {kept}");
    }
}

#[test]
fn docker_compose_accepts_the_file() {
    let has_compose = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compose {
        note("no docker client with the compose plugin: docker compose config skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let env_path = tmp.path().join("lab.env");
    let env: String = lab_env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&env_path, env).expect("write");
    let output = Command::new("docker")
        .arg("compose")
        .arg("--env-file")
        .arg(&env_path)
        .arg("-f")
        .arg(deploy_dir().join("docker-compose.yml"))
        .args(["config", "-q"])
        .output()
        .expect("docker compose config");
    assert!(
        output.status.success(),
        "docker compose config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
