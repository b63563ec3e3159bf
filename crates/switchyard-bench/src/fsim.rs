//! The `fsim` binary as the FreeSWITCH pool of the API benchmark: N simulated nodes, their
//! mod_xml_curl directory pointed at Switchyard, and the HTTP control port through which calls
//! are placed. Killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// ESL password of every simulated node.
pub const ESL_PASSWORD: &str = "ClueCon";

/// How the simulator is started.
#[derive(Debug, Clone)]
pub struct FsimOptions {
    pub nodes: usize,
    /// Seconds between HEARTBEATs.
    pub heartbeat_secs: u64,
    /// Switchyard's `/freeswitch/directory` URL.
    pub xml_curl: String,
    /// `user:pass` of the directory (Switchyard's `[freeswitch]`).
    pub xml_curl_credentials: String,
    /// The core it is pinned to.
    pub cpu: usize,
}

impl FsimOptions {
    /// Nodes whose directory is the bench switchyard on `port` (with the node credentials of
    /// [`crate::servers::SwitchyardConfig`]).
    pub fn for_switchyard(nodes: usize, heartbeat_secs: u64, port: u16, cpu: usize) -> Self {
        use crate::corpus::{NODE_PASSWORD, NODE_USER};
        Self {
            nodes,
            heartbeat_secs,
            xml_curl: format!("http://127.0.0.1:{port}/freeswitch/directory"),
            xml_curl_credentials: format!("{NODE_USER}:{NODE_PASSWORD}"),
            cpu,
        }
    }
}

/// A running fsim.
#[derive(Debug)]
pub struct Fsim {
    pub pid: u32,
    /// Node name and ESL address, in order (`fs1`…`fsN`).
    pub nodes: Vec<(String, SocketAddr)>,
    pub control: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Fsim {
    /// Starts `bin`; returns once it printed every ESL address and its control address.
    pub async fn start(bin: &Path, dir: &Path, options: &FsimOptions) -> anyhow::Result<Self> {
        let log = dir.join("fsim.log");
        let stderr = std::fs::File::create(&log).context("creating the fsim log")?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(options.cpu.to_string())
            .arg(bin)
            .args(["--nodes", &options.nodes.to_string()])
            .args(["--esl", "127.0.0.1:0"])
            .args(["--password", ESL_PASSWORD])
            .args(["--heartbeat-interval", &options.heartbeat_secs.to_string()])
            .args(["--xml-curl", &options.xml_curl])
            .args(["--xml-curl-credentials", &options.xml_curl_credentials])
            .args(["--control", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("fsim exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut nodes = Vec::with_capacity(options.nodes);
        let mut control = None;
        let read_all = async {
            while nodes.len() < options.nodes || control.is_none() {
                let Some(line) = lines.next_line().await.context("reading fsim's stdout")? else {
                    bail!("fsim closed its stdout");
                };
                if let Some(rest) = line.strip_prefix("listening esl ") {
                    let (name, addr) = rest.split_once(' ').context("esl line")?;
                    nodes.push((name.to_owned(), addr.parse().context("esl address")?));
                } else if let Some(addr) = line.strip_prefix("listening control http://") {
                    control = Some(addr.parse().context("control address")?);
                }
            }
            Ok(())
        };
        let read = tokio::time::timeout(Duration::from_secs(30), read_all).await;
        if !matches!(read, Ok(Ok(()))) {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            match read {
                Ok(Err(e)) => bail!("fsim did not start: {e:#}; its log:\n{log_text}"),
                _ => bail!("fsim did not print its addresses within 30 s; its log:\n{log_text}"),
            }
        }
        let control = control.context("no control address")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            pid,
            nodes,
            control,
            log,
            child,
        })
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
