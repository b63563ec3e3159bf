//! Browser event channel benchmark (`just bench-events`): chat fan-out over `GET /v1/events`
//! and the memory of open channels, each side by side with a minimal tokio-tungstenite
//! broadcast server (the reference) driven by the same client code in the same run.
//!
//! 1. Users: N users (`u00000`…) are inserted through `switchyard::store::Store` before the
//!    service starts (fresh SQLite file). Processes: `fsim --nodes 1` (a conference needs a
//!    node) and `target/release/switchyard` with a generated config (defaults for `[events]`,
//!    demo off, an API key with users:write, credentials:issue, conferences:write and the read
//!    scopes), pinned to `<server cpu>`; this process (one thread) and fsim on `<client cpu>`.
//!    Setup: one session token per user (`POST /v1/users/{id}/session-tokens`), and the first K
//!    users invited to conference `chat0` (places it on the fsim node). Invitations come before
//!    any channel is open, so no `invited` event is sent during the runs.
//! 2. The reference: this binary started again with `--reference-server` (hidden), pinned to
//!    the server core: accepts WebSockets, answers the first text frame with a fixed `welcome`,
//!    then sends every text frame it receives to every open connection, the sender included
//!    (Switchyard sends a chat message to the sender too), through a queue of 512 per
//!    connection (Switchyard's per-channel queue).
//! 3. Memory: VmRSS of the server before and after opening N idle channels (hello → welcome,
//!    1 s settle) → KiB per open channel. Switchyard first, then the reference.
//! 4. Fan-out: K channels (users 0…K-1, the audience) open; S of them send `message` frames
//!    (`{"type":"message","conference":"chat0","text":<T chars>,"id":<send time µs>}`) at
//!    `--rate` per second each (open loop, phases spread; under the server's limit of 5/s per
//!    channel with bursts of 10) for `--secs`; every channel counts the `message` frames it
//!    gets and the latency from the send time carried in `id`. A run ends when every channel got
//!    every message sent, or `--drain-secs` after the last send. Rate = delivered frames / time
//!    from the first send to the last delivery; server CPU-µs per delivered frame from /proc.
//!    Each level (`--senders`) runs on the reference, then on Switchyard.
//! 5. The tables go to stdout and to target/bench-data/events.md.
//!
//! Options: --users N (1000, idle channels of the memory run) --receivers K (100)
//! --senders S1,S2 (10,100; each ≤ K) --rate R (4.5 messages/s per sender) --secs S (6)
//! --drain-secs S (10) --text-chars T (100) --connect-concurrency N (64) --server-cpu N (0)
//! --client-cpu N (1) --switchyard PATH --fsim PATH --out PATH --quick (≈ 20 s smoke run).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use futures_util::{SinkExt as _, StreamExt as _};
use memchr::memmem;
use switchyard::store::{Store, StoreOptions, UpsertUser};
use switchyard_bench::cli;
use switchyard_bench::fsim::{Fsim, FsimOptions};
use switchyard_bench::procstat;
use switchyard_bench::rest::Client;
use switchyard_bench::servers::{self, Server, SwitchyardConfig};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The conference of the fan-out runs.
const CONFERENCE: &str = "chat0";
/// fsim's HEARTBEAT interval (only to get the node up quickly).
const HEARTBEAT_SECS: u64 = 1;
/// Scopes of the bench API key: users, tokens, the node list and invitations.
const SCOPES: &[&str] = &[
    "users:read",
    "users:write",
    "credentials:issue",
    "nodes:read",
    "conferences:read",
    "conferences:write",
];
/// Per-connection queue of the reference (Switchyard's `CHANNEL_QUEUE`).
const REFERENCE_QUEUE: usize = 512;
/// The reference's answer to the first frame.
const REFERENCE_WELCOME: &str = r#"{"type":"welcome","user_id":"ref","seq":0}"#;
/// Switchyard's sustained chat limit per channel (docs/events.md).
const SERVER_RATE_LIMIT: f64 = 5.0;

