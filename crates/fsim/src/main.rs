//! `fsim`: run simulated FreeSWITCH nodes as a process.
//!
//! # Why
//!
//! Switchyard's end-to-end tests, demos and non-Rust tooling need FreeSWITCH nodes to talk to:
//! an ESL port that behaves like the captured FreeSWITCH, a mod_xml_curl directory client that
//! calls Switchyard's directory endpoint, and mod_conference events. This binary starts one or
//! more such nodes ([`fsim::node::SimNode`]) and, optionally, the HTTP control port
//! ([`fsim::control`]) through which tests register users, place calls and inject faults.
//!
//! Each listening address is printed to **stdout** as one machine-readable line, so a test
//! that starts fsim on port 0 can find it:
//!
//! ```text
//! listening esl fs1 127.0.0.1:8021
//! listening sip-ws fs1 ws://127.0.0.1:5066
//! listening control http://127.0.0.1:8031
//! ```
//!
//! `--freeswitch-conf DIR` takes the node's settings from a FreeSWITCH configuration directory
//! (`freeswitch-conf/`, see [`fsim::fsconf`]); `--set name=value` overrides its variables.
//!
//! Logs go to stderr (tracing; `RUST_LOG` filters, default `info`). SIGINT/SIGTERM shut every
//! node down the FreeSWITCH way (SHUTDOWN event, then the "The system is being shut down."
//! disconnect notice on every ESL connection) and exit 0.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use fsim::directory::DirectoryConfig;
use fsim::fsconf::{FsConfError, FsSettings, Overrides};
use fsim::node::{NodeConfig, SimNode};

/// FreeSWITCH simulator: ESL (mod_event_socket), mod_conference and the mod_xml_curl directory.
///
/// Precedence, highest first: a flag given on the command line or its FSIM_* variable, then
/// the value read from --freeswitch-conf (with --set applied), then the default shown.
#[derive(Debug, Parser)]
#[command(name = "fsim", version, about, long_about)]
struct Args {
    /// ESL listen address (port 0 = any free port). With --nodes N, node i listens on port+i-1.
    #[arg(long, env = "FSIM_ESL", default_value = "127.0.0.1:8021")]
    esl: SocketAddr,

    /// ESL password (`auth <password>`).
    #[arg(long, env = "FSIM_PASSWORD", default_value = "ClueCon")]
    password: String,

    /// Seconds between HEARTBEAT events.
    #[arg(long, env = "FSIM_HEARTBEAT_INTERVAL", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval: u64,

    /// mod_xml_curl directory URL (gateway-url). Without it every authentication fails.
    #[arg(long, env = "FSIM_XML_CURL")]
    xml_curl: Option<String>,

    /// HTTP basic credentials for the directory (gateway-credentials), `user:pass`.
    #[arg(long, env = "FSIM_XML_CURL_CREDENTIALS", value_name = "USER:PASS", value_parser = parse_credentials)]
    xml_curl_credentials: Option<(String, String)>,

    /// The `bindings` of the --xml-curl binding, as in xml_curl.conf: `directory`, or
    /// `directory|dialplan` to also serve the dialplan section from that URL.
    #[arg(long, env = "FSIM_XML_CURL_BINDINGS", default_value = "directory")]
    xml_curl_bindings: String,

    /// A second mod_xml_curl binding for the dialplan section (Switchyard:
    /// `<base>/freeswitch/dialplan`); same credentials and timeout as --xml-curl.
    #[arg(long, env = "FSIM_XML_CURL_DIALPLAN")]
    xml_curl_dialplan: Option<String>,

    /// SIP over WebSocket listen address (sofia ws-binding; port 0 = any free port). With
    /// --nodes N, node i listens on port+i-1. Off when absent.
    #[arg(long, env = "FSIM_SIP_WS")]
    sip_ws: Option<SocketAddr>,

    /// Directory request timeout in seconds (fractions allowed; 0 = no limit, FreeSWITCH's default).
    #[arg(long, env = "FSIM_XML_CURL_TIMEOUT", default_value_t = 5.0, value_parser = parse_seconds)]
    xml_curl_timeout: f64,

    /// Node name (switchname). With --nodes N the trailing digits are replaced by 1..N.
    #[arg(long, env = "FSIM_NAME", default_value = "fs1")]
    name: String,

