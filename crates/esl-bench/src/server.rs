//! The replay server: speaks just enough of mod_event_socket to get a client subscribed, then
//! streams a prepared byte stream of `text/event-plain` frames at full speed and closes.
//!
//! Per connection: `Content-Type: auth/request`, then commands are answered as FreeSWITCH does
//! (`auth` → `+OK accepted`, `event <fmt> ...` → `+OK event listener enabled <fmt>`, `exit` →
//! `+OK bye` and the goodbye notice). Right after the `event` reply the payload is written
//! `reps` times with blocking `write_all`, the write side is shut down (FIN after the last byte)
//! and the socket is drained until the client closes, so no unread byte turns the close into a
//! reset that could cost the client data.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use esl::RequestDecoder;
use esl::serialize;

/// What a connection is sent after it subscribes.
#[derive(Debug)]
pub struct Payload {
    /// Whole `text/event-plain` frames.
    pub data: Bytes,
    /// Events in `data`.
    pub events: u64,
    /// Of which conference::maintenance.
    pub conference: u64,
    /// How many times `data` is sent.
    pub reps: u32,
}

impl Payload {
    /// Events sent on a complete connection.
    pub fn total_events(&self) -> u64 {
        self.events * u64::from(self.reps)
    }

    /// Conference events sent on a complete connection.
    pub fn total_conference(&self) -> u64 {
        self.conference * u64::from(self.reps)
    }

    /// Bytes sent on a complete connection (without the handshake).
    pub fn total_bytes(&self) -> u64 {
        self.data.len() as u64 * u64::from(self.reps)
    }
}

/// What the server does with the next connections.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Stream this payload after the subscription.
    Stream(Arc<Payload>),
    /// Accept and close at once (for clients that reconnect after a run).
    Close,
}

/// What happened on one connection.
#[derive(Clone, Debug)]
pub struct ConnReport {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The command lines received (the password replaced).
    pub commands: Vec<String>,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Events written (counted only when the whole payload went out).
    pub events_sent: u64,
    /// True when every repetition of the payload was written.
    pub complete: bool,
    /// Time from the `event` reply to the last payload byte accepted by the kernel.
    pub stream_secs: f64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    plan: Mutex<Plan>,
    reports: Mutex<Vec<ConnReport>>,
    pin_cpu: Option<usize>,
    verbose: bool,
}

/// A running replay server (its threads live until the process exits).
#[derive(Debug, Clone)]
pub struct ReplayServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplayServer {
    /// Binds `bind` and serves in background threads (pinned to `pin_cpu` when given).
    pub fn start(
        bind: &str,
        plan: Plan,
        pin_cpu: Option<usize>,
        verbose: bool,
    ) -> std::io::Result<ReplayServer> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            plan: Mutex::new(plan),
            reports: Mutex::new(Vec::new()),
            pin_cpu,
            verbose,
        });
        let accept_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("replay-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(ReplayServer { addr, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the plan for connections accepted from now on.
    pub fn set_plan(&self, plan: Plan) {
        *lock(&self.shared.plan) = plan;
    }

    /// Takes the reports of the connections that have finished.
    pub fn take_reports(&self) -> Vec<ConnReport> {
        std::mem::take(&mut *lock(&self.shared.reports))
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let plan = lock(&shared.plan).clone();
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("replay-conn".into())
            .spawn(move || {
                if let Some(cpu) = conn_shared.pin_cpu {
                    crate::measure::pin_to_cpu(cpu);
                }
                let report = serve(stream, &plan);
                if conn_shared.verbose {
                    eprintln!(
                        "replay: {:?} commands {:?}: {} bytes, {} events, complete {}, {:.2} s{}",
                        report.peer,
                        report.commands,
                        report.bytes_sent,
                        report.events_sent,
                        report.complete,
                        report.stream_secs,
                        report
                            .error
                            .as_deref()
                            .map(|e| format!(", {e}"))
                            .unwrap_or_default()
                    );
                }
                lock(&conn_shared.reports).push(report);
            });
        if let Err(e) = spawned {
            eprintln!("replay: cannot spawn a connection thread: {e}");
        }
    }
}

fn serve(mut stream: TcpStream, plan: &Plan) -> ConnReport {
    let mut report = ConnReport {
        peer: stream.peer_addr().ok(),
        commands: Vec::new(),
        bytes_sent: 0,
        events_sent: 0,
        complete: false,
        stream_secs: 0.0,
        error: None,
    };
    let payload = match plan {
        Plan::Close => return report,
        Plan::Stream(p) => Arc::clone(p),
    };
    if let Err(e) = handshake(&mut stream, &mut report) {
        report.error = Some(e);
        return report;
    }
    let start = Instant::now();
    let mut failed = None;
    'reps: for _ in 0..payload.reps {
        // Written in slices so a client that goes away is noticed between them.
        for piece in payload.data.chunks(4 * 1024 * 1024) {
            if let Err(e) = stream.write_all(piece) {
                failed = Some(format!("write: {e}"));
                break 'reps;
            }
            report.bytes_sent += piece.len() as u64;
        }
    }
    report.stream_secs = start.elapsed().as_secs_f64();
    match failed {
        None => {
            report.complete = true;
            report.events_sent = payload.total_events();
        }
        Some(e) => report.error = Some(e),
    }
    // FIN after the last byte, then wait for the client to close (bounded).
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    report
}

/// auth/request, then commands until an `event` subscription. Err when the client leaves.
fn handshake(stream: &mut TcpStream, report: &mut ConnReport) -> Result<(), String> {
    let mut out = BytesMut::new();
    serialize::auth_request(&mut out);
    stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let mut tmp = [0u8; 4096];
    let mut authed = false;
    loop {
        let n = stream.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("client closed before subscribing".into());
        }
        buf.extend_from_slice(&tmp[..n]);
        while let Some(req) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            let line = req.line.trim().to_owned();
            let mut words = line.split_whitespace();
            let verb = words.next().unwrap_or("").to_ascii_lowercase();
            report.commands.push(if verb == "auth" {
                "auth ***".into()
            } else {
                line.clone()
            });
            out.clear();
            match verb.as_str() {
                "auth" => {
                    authed = true;
                    serialize::command_reply(&mut out, "+OK accepted", &[]);
                }
                _ if !authed => serialize::command_reply(&mut out, "-ERR command not found", &[]),
                "event" => {
                    let format = match words.next().map(str::to_ascii_lowercase).as_deref() {
                        Some("json") => "json",
                        Some("xml") => "xml",
                        _ => "plain",
                    };
                    let text = format!("+OK event listener enabled {format}");
                    serialize::command_reply(&mut out, &text, &[]);
                    stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
                    return Ok(());
                }
                "exit" => {
                    serialize::command_reply(&mut out, "+OK bye", &[]);
                    serialize::disconnect_notice(&mut out, serialize::GOODBYE);
                    let _ = stream.write_all(&out);
                    return Err("client sent exit".into());
                }
                "api" => serialize::api_response(&mut out, b"-ERR replay server\n"),
                "noevents" => {
                    serialize::command_reply(&mut out, "+OK no longer listening for events", &[])
                }
                "nixevent" => serialize::command_reply(&mut out, "+OK events nixed", &[]),
                _ => serialize::command_reply(&mut out, "-ERR command not found", &[]),
            }
            stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
        }
    }
}