#[derive(Debug, Clone)]
struct Args {
    users: usize,
    receivers: usize,
    senders: Vec<usize>,
    rate: f64,
    secs: f64,
    drain_secs: f64,
    text_chars: usize,
    connect_concurrency: usize,
    server_cpu: usize,
    client_cpu: usize,
    switchyard: Option<PathBuf>,
    fsim: Option<PathBuf>,
    out: Option<PathBuf>,
    quick: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            users: 1000,
            receivers: 100,
            senders: vec![10, 100],
            rate: 4.5,
            secs: 6.0,
            drain_secs: 10.0,
            text_chars: 100,
            connect_concurrency: 64,
            server_cpu: 0,
            client_cpu: 1,
            switchyard: None,
            fsim: None,
            out: None,
            quick: false,
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        cli::exit_on_help(&flag, include_str!("events-bench.rs"));
        if flag == "--quick" {
            args.quick = true;
            args.users = 300;
            args.receivers = 50;
            args.senders = vec![50];
            args.secs = 3.0;
            args.drain_secs = 5.0;
            continue;
        }
        let value = cli::value(&mut it, &flag)?;
        let num = |v: &str| cli::number(&flag, v);
        match flag.as_str() {
            "--users" => args.users = num(&value)? as usize,
            "--receivers" => args.receivers = num(&value)? as usize,
            "--senders" => {
                args.senders = value
                    .split(',')
                    .map(|v| num(v).map(|n| n as usize))
                    .collect::<anyhow::Result<_>>()?
            }
            "--rate" => args.rate = num(&value)?,
            "--secs" => args.secs = num(&value)?,
            "--drain-secs" => args.drain_secs = num(&value)?,
            "--text-chars" => args.text_chars = num(&value)? as usize,
            "--connect-concurrency" => args.connect_concurrency = (num(&value)? as usize).max(1),
            "--server-cpu" => args.server_cpu = num(&value)? as usize,
            "--client-cpu" => args.client_cpu = num(&value)? as usize,
            "--switchyard" => args.switchyard = Some(value.into()),
            "--fsim" => args.fsim = Some(value.into()),
            "--out" => args.out = Some(value.into()),
            _ => bail!("unknown option {flag} (see --help)"),
        }
    }
    ensure!(args.receivers >= 1, "--receivers must be at least 1");
    ensure!(
        args.users >= args.receivers,
        "--users must be at least --receivers (the audience is users 0…K-1)"
    );
    ensure!(
        args.senders.iter().all(|&s| s >= 1 && s <= args.receivers),
        "--senders: every level must be 1…--receivers (senders are audience members)"
    );
    ensure!(
        args.rate > 0.0 && args.rate <= SERVER_RATE_LIMIT,
        "--rate must be in (0, {SERVER_RATE_LIMIT}] (Switchyard refuses more per channel)"
    );
    ensure!(
        args.text_chars >= 1 && args.text_chars <= 2000,
        "--text-chars must be 1…2000 (events.max_message_chars)"
    );
    ensure!(args.secs > 0.0, "--secs must be positive");
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if std::env::args().nth(1).as_deref() == Some("--reference-server") {
        // Started by the bench itself under `taskset`.
        return runtime.block_on(reference_server());
    }
    let args = parse_args()?;
    if !cli::pin_self(args.client_cpu) {
        eprintln!(
            "warning: cannot pin the load generator to CPU {}",
            args.client_cpu
        );
    }
    runtime.block_on(run(args))
}

fn user_id(i: usize) -> String {
    format!("u{i:05}")
}

// ---------------------------------------------------------------------------------------------
// The reference server.

/// Switchyard's `READ_BUFFER_BYTES` (crates/switchyard/src/http/events.rs).
const REFERENCE_READ_BUFFER: usize = 4 * 1024;

type Peers = Arc<Mutex<HashMap<u64, tokio::sync::mpsc::Sender<Message>>>>;

async fn reference_server() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the reference")?;
    println!("listening on http://{}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let peers = peers.clone();
        tokio::spawn(async move {
            let _ = reference_connection(stream, id, &peers).await;
            if let Ok(mut p) = peers.lock() {
                p.remove(&id);
            }
        });
    }
}

async fn reference_connection(stream: TcpStream, id: u64, peers: &Peers) -> anyhow::Result<()> {
    // The same read buffer as Switchyard's channels (tungstenite's default is 128 KiB), so
    // that the memory ratio compares per-connection state, not buffer settings.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(REFERENCE_READ_BUFFER);
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => return Ok(()),
        }
    }
    ws.send(Message::text(REFERENCE_WELCOME)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(REFERENCE_QUEUE);
    peers
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(id, tx);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => ws.send(msg).await?,
                None => return Ok(()),
            },
            received = ws.next() => match received {
                Some(Ok(Message::Text(text))) => {
                    let mut p = peers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    // A full queue drops the connection (Switchyard closes it `too_slow`).
                    p.retain(|_, tx| tx.try_send(Message::Text(text.clone())).is_ok());
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Ok(()),
            },
        }
    }
}

