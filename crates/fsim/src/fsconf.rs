//! A FreeSWITCH configuration directory, read the way FreeSWITCH reads it, for the parts fsim
//! simulates.
//!
//! # Why
//!
//! `freeswitch-conf/` is what a real Switchyard node runs. When fsim takes its settings from
//! the same files (`fsim --freeswitch-conf DIR`), the end-to-end tests exercise those files:
//! a wrong URL, password or variable name there fails a test instead of a deployment.
//!
//! # What is read
//!
//! 1. The pre-processor (FreeSWITCH `switch_xml.c`, as emulated by
//!    `freeswitch-conf/check_preprocess.py`), line by line from `freeswitch.xml`: `$${name}`
//!    expands to the global variable (unset: nothing), lines holding `<include>`,
//!    `</include>` or `<?` are dropped, `<X-PRE-PROCESS cmd="set" data="name=value"/>` sets a
//!    variable and `cmd="include"` pastes files (a glob relative to the including file's
//!    directory). Directives run even inside XML comments, as in FreeSWITCH. `exec`,
//!    `exec-set`, `env-set`, `stun-set` are refused (fsim runs nothing). [`Overrides`] win
//!    over every `set`, like variables given to `freeswitch` on its command line.
//! 2. The assembled document: `xml_curl.conf` (directory and dialplan bindings),
//!    `event_socket.conf`, `switch.conf` (switchname, max-sessions, sessions-per-second,
//!    event-heartbeat-interval) and the `sofia.conf` profile (domain, SIP and WebSocket ports).
//!
//! Everything here is sans-IO but [`read_dir`]: the files come in as a map of contents.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::directory::{DirectoryConfig, Element, dropped_by_preprocessor, parse_xml};
use crate::node::NodeConfig;

/// The root file FreeSWITCH reads.
pub const ROOT_FILE: &str = "freeswitch.xml";

/// Deepest include nesting accepted (FreeSWITCH's limit is similar).
const MAX_INCLUDE_DEPTH: usize = 20;

/// A configuration directory: relative path (`/`-separated) → file contents.
pub type ConfFiles = BTreeMap<String, String>;

/// Variables that win over every `set` of the files (`--set name=value`).
pub type Overrides = BTreeMap<String, String>;

/// Why a configuration directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FsConfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: no such file in the configuration directory")]
    Missing { file: String },
    #[error("{file}:{line}: include {pattern:?} matches no file")]
    IncludeNotFound {
        file: String,
        line: usize,
        pattern: String,
    },
    #[error("{file}:{line}: includes nested deeper than {MAX_INCLUDE_DEPTH}")]
    IncludeDepth { file: String, line: usize },
    #[error("{file}:{line}: malformed pre-processor directive: {text}")]
    BadDirective {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}:{line}: pre-processor command {cmd:?} is not supported by fsim")]
    Unsupported {
        file: String,
        line: usize,
        cmd: String,
    },
    #[error("the assembled {ROOT_FILE} is not well-formed XML: {0}")]
    Xml(String),
    #[error("{config}: parameter {param} = {value:?}: {reason}")]
    BadParam {
        config: &'static str,
        param: &'static str,
        value: String,
        reason: String,
    },
}

/// One mod_xml_curl binding (xml_curl.conf `<binding>`).
#[derive(Clone, PartialEq, Eq)]
pub struct XmlCurlBinding {
    pub name: String,
    pub url: String,
    /// The `bindings` attribute of `gateway-url`; `None` binds every section.
    pub sections: Option<String>,
    /// `gateway-credentials` (`user`, `pass`).
    pub credentials: Option<(String, String)>,
    /// `timeout` in seconds (0 = no limit).
    pub timeout: Duration,
}

impl XmlCurlBinding {
    /// Whether FreeSWITCH asks this binding for `section` (substring match, like mod_xml_curl).
    pub fn binds(&self, section: &str) -> bool {
        self.sections.as_deref().is_none_or(|s| s.contains(section))
    }