    /// Directory domain (realm of the digest challenges). Default: the node's own default.
    #[arg(long, env = "FSIM_DOMAIN")]
    domain: Option<String>,

    /// Address of the HTTP control port (port 0 = any free port). Off when absent.
    #[arg(long, env = "FSIM_CONTROL")]
    control: Option<SocketAddr>,

    /// How many nodes to start.
    #[arg(long, env = "FSIM_NODES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    nodes: u16,

    /// FreeSWITCH configuration directory (freeswitch.xml, vars.xml, autoload_configs/...):
    /// xml_curl.conf (directory binding), event_socket.conf (listen-ip, listen-port,
    /// password), switch.conf (switchname, max-sessions, heartbeat) and the sofia profile
    /// (domain, SIP port) replace the defaults of the matching flags; flags given explicitly
    /// still win.
    #[arg(long, env = "FSIM_FREESWITCH_CONF", value_name = "DIR")]
    freeswitch_conf: Option<std::path::PathBuf>,

    /// Sets a pre-processor variable of --freeswitch-conf, winning over vars.xml (e.g.
    /// --set switchyard_url=http://127.0.0.1:8080). Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_var, requires = "freeswitch_conf")]
    vars: Vec<(String, String)>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err("expected name=value".to_owned()),
    }
}

/// Reads --freeswitch-conf and puts its values into every flag left at its default.
fn apply_freeswitch_conf(
    args: &mut Args,
    matches: &clap::ArgMatches,
) -> Result<Option<FsSettings>, StartError> {
    let Some(dir) = &args.freeswitch_conf else {
        return Ok(None);
    };
    let overrides: Overrides = args.vars.iter().cloned().collect();
    let conf = fsim::fsconf::load_dir(dir, &overrides).map_err(|source| StartError::Conf {
        dir: dir.display().to_string(),
        source,
    })?;
    let default = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
    let unset = |id: &str| matches.value_source(id).is_none();
    if default("esl") {
        args.esl = SocketAddr::new(conf.esl.listen_ip, conf.esl.listen_port);
    }
    if default("password") {
        args.password = conf.esl.password.clone();
    }
    if default("heartbeat_interval")
        && let Some(interval) = conf.heartbeat_interval
    {
        args.heartbeat_interval = interval.as_secs();
    }
    if unset("xml_curl") {
        args.xml_curl = conf.directory.url.clone();
    }
    if unset("xml_curl_credentials") {
        args.xml_curl_credentials = conf.directory.credentials.clone();
    }
    if default("xml_curl_timeout") && conf.directory.url.is_some() {
        args.xml_curl_timeout = conf.directory.timeout.as_secs_f64();
    }
    if default("name")
        && let Some(name) = &conf.switchname
    {
        args.name = name.clone();
    }
    if unset("domain") {
        args.domain = conf.domain.clone();
    }
    Ok(Some(conf))
}

fn parse_credentials(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_owned(), pass.to_owned())),
        _ => Err("expected user:pass".to_owned()),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err("expected seconds between 0 and 86400".to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("--freeswitch-conf {dir}: {source}")]
    Conf { dir: String, source: FsConfError },
    #[error("port {base} + {offset} is out of range")]
    PortRange { base: u16, offset: u16 },
    #[error("node {name}: cannot listen on {addr}: {source}")]
    Node {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("control port: cannot listen on {addr}: {source}")]
    Control {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Node names: `fs1` alone, or `<prefix>1..<prefix>N` (the name without its trailing digits).
fn node_names(name: &str, count: u16) -> Vec<String> {
    if count <= 1 {
        return vec![name.to_owned()];
    }
    let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
    (1..=count).map(|i| format!("{prefix}{i}")).collect()
}

fn node_configs(args: &Args, conf: Option<&FsSettings>) -> Result<Vec<NodeConfig>, StartError> {
    let directory = DirectoryConfig {
        url: args.xml_curl.clone().filter(|u| !u.is_empty()),
        credentials: args.xml_curl_credentials.clone(),
        timeout: Duration::from_secs_f64(args.xml_curl_timeout),
    };
    // Node i listens on base+i-1 (port 0 stays 0: each node gets a free port).
    let nth = |addr: SocketAddr, offset: u16| -> Result<SocketAddr, StartError> {
        let base = addr.port();
        let port = if base == 0 {
            0
        } else {
            base.checked_add(offset)
                .ok_or(StartError::PortRange { base, offset })?
        };
        Ok(SocketAddr::new(addr.ip(), port))
    };
    let dialplan = DirectoryConfig {
        url: args.xml_curl_dialplan.clone().filter(|u| !u.is_empty()),
        ..directory.clone()
    };
    node_names(&args.name, args.nodes)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let offset = u16::try_from(i).unwrap_or(u16::MAX);
            let mut cfg = NodeConfig::new(&name);
            // The settings without a flag (max-sessions, sofia profile); flags follow.
            if let Some(conf) = conf {
                conf.apply(&mut cfg);
                cfg.name = name.clone();
            }
            cfg.esl_listen = nth(args.esl, offset)?;
            cfg.sip_ws_listen = args.sip_ws.map(|a| nth(a, offset)).transpose()?;
            cfg.directory_bindings = args.xml_curl_bindings.clone();
            cfg.dialplan = dialplan.clone();
            cfg.password = args.password.clone();
            cfg.heartbeat_interval = Duration::from_secs(args.heartbeat_interval);
            cfg.directory = directory.clone();
            if let Some(domain) = &args.domain {
                cfg.domain = domain.clone();
            }
            Ok(cfg)
        })
        .collect()
}