/// The reference process (this binary with `--reference-server`) pinned to `cpu`.
struct Reference {
    addr: SocketAddr,
    pid: u32,
    child: Child,
}

impl Reference {
    async fn start(cpu: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(cpu.to_string())
            .arg(exe)
            .arg("--reference-server")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the reference server")?;
        let pid = child.id().context("the reference exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the reference did not print its address")??
            .context("the reference closed its stdout")?;
        let addr = line
            .strip_prefix("listening on http://")
            .context("the reference's address line")?
            .parse()
            .context("the reference's address")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { addr, pid, child })
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

type Ws = WebSocketStream<TcpStream>;

/// Opens `/v1/events`, sends `hello` with `token`, waits for `welcome`.
async fn open_channel(addr: SocketAddr, token: &str) -> anyhow::Result<Ws> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/v1/events");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("WebSocket handshake")?;
    ws.send(Message::text(format!(
        r#"{{"type":"hello","token":"{token}"}}"#
    )))
    .await?;
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => bail!("no welcome: {other:?}"),
            }
        }
    })
    .await
    .context("no welcome within 30 s")??;
    ensure!(
        first.contains(r#""type":"welcome""#),
        "expected welcome, got {first}"
    );
    Ok(ws)
}

/// Opens one channel per token, `concurrency` handshakes at a time.
async fn open_channels(
    addr: SocketAddr,
    tokens: &[String],
    concurrency: usize,
) -> anyhow::Result<Vec<Ws>> {
    let opened: Vec<anyhow::Result<Ws>> = futures_util::stream::iter(tokens)
        .map(|token| open_channel(addr, token))
        .buffered(concurrency)
        .collect()
        .await;
    opened.into_iter().collect()
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    channels: usize,
    before_kib: u64,
    after_kib: u64,
    open_secs: f64,
}

impl Memory {
    fn per_channel_kib(&self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) / self.channels.max(1) as f64
    }
}

async fn measure_memory(
    addr: SocketAddr,
    pid: u32,
    tokens: &[String],
    concurrency: usize,
) -> anyhow::Result<Memory> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = rss_kib(pid)?;
    let t = Instant::now();
    let channels = open_channels(addr, tokens, concurrency).await?;
    let open_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = rss_kib(pid)?;
    let n = channels.len();
    for mut ws in channels {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Memory {
        channels: n,
        before_kib,
        after_kib,
        open_secs,
    })
}

/// One fan-out run's figures.
#[derive(Debug, Default)]
struct FanRun {
    server: &'static str,
    senders: usize,
    channels: usize,
    sent: u64,
    delivered: u64,
    expected: u64,
    /// `error` frames (rate_limited, …).
    errors: u64,
    /// Channels that ended before the run did (closed by the server).
    closed: usize,
    elapsed_secs: f64,
    send_secs: f64,
    /// Send → receive, µs, sorted.
    latencies: Vec<u64>,
    frame_bytes: u64,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl FanRun {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed_secs.max(1e-9)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1] as f64
    }
    fn cpu_per_frame_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }
}

/// Shared state of one run's connections (one thread: `Cell`s).
struct RunState {
    epoch: Instant,
    sent: Cell<u64>,
    senders_done: Cell<usize>,
    delivered: Cell<u64>,
    errors: Cell<u64>,
    closed: Cell<usize>,
    frame_bytes: Cell<u64>,
    first_send: Cell<Option<Instant>>,
    last_delivery: Cell<Option<Instant>>,
    latencies: RefCell<Vec<u64>>,
}

