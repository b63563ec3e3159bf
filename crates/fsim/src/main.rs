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
//! listening control http://127.0.0.1:8031
//! ```
//!
//! Logs go to stderr (tracing; `RUST_LOG` filters, default `info`). SIGINT/SIGTERM shut every
//! node down the FreeSWITCH way (SHUTDOWN event, then the "The system is being shut down."
//! disconnect notice on every ESL connection) and exit 0.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fsim::directory::DirectoryConfig;
use fsim::node::{NodeConfig, SimNode};

/// FreeSWITCH simulator: ESL (mod_event_socket), mod_conference and the mod_xml_curl directory.
#[derive(Debug, Parser)]
#[command(name = "fsim", version, about)]
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
    #[error("ESL port {base} + {offset} is out of range")]
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

fn node_configs(args: &Args) -> Result<Vec<NodeConfig>, StartError> {
    let directory = DirectoryConfig {
        url: args.xml_curl.clone().filter(|u| !u.is_empty()),
        credentials: args.xml_curl_credentials.clone(),
        timeout: Duration::from_secs_f64(args.xml_curl_timeout),
    };
    node_names(&args.name, args.nodes)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let offset = u16::try_from(i).unwrap_or(u16::MAX);
            let base = args.esl.port();
            let port = if base == 0 {
                0
            } else {
                base.checked_add(offset)
                    .ok_or(StartError::PortRange { base, offset })?
            };
            let mut cfg = NodeConfig::new(&name);
            cfg.esl_listen = SocketAddr::new(args.esl.ip(), port);
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

async fn run(args: Args) -> Result<(), StartError> {
    let shutdown = shutdown_signal();
    let configs = node_configs(&args)?;
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
    let args = Args::parse();
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("fsim: {e}");
            ExitCode::FAILURE
        }
    }
}