/// One machine-readable line on stdout per listening address.
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal that arrives right after the
/// "listening" lines are printed is not lost) and returns the future that resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => tracing::info!("SIGINT received"),
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                    }
                }
                (int, term) => {
                    if let Err(e) = int.and(term) {
                        tracing::warn!(error = %e, "cannot watch SIGINT/SIGTERM; falling back to ctrl_c");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(mut args: Args, matches: clap::ArgMatches) -> Result<(), StartError> {
    let shutdown = shutdown_signal();
    let conf = apply_freeswitch_conf(&mut args, &matches)?;
    if let Some(conf) = &conf {
        tracing::info!(dir = ?args.freeswitch_conf, dialplan_url = ?conf.dialplan_url, "settings from --freeswitch-conf");
    }
    let configs = node_configs(&args, conf.as_ref())?;
    let mut nodes: Vec<SimNode> = Vec::with_capacity(configs.len());
    for cfg in configs {
        let (name, addr) = (cfg.name.clone(), cfg.esl_listen);
        match SimNode::start(cfg).await {
            Ok(node) => {
                tracing::info!(node = %node.name(), esl = %node.esl_addr(), core_uuid = %node.core_uuid(), "node listening");
                announce(&format!(
                    "listening esl {} {}",
                    node.name(),
                    node.esl_addr()
                ));
                if let Some(ws) = node.sip_ws_addr() {
                    tracing::info!(node = %node.name(), sip_ws = %ws, "SIP over WebSocket listening");
                    announce(&format!("listening sip-ws {} ws://{ws}", node.name()));
                }
                nodes.push(node);
            }
            Err(source) => {
                for node in nodes {
                    node.shutdown().await;
                }
                return Err(StartError::Node { name, addr, source });
            }
        }
    }
    match &args.xml_curl {
        Some(url) => {
            tracing::info!(%url, timeout_s = args.xml_curl_timeout, "directory via mod_xml_curl")
        }
        None => tracing::warn!("no --xml-curl: every SIP authentication will fail"),
    }

    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control = match args.control {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(addr);
                tracing::info!(addr = %local, "control port listening");
                announce(&format!("listening control http://{local}"));
                let nodes = nodes.clone();
                Some(tokio::spawn(async move {
                    let stop = async {
                        let _ = control_stopped.await;
                    };
                    if let Err(e) = fsim::control::serve(listener, nodes, stop).await {
                        tracing::error!(error = %e, "control port failed");
                    }
                }))
            }
            Err(source) => {
                for node in nodes {
                    node.shutdown().await;
                }
                return Err(StartError::Control { addr, source });
            }
        },
        None => None,
    };

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_control.send(());
    if let Some(task) = control {
        // Open keep-alive connections must not hold the exit up for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    tracing::info!("bye");
    Ok(())
}

fn main() -> ExitCode {
    // The matches tell which flags were given (they win over --freeswitch-conf).
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fsim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("fsim: {e}");
            ExitCode::FAILURE
        }
    }
}