    fn directory_config(&self) -> DirectoryConfig {
        DirectoryConfig {
            url: Some(self.url.clone()),
            credentials: self.credentials.clone(),
            timeout: self.timeout,
        }
    }
}

impl std::fmt::Debug for XmlCurlBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlCurlBinding")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("sections", &self.sections)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// event_socket.conf `<settings>`.
#[derive(Clone, PartialEq, Eq)]
pub struct EslSettings {
    /// `listen-ip` (default 127.0.0.1).
    pub listen_ip: IpAddr,
    /// `listen-port` (default 8021).
    pub listen_port: u16,
    /// `password` (default `ClueCon` when unset or empty).
    pub password: String,
    /// Every `apply-inbound-acl` (fsim does not enforce ACLs).
    pub inbound_acl: Vec<String>,
}

impl std::fmt::Debug for EslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EslSettings")
            .field("listen_ip", &self.listen_ip)
            .field("listen_port", &self.listen_port)
            .field("password", &"<redacted>")
            .field("inbound_acl", &self.inbound_acl)
            .finish()
    }
}

/// The sofia profile browsers use (the one named `internal`, else the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipProfile {
    pub name: String,
    /// `sip-port` (default 5060).
    pub sip_port: u16,
    /// Port of `ws-binding`, if any.
    pub ws_port: Option<u16>,
    /// Port of `wss-binding`, if any.
    pub wss_port: Option<u16>,
    /// `challenge-realm` when fixed, else `force-register-domain`, if either is set.
    pub realm: Option<String>,
}

/// What fsim takes from a configuration directory.
#[derive(Debug, Clone)]
pub struct FsSettings {
    /// switch.conf `switchname`.
    pub switchname: Option<String>,
    /// The digest realm and directory domain: the profile's fixed realm, else the global
    /// variable `domain`.
    pub domain: Option<String>,
    /// The first binding for `directory` (FreeSWITCH tries them in order; fsim has one).
    pub directory: DirectoryConfig,
    /// The first binding for `dialplan`: its `gateway-url`.
    pub dialplan_url: Option<String>,
    /// Every binding, in order.
    pub xml_curl_bindings: Vec<XmlCurlBinding>,
    pub esl: EslSettings,
    /// switch.conf `max-sessions`.
    pub max_sessions: Option<u32>,
    /// switch.conf `sessions-per-second`.
    pub max_sps: Option<u32>,
    /// switch.conf `event-heartbeat-interval`.
    pub heartbeat_interval: Option<Duration>,
    pub sip_profile: Option<SipProfile>,
    /// The global variables after pre-processing (overrides included).
    pub variables: BTreeMap<String, String>,
}

impl FsSettings {
    /// Applies every setting found to `node` (the name only when `switchname` is set).
    pub fn apply(&self, node: &mut NodeConfig) {
        if let Some(name) = &self.switchname {
            node.name = name.clone();
        }
        node.esl_listen = std::net::SocketAddr::new(self.esl.listen_ip, self.esl.listen_port);
        node.password = self.esl.password.clone();
        node.directory = self.directory.clone();
        if let Some(domain) = &self.domain {
            node.domain = domain.clone();
        }
        if let Some(n) = self.max_sessions {
            node.max_sessions = n;
        }
        if let Some(n) = self.max_sps {
            node.max_sps = n;
        }
        if let Some(interval) = self.heartbeat_interval {
            node.heartbeat_interval = interval;
        }
        if let Some(profile) = &self.sip_profile {
            node.sip_profile = profile.name.clone();
            node.sip_port = profile.sip_port;
        }
    }
}

