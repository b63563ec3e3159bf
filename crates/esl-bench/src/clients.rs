//! The measured consumers. Each runs in its own child process (`esl-ingest --child KIND ADDR`),
//! pinned to one CPU, on a current-thread tokio runtime (the raw reader uses a blocking socket),
//! and reports one JSON line: events, time, CPU time, peak RSS.
//!
//! Every consumer does the same work per event: it takes the parsed event from its library and
//! asks whether it is a conference::maintenance event with an `Action` (counted separately).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::measure;

/// The consumers `--child` accepts.
pub const KINDS: &[&str] = &["raw", "ours", "ours-sansio", "fet", "eslrs"];

/// What a child measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildReport {
    /// The consumer (`raw`, `ours`, ...).
    pub kind: String,
    /// Events delivered to the consumer (the raw reader: 0, it only counts bytes).
    pub events: u64,
    /// Of which conference::maintenance.
    pub conference: u64,
    /// Bytes read from the socket (raw reader only; others 0).
    pub bytes: u64,
    /// Wall time from before connecting to the end of the stream.
    pub secs: f64,
    /// Wall time from the end of the pause to the end of the stream (backlog runs).
    pub drain_secs: f64,
    /// CPU time (user + system) over the same span.
    pub cpu_secs: f64,
    /// Peak RSS of the child (VmHWM), KiB.
    pub vm_hwm_kib: u64,
    /// RSS right after the pause (backlog runs), KiB.
    pub rss_after_pause_kib: Option<u64>,
    /// Event frames the library could not parse.
    pub parse_errors: u64,
    /// Events the library itself reports as dropped.
    pub lib_dropped: u64,
    /// Events the library delivered with lossy (U+FFFD) values.
    pub lossy_events: u64,
    /// The child ran pinned to one CPU.
    pub pinned: bool,
    /// Anything worth saying (e.g. how the stream ended).
    pub note: String,
}

/// Options of one child run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChildOpts {
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Backlog test: do not read events for this long after subscribing.
    pub pause: Option<Duration>,
    /// Stop after this many events (a client that reconnects by itself would not see an end).
    pub expect: Option<u64>,
}

/// Runs consumer `kind` against `addr`.
pub fn run_child(kind: &str, addr: SocketAddr, opts: ChildOpts) -> anyhow::Result<ChildReport> {
    let pinned = opts.cpu.is_some_and(measure::pin_to_cpu);
    let cpu0 = measure::cpu_time();
    let start = Instant::now();
    let mut report = match kind {
        "raw" => raw(addr)?,
        _ => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(async {
                match kind {
                    "ours" => ours(addr, opts).await,
                    "ours-sansio" => ours_sansio(addr, opts).await,
                    "fet" => fet(addr, opts).await,
                    "eslrs" => eslrs(addr, opts).await,
                    other => anyhow::bail!("unknown consumer {other:?} (one of {KINDS:?})"),
                }
            })?
        }
    };
    report.secs = start.elapsed().as_secs_f64();
    report.cpu_secs = (measure::cpu_time().saturating_sub(cpu0)).as_secs_f64();
    report.vm_hwm_kib = measure::status_kib("VmHWM").unwrap_or(0);
    report.kind = kind.to_owned();
    report.pinned = pinned;
    Ok(report)
}

fn raw(addr: SocketAddr) -> anyhow::Result<ChildReport> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).context("connect")?;
    stream.write_all(b"auth ClueCon\n\nevent plain ALL\n\n")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read"),
        }
    }
    Ok(ChildReport {
        bytes,
        note: "64 KiB blocking reads, bytes counted".into(),
        ..ChildReport::default()
    })
}

/// Counts one event into `r`.
fn count(r: &mut ChildReport, conference: bool) {
    r.events += 1;
    r.conference += u64::from(conference);
}

fn reached(r: &ChildReport, opts: ChildOpts) -> bool {
    opts.expect.is_some_and(|n| r.events >= n)
}

async fn pause(opts: ChildOpts, r: &mut ChildReport) -> Instant {
    if let Some(p) = opts.pause {
        tokio::time::sleep(p).await;
        r.rss_after_pause_kib = measure::status_kib("VmRSS");
    }
    Instant::now()
}

/// Our tokio client (`esl::conn::EslClient`), default settings (4096-event channel) but for the
/// subscription (`ALL`). The stream ends with `ClientEvent::Disconnected` (the client would then
/// reconnect; the run stops there).
async fn ours(addr: SocketAddr, opts: ChildOpts) -> anyhow::Result<ChildReport> {
    use esl::conn::{ClientEvent, ConnectConfig, EslClient};
    let mut r = ChildReport::default();
    let mut config = ConnectConfig::new(addr.to_string(), "ClueCon");
    config.events = vec!["ALL".to_owned()];
    // Experiments only: `ESL_BENCH_EVENT_CAPACITY=256 esl-ingest --child ours ...`.
    if let Some(cap) = std::env::var("ESL_BENCH_EVENT_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.event_capacity = cap;
    }
    let (client, mut events) = EslClient::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let drain_start = pause(opts, &mut r).await;
    while let Some(item) = events.recv().await {
        match item {
            ClientEvent::Event(event) => {
                count(&mut r, event.conference().is_some());
                if reached(&r, opts) {
                    break;
                }
            }
            ClientEvent::Connected { .. } => {}
            ClientEvent::Disconnected { reason } => {
                r.note = format!("ended: {reason}");
                break;
            }
        }
    }
    r.drain_secs = drain_start.elapsed().as_secs_f64();
    drop(events);
    drop(client);
    Ok(r)
}