/// The send time (µs since the epoch) in a message frame's `id`.
fn sent_at(frame: &[u8]) -> Option<u64> {
    let key = br#""id":""#;
    let start = memmem::find(frame, key)? + key.len();
    let rest = frame.get(start..)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut ws: Ws,
    state: &RunState,
    sender: Option<usize>,
    senders: usize,
    interval: Duration,
    send_until: Instant,
    text: &str,
    deadline: Instant,
) {
    let is_message = memmem::Finder::new(br#""type":"message""#);
    let is_error = memmem::Finder::new(br#""type":"error""#);
    let start = state.epoch + Duration::from_millis(200);
    let mut next_send = sender.map(|i| start + interval.mul_f64(i as f64 / senders as f64));
    let mut received = 0u64;
    let mut check = tokio::time::interval(Duration::from_millis(50));
    loop {
        let send_at = next_send.unwrap_or(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(send_at.into()), if next_send.is_some() => {
                if send_at >= send_until {
                    next_send = None;
                    state.senders_done.set(state.senders_done.get() + 1);
                    continue;
                }
                let now = Instant::now();
                if state.first_send.get().is_none() {
                    state.first_send.set(Some(now));
                }
                let micros = now.duration_since(state.epoch).as_micros();
                let frame = format!(
                    r#"{{"type":"message","conference":"{CONFERENCE}","text":"{text}","id":"{micros}"}}"#
                );
                if ws.send(Message::text(frame)).await.is_err() {
                    state.closed.set(state.closed.get() + 1);
                    state.senders_done.set(state.senders_done.get() + 1);
                    return;
                }
                state.sent.set(state.sent.get() + 1);
                next_send = Some(send_at + interval);
            }
            received_frame = ws.next() => match received_frame {
                Some(Ok(Message::Text(frame))) => {
                    let bytes = frame.as_bytes();
                    if is_message.find(bytes).is_some() {
                        let now = Instant::now();
                        received += 1;
                        state.delivered.set(state.delivered.get() + 1);
                        state.frame_bytes.set(state.frame_bytes.get() + bytes.len() as u64);
                        state.last_delivery.set(Some(now));
                        if let Some(at) = sent_at(bytes) {
                            let latency = (now.duration_since(state.epoch).as_micros() as u64).saturating_sub(at);
                            state.latencies.borrow_mut().push(latency);
                        }
                    } else if is_error.find(bytes).is_some() {
                        if state.errors.get() < 3 {
                            eprintln!("  error frame: {frame}");
                        }
                        state.errors.set(state.errors.get() + 1);
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    state.closed.set(state.closed.get() + 1);
                    if next_send.is_some() {
                        state.senders_done.set(state.senders_done.get() + 1);
                    }
                    return;
                }
            },
            _ = check.tick() => {
                if Instant::now() >= deadline {
                    break;
                }
                if next_send.is_none()
                    && state.senders_done.get() == senders
                    && received >= state.sent.get()
                {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

/// One fan-out run: `channels` open, the first `senders` of them send.
#[allow(clippy::too_many_arguments)]
async fn fan_out(
    server: &'static str,
    addr: SocketAddr,
    pid: u32,
    tokens: &[String],
    senders: usize,
    args: &Args,
    text: &str,
) -> anyhow::Result<FanRun> {
    let channels = open_channels(addr, tokens, args.connect_concurrency).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let epoch = Instant::now();
    let state = RunState {
        epoch,
        sent: Cell::new(0),
        senders_done: Cell::new(0),
        delivered: Cell::new(0),
        errors: Cell::new(0),
        closed: Cell::new(0),
        frame_bytes: Cell::new(0),
        first_send: Cell::new(None),
        last_delivery: Cell::new(None),
        latencies: RefCell::new(Vec::new()),
    };
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let send_until = epoch + Duration::from_millis(200) + Duration::from_secs_f64(args.secs);
    let deadline = send_until + Duration::from_secs_f64(args.drain_secs);
    let n = channels.len();
    let cpu0 = procstat::process_cpu(pid)?;
    let self0 = procstat::self_cpu()?;
    futures_util::future::join_all(channels.into_iter().enumerate().map(|(i, ws)| {
        connection(
            ws,
            &state,
            (i < senders).then_some(i),
            senders,
            interval,
            send_until,
            text,
            deadline,
        )
    }))
    .await;
    let server_cpu = procstat::process_cpu(pid)?.since(cpu0);
    let client_cpu = procstat::self_cpu()?.since(self0);
    let first = state.first_send.get().unwrap_or(epoch);
    let last = state.last_delivery.get().unwrap_or(first);
    let mut latencies = state.latencies.into_inner();
    latencies.sort_unstable();
    let sent = state.sent.get();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(FanRun {
        server,
        senders,
        channels: n,
        sent,
        delivered: state.delivered.get(),
        expected: sent * n as u64,
        errors: state.errors.get(),
        closed: state.closed.get(),
        elapsed_secs: last.duration_since(first).as_secs_f64(),
        send_secs: args.secs,
        latencies,
        frame_bytes: state.frame_bytes.get(),
        server_cpu,
        client_cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// Setup.

async fn seed_users(url: &str, n: usize) -> anyhow::Result<()> {
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(url, &options)
        .await
        .context("opening the bench database")?;
    for i in 0..n {
        store
            .upsert_user(&UpsertUser {
                id: user_id(i),
                display_name: format!("Bench User {i}"),
                enabled: true,
            })
            .await
            .context("upsert_user")?;
    }
    store.close().await;
    Ok(())
}

async fn issue_tokens(client: &mut Client, n: usize) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let json = client
            .json(
                "POST",
                &format!("/v1/users/{}/session-tokens", user_id(i)),
                Some(r#"{"ttl_secs":7200}"#),
                201,
            )
            .await?;
        tokens.push(
            json.get("token")
                .and_then(|t| t.as_str())
                .context("session token answer without token")?
                .to_owned(),
        );
    }
    Ok(tokens)
}

async fn invite(client: &mut Client, k: usize) -> anyhow::Result<()> {
    for i in 0..k {
        let body = format!(
            r#"{{"user_id":"{}","caller_id":"Bench","message":"chat"}}"#,
            user_id(i)
        );
        client
            .json(
                "POST",
                &format!("/v1/conferences/{CONFERENCE}/invitations"),
                Some(&body),
                201,
            )
            .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Measured {
    sy_memory: Memory,
    ref_memory: Memory,
    /// (reference, switchyard) per level.
    runs: Vec<(FanRun, FanRun)>,
    setup_secs: f64,
    sy_log_problems: Vec<String>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let target_dir = cli::target_dir();
    let bin = |explicit: &Option<PathBuf>, name: &str| -> anyhow::Result<PathBuf> {
        let path = explicit
            .clone()
            .unwrap_or_else(|| target_dir.join("release").join(name));
        ensure!(
            path.is_file(),
            "{} not found: run `cargo build --release -p switchyard -p fsim` first (or pass --{name})",
            path.display()
        );
        Ok(path)
    };
    let sy_bin = bin(&args.switchyard, "switchyard")?;
    let fsim_bin = bin(&args.fsim, "fsim")?;
    let machine_start = machine();
    let dir = tempfile::tempdir().context("temp dir")?;
    let dir = dir.path();

    let t = Instant::now();
    let database_url = servers::database_url(dir);
    seed_users(&database_url, args.users).await?;
    let port = servers::free_port()?;
    let fsim = Fsim::start(
        &fsim_bin,
        dir,
        &FsimOptions::for_switchyard(1, HEARTBEAT_SECS, port, args.client_cpu),
    )
    .await?;
    let config = SwitchyardConfig {
        port,
        scopes: SCOPES,
        nodes: &fsim.nodes,
        ..SwitchyardConfig::new("events-bench", dir)
    };
    let sy = servers::start_switchyard(&sy_bin, dir, args.server_cpu, &config).await?;
    let reference = Reference::start(args.server_cpu).await?;
    let result = measure(&args, &sy, &reference, t).await;
    let sy_log = std::fs::read_to_string(&sy.log).unwrap_or_default();
    sy.stop().await;
    fsim.stop().await;
    reference.stop().await;
    let mut measured = result?;
    measured.sy_log_problems = sy_log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .map(|l| l.chars().take(300).collect())
        .collect();
    let text = report(
        &args,
        &measured,
        &machine_start,
        &machine(),
        started.elapsed().as_secs_f64(),
    );
    println!("{text}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-data/events.md"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("written to {}", out.display());
    let lost: u64 = measured
        .runs
        .iter()
        .map(|(_, sy)| sy.expected.saturating_sub(sy.delivered) + sy.errors)
        .sum();
    ensure!(
        lost == 0,
        "switchyard lost or refused {lost} deliveries (see the table)"
    );
    Ok(())
}

async fn measure(
    args: &Args,
    sy: &Server,
    reference: &Reference,
    t: Instant,
) -> anyhow::Result<Measured> {
    let mut admin = Client::new(sy.addr);
    admin.wait_nodes_up(1).await?;
    let tokens = issue_tokens(&mut admin, args.users).await?;
    invite(&mut admin, args.receivers).await?;
    let setup_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} users, {} tokens, {} invitations in {setup_secs:.1} s",
        args.users, args.users, args.receivers
    );
    // Memory: Switchyard, then the reference (its tokens are ignored).
    let sy_memory = measure_memory(sy.addr, sy.pid, &tokens, args.connect_concurrency).await?;
    eprintln!(
        "switchyard: {} idle channels, {:.1} KiB each",
        sy_memory.channels,
        sy_memory.per_channel_kib()
    );
    let ref_memory = measure_memory(
        reference.addr,
        reference.pid,
        &tokens,
        args.connect_concurrency,
    )
    .await?;
    eprintln!(
        "reference: {} idle connections, {:.1} KiB each",
        ref_memory.channels,
        ref_memory.per_channel_kib()
    );
    let text = "x".repeat(args.text_chars);
    let audience = tokens.get(..args.receivers).context("receivers")?;
    let mut runs = Vec::new();
    for &senders in &args.senders {
        let r = fan_out(
            "reference",
            reference.addr,
            reference.pid,
            audience,
            senders,
            args,
            &text,
        )
        .await?;
        log_run(&r);
        let s = fan_out(
            "switchyard",
            sy.addr,
            sy.pid,
            audience,
            senders,
            args,
            &text,
        )
        .await?;
        log_run(&s);
        runs.push((r, s));
    }
    Ok(Measured {
        sy_memory,
        ref_memory,
        runs,
        setup_secs,
        sy_log_problems: Vec::new(),
    })
}

fn log_run(r: &FanRun) {
    eprintln!(
        "{} senders={} sent={} delivered={}/{} rate={:.0}/s p50={} p99={} ms errors={} closed={}",
        r.server,
        r.senders,
        r.sent,
        r.delivered,
        r.expected,
        r.rate(),
        ms(r.pct(0.5)),
        ms(r.pct(0.99)),
        r.errors,
        r.closed
    );
}

// ---------------------------------------------------------------------------------------------
// Report.

struct Machine {
    cores: usize,
    loadavg: String,
}

fn machine() -> Machine {
    Machine {
        cores: nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .map_or(0, |n| n as usize),
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".to_owned()
    } else if us < 10_000.0 {
        format!("{:.2}", us / 1e3)
    } else {
        format!("{:.1}", us / 1e3)
    }
}

/// A ratio with 3 significant digits.
fn ratio(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "–".to_owned();
    }
    let digits = (2 - x.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.digits$}")
}

fn report(a: &Args, m: &Measured, start: &Machine, end: &Machine, total_secs: f64) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# Browser event channel benchmark (`GET /v1/events`)\n");
    let _ = writeln!(
        r,
        "Generated by `just bench-events`{} ({}) in {total_secs:.0} s. {} cores (load average {} \
         at the start, {} at the end; the machine is shared: compare within one run only). \
         switchyard (release, SQLite, one fsim node, `[events]` defaults: 5 messages/s per channel \
         with bursts of 10, queue of 512 per channel, log filter `info` as JSON to a file) and the \
         reference (a tokio-tungstenite broadcast server inside the bench binary, one thread, \
         same 512-frame queue and 4 KiB read buffer per connection) on core {}; the load generator (one thread) and fsim \
         on core {}. Both servers get the same client frames; Switchyard's delivered frames carry \
         `seq`, `from`, `message_id` and `at` on top, the reference forwards the client frame as \
         is. Ratios: rate sy/ref, CPU per frame and p99 ref/sy (1.00 = as fast as the \
         reference), memory sy/ref. Setup ({} users, {} session tokens, {} invitations to \
         `{CONFERENCE}`) took {:.1} s.\n",
        if a.quick { " --quick" } else { "" },
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        start.cores,
        start.loadavg,
        end.loadavg,
        a.server_cpu,
        a.client_cpu,
        a.users,
        a.users,
        a.receivers,
        m.setup_secs,
    );
    let _ = writeln!(r, "## Summary\n");
    let _ = writeln!(
        r,
        "| figure | switchyard | reference | ratio |\n|---|---:|---:|---:|"
    );
    for (re, sy) in &m.runs {
        let _ = writeln!(
            r,
            "| delivered frames/s, {} senders × {} msg/s → {} channels | {:.0} | {:.0} | {} |",
            sy.senders,
            a.rate,
            sy.channels,
            sy.rate(),
            re.rate(),
            ratio(sy.rate() / re.rate())
        );
        let _ = writeln!(
            r,
            "| send→receive p99 ms, {} senders | {} | {} | {} |",
            sy.senders,
            ms(sy.pct(0.99)),
            ms(re.pct(0.99)),
            ratio(re.pct(0.99) / sy.pct(0.99))
        );
        let _ = writeln!(
            r,
            "| server CPU-µs per delivered frame, {} senders | {:.2} | {:.2} | {} |",
            sy.senders,
            sy.cpu_per_frame_us(),
            re.cpu_per_frame_us(),
            ratio(re.cpu_per_frame_us() / sy.cpu_per_frame_us())
        );
    }
    let _ = writeln!(
        r,
        "| KiB RSS per open idle channel ({} channels) | {:.1} | {:.1} | {} |\n",
        m.sy_memory.channels,
        m.sy_memory.per_channel_kib(),
        m.ref_memory.per_channel_kib(),
        ratio(m.sy_memory.per_channel_kib() / m.ref_memory.per_channel_kib())
    );

    let _ = writeln!(r, "## Fan-out\n");
    let _ = writeln!(
        r,
        "{} channels (users 0…{}, all invited to `{CONFERENCE}`) open; the first S send `message` \
         frames with a {}-character text at {} per second each for {:.1} s (open loop, phases \
         spread), each delivered to all {} channels (the sender included). Latency from the send \
         time (in the frame's `id`) to the receipt, over every delivery. Rate = delivered frames \
         / (last delivery − first send). Server CPU % of one core over the run.\n",
        a.receivers,
        a.receivers - 1,
        a.text_chars,
        a.rate,
        a.secs,
        a.receivers,
    );
    let _ = writeln!(
        r,
        "| senders | server | msgs sent | delivered / expected | frames/s | ratio | p50 ms | p99 ms | max ms | p99 ratio (ref/sy) | bytes/frame | CPU-µs/frame | CPU ratio (ref/sy) | server CPU % | client CPU % | error frames | closed early |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (re, sy) in &m.runs {
        for run in [re, sy] {
            let is_sy = run.server == "switchyard";
            let wall = run.elapsed_secs.max(run.send_secs);
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} / {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {} | {:.0} | {:.0} | {} | {} |",
                run.senders,
                run.server,
                run.sent,
                run.delivered,
                run.expected,
                run.rate(),
                if is_sy {
                    ratio(sy.rate() / re.rate())
                } else {
                    String::new()
                },
                ms(run.pct(0.5)),
                ms(run.pct(0.99)),
                ms(run.pct(1.0)),
                if is_sy {
                    ratio(re.pct(0.99) / sy.pct(0.99))
                } else {
                    String::new()
                },
                run.frame_bytes as f64 / run.delivered.max(1) as f64,
                run.cpu_per_frame_us(),
                if is_sy {
                    ratio(re.cpu_per_frame_us() / sy.cpu_per_frame_us())
                } else {
                    String::new()
                },
                run.server_cpu.as_secs_f64() * 100.0 / wall,
                run.client_cpu.as_secs_f64() * 100.0 / wall,
                run.errors,
                run.closed,
            );
        }
    }
    let _ = writeln!(r, "\n## Memory of open channels\n");
    let _ = writeln!(
        r,
        "VmRSS of the server process before and 1 s after opening the channels (hello → welcome; \
         Switchyard checks each token in the database and registers the channel in the hub), \
         {} handshakes at a time.\n",
        a.connect_concurrency
    );
    let _ = writeln!(
        r,
        "| server | channels | RSS before KiB | RSS after KiB | KiB per channel | ratio (sy/ref) | open time s |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (name, mem) in [("reference", &m.ref_memory), ("switchyard", &m.sy_memory)] {
        let _ = writeln!(
            r,
            "| {name} | {} | {} | {} | {:.1} | {} | {:.2} |",
            mem.channels,
            mem.before_kib,
            mem.after_kib,
            mem.per_channel_kib(),
            if name == "switchyard" {
                ratio(m.sy_memory.per_channel_kib() / m.ref_memory.per_channel_kib())
            } else {
                String::new()
            },
            mem.open_secs,
        );
    }
    let _ = writeln!(
        r,
        "\nSwitchyard log: {} WARN/ERROR lines.",
        m.sy_log_problems.len()
    );
    for line in m.sy_log_problems.iter().take(5) {
        let _ = writeln!(r, "    {line}");
    }
    r
}