/// Global variables FreeSWITCH's core sets before it reads the configuration, with values
/// that fit a simulated node on loopback (overridable like any variable).
pub fn core_variables() -> BTreeMap<String, String> {
    [
        ("local_ip_v4", "127.0.0.1"),
        ("local_ip_v6", "::1"),
        ("hostname", "localhost"),
        ("base_dir", "/usr"),
        ("conf_dir", "/etc/freeswitch"),
        ("certs_dir", "/etc/freeswitch/tls"),
        ("log_dir", "/var/log/freeswitch"),
        ("sounds_dir", "/usr/share/freeswitch/sounds"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Reads every `.xml` file under `dir` (the only IO of this module).
pub fn read_dir(dir: &Path) -> Result<ConfFiles, FsConfError> {
    fn walk(root: &Path, dir: &Path, out: &mut ConfFiles) -> Result<(), FsConfError> {
        let read_err = |path: &Path, source| FsConfError::Read {
            path: path.display().to_string(),
            source,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| read_err(dir, e))?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "xml") {
                let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let key: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(key.join("/"), text);
            }
        }
        Ok(())
    }
    // Checked first so a wrong directory fails fast instead of being walked.
    if !dir.join(ROOT_FILE).is_file() {
        return Err(FsConfError::Missing {
            file: dir.join(ROOT_FILE).display().to_string(),
        });
    }
    let mut files = ConfFiles::new();
    walk(dir, dir, &mut files)?;
    Ok(files)
}

/// [`read_dir`] then [`load`].
pub fn load_dir(dir: &Path, overrides: &Overrides) -> Result<FsSettings, FsConfError> {
    load(&read_dir(dir)?, overrides)
}

/// Pre-processes `freeswitch.xml` of `files` and reads the settings fsim simulates.
pub fn load(files: &ConfFiles, overrides: &Overrides) -> Result<FsSettings, FsConfError> {
    let (document, variables) = preprocess(files, overrides)?;
    settings(&document, variables)
}

/// The pre-processor: the assembled `freeswitch.xml` and the global variables it set.
pub fn preprocess(
    files: &ConfFiles,
    overrides: &Overrides,
) -> Result<(String, BTreeMap<String, String>), FsConfError> {
    let mut pre = Preprocessor {
        files,
        overrides,
        variables: core_variables(),
        out: String::new(),
    };
    pre.variables
        .extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    pre.file(ROOT_FILE, 0, None)?;
    Ok((pre.out, pre.variables))
}

struct Preprocessor<'a> {
    files: &'a ConfFiles,
    overrides: &'a Overrides,
    variables: BTreeMap<String, String>,
    out: String,
}