/// Our sans-IO `esl::client::Client` driven by a bare tokio read loop (64 KiB reads): the
/// client core without `esl::conn`'s tasks and channels.
async fn ours_sansio(addr: SocketAddr, opts: ChildOpts) -> anyhow::Result<ChildReport> {
    use esl::client::{Client, ClientConfig, DisconnectReason, Input, Output, Subscription};
    let mut r = ChildReport::default();
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connect")?;
    let mut config = ClientConfig::new("ClueCon");
    config.subscription = Subscription::new(esl::EventFormat::Plain).with_events(["ALL"]);
    let mut client = Client::new(config);
    client.handle_input(Input::Connected(Instant::now()));
    let mut buf = vec![0u8; 64 * 1024];
    let mut paused = opts.pause.is_none();
    let mut drain_start = Instant::now();
    'run: loop {
        while let Some(out) = client.poll_output() {
            match out {
                Output::Transmit(bytes) => stream.write_all(&bytes).await?,
                Output::Event(event) => {
                    count(&mut r, event.conference().is_some());
                    if reached(&r, opts) {
                        break 'run;
                    }
                }
                Output::EventError(_) => r.parse_errors += 1,
                Output::Disconnected(reason) => {
                    r.note = format!("ended: {reason}");
                    break 'run;
                }
                Output::Ready { .. } if !paused => {
                    paused = true;
                    drain_start = pause(opts, &mut r).await;
                    client.touch(Instant::now());
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            client.handle_input(Input::Disconnected(DisconnectReason::Closed));
        } else {
            client.handle_input(Input::Receive(Instant::now(), &buf[..n]));
        }
    }
    r.drain_secs = drain_start.elapsed().as_secs_f64();
    Ok(r)
}

/// freeswitch-esl-tokio 2.8.0. Its reader task drops events when its queue (1000) is full by
/// default; `EventOverflow::BlockFor` makes it wait instead (sound on a connection that sends no
/// commands while streaming, as here), so the comparison is lossless.
async fn fet(addr: SocketAddr, opts: ChildOpts) -> anyhow::Result<ChildReport> {
    use freeswitch_esl_tokio::{EslClient, EslConnectOptions, EventFormat, EventOverflow};
    let mut r = ChildReport::default();
    let options = EslConnectOptions::new()
        .with_event_overflow(EventOverflow::BlockFor(Duration::from_secs(60)))
        .with_connect_timeout(Duration::from_secs(10));
    let (client, mut events) =
        EslClient::connect_with_options(&addr.ip().to_string(), addr.port(), "ClueCon", options)
            .await
            .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    client
        .subscribe_all_events(EventFormat::Plain)
        .await
        .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
    let drain_start = pause(opts, &mut r).await;
    while let Some(item) = events.recv().await {
        match item {
            Ok(event) => {
                let conference = event.header_str("Event-Subclass")
                    == Some("conference::maintenance")
                    && event.header_str("Action").is_some();
                count(&mut r, conference);
                if !event.lossy_values().is_empty() {
                    r.lossy_events += 1;
                }
                if reached(&r, opts) {
                    break;
                }
            }
            Err(e) => {
                r.parse_errors += 1;
                if r.note.is_empty() {
                    r.note = format!("first error: {e}");
                }
            }
        }
    }
    r.drain_secs = drain_start.elapsed().as_secs_f64();
    r.lib_dropped = client.dropped_event_count();
    Ok(r)
}

/// eslrs 0.1.0-rc.3 (default features off: no tracing instrumentation). It does not
/// percent-decode header values, so `Event-Subclass` is compared in its encoded form.
async fn eslrs(addr: SocketAddr, opts: ChildOpts) -> anyhow::Result<ChildReport> {
    use eslrs::event::PlainEvent;
    let mut r = ChildReport::default();
    let mut conn = eslrs::Inbound::connect(addr, "ClueCon")
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    conn.send_recv(eslrs::Command::events("ALL"))
        .await
        .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
    let drain_start = pause(opts, &mut r).await;
    loop {
        let event = match conn.recv().await {
            Ok(event) => event,
            Err(e) => {
                r.note = format!("ended: {e}");
                break;
            }
        };
        if !event.is_plain_event() {
            continue;
        }
        let Ok(plain) = PlainEvent::try_from(event);
        let conference = plain.get_header("Event-Subclass") == Some("conference%3A%3Amaintenance")
            && plain.get_header("Action").is_some();
        count(&mut r, conference);
        if reached(&r, opts) {
            break;
        }
    }
    r.drain_secs = drain_start.elapsed().as_secs_f64();
    Ok(r)
}