impl Preprocessor<'_> {
    fn file(
        &mut self,
        name: &str,
        depth: usize,
        from: Option<(&str, usize)>,
    ) -> Result<(), FsConfError> {
        if depth > MAX_INCLUDE_DEPTH {
            let (file, line) = from.unwrap_or((name, 0));
            return Err(FsConfError::IncludeDepth {
                file: file.to_owned(),
                line,
            });
        }
        let Some(text) = self.files.get(name) else {
            return Err(FsConfError::Missing {
                file: name.to_owned(),
            });
        };
        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
        for (n, raw) in text.split_inclusive('\n').enumerate() {
            let line_no = n + 1;
            // Expansion uses the values set so far, like FreeSWITCH.
            let line = expand(raw, &self.variables);
            if dropped_by_preprocessor(raw) {
                continue;
            }
            let Some(at) = find_ignore_case(&line, "x-pre-process") else {
                self.out.push_str(&line);
                continue;
            };
            // The tag must open an element; a mere mention drops the line (as FreeSWITCH).
            if at == 0 || line.as_bytes()[at - 1] != b'<' {
                continue;
            }
            let bad = || FsConfError::BadDirective {
                file: name.to_owned(),
                line: line_no,
                text: line.trim().to_owned(),
            };
            let directive = &line[at..];
            let cmd = attribute(directive, "cmd").ok_or_else(bad)?;
            let data = attribute(directive, "data").ok_or_else(bad)?;
            match cmd.to_ascii_lowercase().as_str() {
                "set" => {
                    let (key, value) = data.split_once('=').ok_or_else(bad)?;
                    let key = key.trim_end();
                    if !self.overrides.contains_key(key) {
                        self.variables
                            .insert(key.to_owned(), value.trim_start().to_owned());
                    }
                }
                "include" => {
                    let pattern = join(dir, data);
                    let matches: Vec<String> = self
                        .files
                        .keys()
                        .filter(|k| glob_match(&pattern, k))
                        .cloned()
                        .collect();
                    if matches.is_empty() {
                        return Err(FsConfError::IncludeNotFound {
                            file: name.to_owned(),
                            line: line_no,
                            pattern: data.to_owned(),
                        });
                    }
                    for inc in matches {
                        self.file(&inc, depth + 1, Some((name, line_no)))?;
                    }
                }
                other => {
                    return Err(FsConfError::Unsupported {
                        file: name.to_owned(),
                        line: line_no,
                        cmd: other.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `$${name}` → the variable's value (unset: nothing); an unterminated `$${` stays as is.
fn expand(line: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("$${") {
        let after = &rest[start + 3..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(vars.get(&after[..end]).map_or("", String::as_str));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())
}

/// `name="value"` in a directive: the value ends at the next double quote (no escapes).
fn attribute<'a>(directive: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = directive.find(&key)? + key.len();
    let len = directive[start..].find('"')?;
    Some(&directive[start..start + len])
}

/// `dir` + relative `path`, with `.` and `..` resolved (absolute paths are taken from the
/// directory root: fsim only has the configuration directory).
fn join(dir: &str, path: &str) -> String {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// `*` and `?` within one path segment, like glob(3) without brackets.
fn glob_match(pattern: &str, path: &str) -> bool {
    let (pat, text): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pat.len() == text.len()
        && pat
            .iter()
            .zip(&text)
            .all(|(p, t)| segment_match(p.as_bytes(), t.as_bytes()))
}

fn segment_match(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_match(&p[1..], t) || (!t.is_empty() && segment_match(p, &t[1..]))
        }
        (Some(b'?'), Some(_)) => segment_match(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => segment_match(&p[1..], &t[1..]),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The assembled document.

fn settings(
    document: &str,
    variables: BTreeMap<String, String>,
) -> Result<FsSettings, FsConfError> {
    let root = parse_xml(document).map_err(FsConfError::Xml)?;
    let config = |name: &str| {
        root.children_named("section")
            .filter(|s| s.attr("name") == Some("configuration"))
            .flat_map(|s| s.children_named("configuration"))
            .find(|c| c.attr("name") == Some(name))
    };

    let bindings = match config("xml_curl.conf") {
        Some(c) => xml_curl_bindings(c)?,
        None => Vec::new(),
    };
    let directory = bindings.iter().find(|b| b.binds("directory")).map_or(
        DirectoryConfig {
            url: None,
            ..DirectoryConfig::default()
        },
        XmlCurlBinding::directory_config,
    );
    let dialplan_url = bindings
        .iter()
        .find(|b| b.binds("dialplan"))
        .map(|b| b.url.clone());

    let esl = esl_settings(
        config("event_socket.conf")
            .map(settings_params)
            .unwrap_or_default(),
    )?;

    let core = config("switch.conf")
        .map(settings_params)
        .unwrap_or_default();
    let get = |name: &str| last(&core, name);
    let switchname = get("switchname")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let max_sessions = number("switch.conf", "max-sessions", get("max-sessions"))?;
    let max_sps = number(
        "switch.conf",
        "sessions-per-second",
        get("sessions-per-second"),
    )?;
    let heartbeat_interval = number::<u64>(
        "switch.conf",
        "event-heartbeat-interval",
        get("event-heartbeat-interval"),
    )?
    .filter(|s| *s > 0)
    .map(Duration::from_secs);

    let sip_profile = match config("sofia.conf") {
        Some(sofia) => sip_profile(sofia)?,
        None => None,
    };
    let domain = sip_profile
        .as_ref()
        .and_then(|p| p.realm.clone())
        .or_else(|| variables.get("domain").filter(|d| !d.is_empty()).cloned());

    Ok(FsSettings {
        switchname,
        domain,
        directory,
        dialplan_url,
        xml_curl_bindings: bindings,
        esl,
        max_sessions,
        max_sps,
        heartbeat_interval,
        sip_profile,
        variables,
    })
}

/// `<param name= value=>` children of `container`, in order.
fn params(container: &Element) -> Vec<(String, String, &Element)> {
    container
        .children_named("param")
        .filter_map(|p| {
            Some((
                p.attr("name")?.to_owned(),
                p.attr("value").unwrap_or_default().to_owned(),
                p,
            ))
        })
        .collect()
}

fn settings_params(config: &Element) -> Vec<(String, String)> {
    config
        .children_named("settings")
        .flat_map(params)
        .map(|(n, v, _)| (n, v))
        .collect()
}

/// The last value of a parameter (later ones overwrite earlier ones in FreeSWITCH's loops).
fn last<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn number<T: std::str::FromStr>(
    config: &'static str,
    param: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, FsConfError>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| FsConfError::BadParam {
                config,
                param,
                value: v.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn xml_curl_bindings(config: &Element) -> Result<Vec<XmlCurlBinding>, FsConfError> {
    let mut out = Vec::new();
    for bindings in config.children_named("bindings") {
        for binding in bindings.children_named("binding") {
            let name = binding.attr("name").unwrap_or_default().to_owned();
            let mut url = None;
            let mut sections = None;
            let mut credentials = None;
            let mut timeout = Duration::ZERO;
            for (param, value, element) in params(binding) {
                match param.to_ascii_lowercase().as_str() {
                    "gateway-url" => {
                        url = Some(value);
                        sections = element.attr("bindings").map(str::to_owned);
                    }
                    "gateway-credentials" => {
                        credentials = match value.split_once(':') {
                            Some((user, pass)) => Some((user.to_owned(), pass.to_owned())),
                            None if value.is_empty() => None,
                            None => Some((value, String::new())),
                        };
                    }
                    "timeout" => {
                        let secs: u64 =
                            number("xml_curl.conf", "timeout", Some(&value))?.unwrap_or_default();
                        timeout = Duration::from_secs(secs);
                    }
                    _ => {}
                }
            }
            // mod_xml_curl skips a binding without a URL.
            if let Some(url) = url.filter(|u| !u.is_empty()) {
                out.push(XmlCurlBinding {
                    name,
                    url,
                    sections,
                    credentials,
                    timeout,
                });
            }
        }
    }
    Ok(out)
}

fn esl_settings(params: Vec<(String, String)>) -> Result<EslSettings, FsConfError> {
    let listen_ip = match last(&params, "listen-ip").filter(|v| !v.is_empty()) {
        Some(ip) => ip
            .parse()
            .map_err(|e: std::net::AddrParseError| FsConfError::BadParam {
                config: "event_socket.conf",
                param: "listen-ip",
                value: ip.to_owned(),
                reason: e.to_string(),
            })?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let listen_port = number(
        "event_socket.conf",
        "listen-port",
        last(&params, "listen-port"),
    )?
    .unwrap_or(8021);
    let password = last(&params, "password")
        .filter(|p| !p.is_empty())
        .unwrap_or("ClueCon")
        .to_owned();
    let inbound_acl = params
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("apply-inbound-acl"))
        .map(|(_, v)| v.clone())
        .collect();
    Ok(EslSettings {
        listen_ip,
        listen_port,
        password,
        inbound_acl,
    })
}

fn sip_profile(sofia: &Element) -> Result<Option<SipProfile>, FsConfError> {
    let profiles: Vec<&Element> = sofia
        .children_named("profiles")
        .flat_map(|p| p.children_named("profile"))
        .collect();
    let Some(profile) = profiles
        .iter()
        .find(|p| p.attr("name") == Some("internal"))
        .or(profiles.first())
    else {
        return Ok(None);
    };
    let params = settings_params(profile);
    let get = |name: &str| last(&params, name).filter(|v| !v.is_empty());
    let sip_port = number("sofia.conf", "sip-port", get("sip-port"))?.unwrap_or(5060);
    let binding_port = |param: &'static str| -> Result<Option<u16>, FsConfError> {
        // `[ip]:port`, `ip:port` or `:port`.
        let port = get(param).map(|v| v.rsplit_once(':').map_or(v, |(_, p)| p));
        number("sofia.conf", param, port)
    };
    let fixed = |v: &&str| !v.starts_with("auto_");
    let realm = get("challenge-realm")
        .filter(fixed)
        .or_else(|| get("force-register-domain"))
        .map(str::to_owned);
    Ok(Some(SipProfile {
        name: profile.attr("name").unwrap_or("internal").to_owned(),
        sip_port,
        ws_port: binding_port("ws-binding")?,
        wss_port: binding_port("wss-binding")?,
        realm,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn repo_conf() -> ConfFiles {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../freeswitch-conf");
        read_dir(&dir).expect("freeswitch-conf is readable")
    }

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_the_repository_configuration() {
        let s = load(&repo_conf(), &Overrides::new()).expect("loads");
        assert_eq!(s.switchname.as_deref(), Some("fs1"));
        assert_eq!(s.domain.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            s.directory.url.as_deref(),
            Some("http://127.0.0.1:8080/freeswitch/directory")
        );
        assert_eq!(
            s.directory.credentials,
            Some((
                "freeswitch".to_owned(),
                "CHANGE-ME-xml-curl-password".to_owned()
            ))
        );
        assert_eq!(s.directory.timeout, Duration::from_secs(2));
        assert_eq!(
            s.dialplan_url.as_deref(),
            Some("http://127.0.0.1:8080/freeswitch/dialplan")
        );
        assert_eq!(s.xml_curl_bindings.len(), 2);
        assert_eq!(s.esl.listen_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.esl.listen_port, 8021);
        assert_eq!(s.esl.password, "CHANGE-ME-esl-password");
        assert_eq!(s.esl.inbound_acl, ["switchyard"]);
        assert_eq!(s.max_sessions, Some(1000));
        assert_eq!(s.max_sps, Some(30));
        assert_eq!(s.heartbeat_interval, Some(Duration::from_secs(20)));
        let profile = s.sip_profile.expect("internal profile");
        assert_eq!(profile.name, "internal");
        assert_eq!(profile.sip_port, 5060);
        assert_eq!(profile.wss_port, Some(7443));
        assert_eq!(profile.ws_port, None, "ws-binding is commented out");
        // vars.xml expanded $${local_ip_v4} from the core variables.
        assert_eq!(s.variables["switchyard_bind_ip"], "127.0.0.1");
    }

    #[test]
    fn overrides_win_over_vars_xml() {
        let s = load(
            &repo_conf(),
            &overrides(&[
                ("switchyard_url", "http://127.0.0.1:4567"),
                ("switchyard_esl_listen_port", "0"),
                ("switchyard_node_id", "fs9"),
                ("domain", "sip.example.com"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            s.directory.url.as_deref(),
            Some("http://127.0.0.1:4567/freeswitch/directory")
        );
        assert_eq!(
            s.dialplan_url.as_deref(),
            Some("http://127.0.0.1:4567/freeswitch/dialplan")
        );
        assert_eq!(s.esl.listen_port, 0);
        assert_eq!(s.switchname.as_deref(), Some("fs9"));
        assert_eq!(s.domain.as_deref(), Some("sip.example.com"));

        let mut node = NodeConfig::new("x");
        s.apply(&mut node);
        assert_eq!(node.name, "fs9");
        assert_eq!(node.password, "CHANGE-ME-esl-password");
        assert_eq!(node.domain, "sip.example.com");
        assert_eq!(node.esl_listen.port(), 0);
    }

    fn files(pairs: &[(&str, &str)]) -> ConfFiles {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn preprocessor_rules() {
        let conf = files(&[
            (
                "freeswitch.xml",
                "<?xml version=\"1.0\"?>\n<document type=\"freeswitch/xml\">\n\
                 <X-PRE-PROCESS cmd=\"set\" data=\"a=1\"/>\n\
                 <!-- <X-PRE-PROCESS cmd=\"set\" data=\"b = two\"/> runs even in a comment -->\n\
                 <x a=\"$${a}$${b}$${unset}\"/>\n\
                 <X-PRE-PROCESS cmd=\"include\" data=\"conf/*.xml\"/>\n\
                 mentions X-PRE-PROCESS: dropped\n\
                 </document>\n",
            ),
            ("conf/one.xml", "<include>\n<y v=\"$${a}\"/>\n</include>\n"),
            ("conf/two.xml", "<z/>\n"),
            ("other/three.xml", "<never/>\n"),
        ]);
        let (doc, vars) = preprocess(&conf, &overrides(&[("a", "9")])).expect("assembles");
        assert_eq!(vars["a"], "9", "override wins");
        assert_eq!(vars["b"], "two", "name and value trimmed");
        assert_eq!(
            doc,
            "<document type=\"freeswitch/xml\">\n<x a=\"9two\"/>\n<y v=\"9\"/>\n<z/>\n</document>\n"
        );
    }

    #[test]
    fn errors_are_clear() {
        let err = |conf: ConfFiles| load(&conf, &Overrides::new()).unwrap_err().to_string();
        let e = err(files(&[(
            "freeswitch.xml",
            "<document><section></document>\n",
        )]));
        assert!(e.contains("not well-formed"), "{e}");
        let e = err(files(&[("freeswitch.xml", "garbage, not XML at all\n")]));
        assert!(e.contains("not well-formed"), "{e}");
        let e = err(files(&[]));
        assert!(e.contains("freeswitch.xml: no such file"), "{e}");
        let e = err(files(&[(
            "freeswitch.xml",
            "<document>\n<X-PRE-PROCESS cmd=\"include\" data=\"nope.xml\"/>\n</document>\n",
        )]));
        assert!(
            e.contains("freeswitch.xml:2") && e.contains("nope.xml"),
            "{e}"
        );
        let e = err(files(&[(
            "freeswitch.xml",
            "<X-PRE-PROCESS cmd=\"exec\" data=\"rm -rf /\"/>\n",
        )]));
        assert!(e.contains("not supported"), "{e}");
        let e = err(files(&[(
            "freeswitch.xml",
            "<X-PRE-PROCESS cmd=\"include\" data=\"freeswitch.xml\"/>\n",
        )]));
        assert!(e.contains("nested deeper"), "{e}");
        let e = err(files(&[(
            "freeswitch.xml",
            "<document><section name=\"configuration\">\
             <configuration name=\"event_socket.conf\"><settings>\
             <param name=\"listen-port\" value=\"eighty\"/>\
             </settings></configuration></section></document>\n",
        )]));
        assert!(e.contains("listen-port") && e.contains("eighty"), "{e}");
    }

    #[test]
    fn defaults_without_bindings() {
        let s = load(
            &files(&[("freeswitch.xml", "<document type=\"freeswitch/xml\"/>\n")]),
            &Overrides::new(),
        )
        .expect("loads");
        assert_eq!(s.directory.url, None);
        assert_eq!(s.dialplan_url, None);
        assert_eq!(s.esl.password, "ClueCon");
        assert_eq!(s.esl.listen_port, 8021);
        assert_eq!(s.switchname, None);
    }

    #[test]
    fn paths_and_globs() {
        assert_eq!(
            join("autoload_configs", "../sip_profiles/internal.xml"),
            "sip_profiles/internal.xml"
        );
        assert_eq!(join("", "vars.xml"), "vars.xml");
        assert!(glob_match("a/*.xml", "a/b.xml"));
        assert!(!glob_match("a/*.xml", "a/b/c.xml"));
        assert!(glob_match("a/?.xml", "a/b.xml"));
        assert!(!glob_match("a/*.xml", "a/b.xmlx"));
    }
}
