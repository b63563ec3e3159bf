//! The load generator: closed loop (N workers, each sends its next request when the previous
//! answer arrived) and open loop (requests scheduled at a fixed rate, latency measured from the
//! scheduled time, so a stalled server cannot hide its queue: no coordinated omission).
//! Single-threaded (a tokio current-thread runtime on its own core); every answer is checked.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use memchr::memmem;

use crate::corpus::{Expect, KnownUser, NOT_FOUND, Request};
use crate::http::Conn;
use crate::procstat::{self, CpuTime};

/// A request that takes longer is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Keep-alive, or one connection per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    KeepAlive,
    PerRequest,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::PerRequest => "conn/request",
        }
    }
}

/// How answers are checked.
#[derive(Debug)]
pub enum Checker {
    /// Switchyard: the user's document with its a1-hash, or exactly "not found".
    Directory {
        /// Per user: `<user id="…">` and `name="a1-hash" value="…"`.
        needles: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// nginx: always exactly these bytes.
    Fixed(Vec<u8>),
}

impl Checker {
    pub fn directory(users: &[KnownUser]) -> Self {
        Self::Directory {
            needles: users
                .iter()
                .map(|u| {
                    (
                        format!("<user id=\"{}\">", u.username).into_bytes(),
                        format!("<param name=\"a1-hash\" value=\"{}\"/>", u.a1_hash).into_bytes(),
                    )
                })
                .collect(),
        }
    }

    /// Whether `body` is the right answer to a request expecting `expect`.
    pub fn check(&self, expect: Expect, body: &[u8]) -> bool {
        match self {
            Self::Fixed(fixed) => body == fixed.as_slice(),
            Self::Directory { needles } => match expect {
                Expect::NotFound => body == NOT_FOUND.as_bytes(),
                Expect::User(i) => needles.get(i as usize).is_some_and(|(user, a1)| {
                    memmem::find(body, user).is_some()
                        && memmem::find(body, a1).is_some()
                        && memmem::find(body, b"name=\"password\"").is_none()
                }),
            },
        }
    }
}

/// A server under test with its corpus.
#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
    pub requests: Vec<Request>,
    pub checker: Checker,
    /// Next corpus index; runs continue where the previous one stopped (rotation).
    pub next: Cell<usize>,
}

impl Target {
    fn take(&self) -> &Request {
        let i = self.next.get();
        self.next.set((i + 1) % self.requests.len());
        &self.requests[i]
    }
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: u64,
    /// Transport errors, timeouts, non-200 answers.
    pub errors: u64,
    /// 200 answers with the wrong document.
    pub wrong: u64,
    pub first_error: Option<String>,
    pub connections: u64,
    pub elapsed: Duration,
    pub latencies_ns: Vec<u64>,
    pub server_cpu: Duration,
    pub client_cpu: Duration,
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.ok + self.errors + self.wrong
    }

    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU time per answered request, µs.
    pub fn server_cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests().max(1) as f64
    }

    pub fn client_cpu_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.requests().max(1) as f64
    }

    /// Server CPU utilisation during the run (1.0 = one core).
    pub fn server_util(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    pub fn client_util(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Latency percentile in µs (`q` in 0..=1); sorts on first use.
    pub fn percentile_us(&mut self, q: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        if !self.latencies_ns.is_sorted() {
            self.latencies_ns.sort_unstable();
        }
        let idx = ((self.latencies_ns.len() - 1) as f64 * q).round() as usize;
        self.latencies_ns[idx] as f64 / 1e3
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    fn merge(&mut self, other: Outcome) {
        match other {
            Outcome::Ok(ns) => {
                self.ok += 1;
                self.latencies_ns.push(ns);
            }
            Outcome::Wrong(ns) => {
                self.wrong += 1;
                self.latencies_ns.push(ns);
                if self.first_error.is_none() {
                    self.first_error = Some("wrong document".to_owned());
                }
            }
            Outcome::Error(e) => self.error(e),
        }
    }
}

enum Outcome {
    Ok(u64),
    Wrong(u64),
    Error(String),
}

/// One request on `conn` (connected first when `None`); the connection comes back when it can
/// be reused.
async fn one(
    target: &Target,
    request: &Request,
    conn: Option<Conn>,
    since: Instant,
    opened: &Cell<u64>,
) -> (Outcome, Option<Conn>) {
    let work = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => {
                opened.set(opened.get() + 1);
                Conn::connect(target.addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?
            }
        };
        let (status, good, close) = {
            let response = conn
                .round_trip(&request.bytes)
                .await
                .map_err(|e| e.to_string())?;
            (
                response.status,
                target.checker.check(request.expect, response.body),
                response.close,
            )
        };
        let ns = since.elapsed().as_nanos() as u64;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let reuse = (!close).then_some(conn);
        Ok::<_, String>((
            if good {
                Outcome::Ok(ns)
            } else {
                Outcome::Wrong(ns)
            },
            reuse,
        ))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(Ok((outcome, conn))) => (outcome, conn),
        Ok(Err(e)) => (Outcome::Error(e), None),
        Err(_) => (Outcome::Error("timeout".to_owned()), None),
    }
}

struct Meter {
    start: Instant,
    server: Option<CpuTime>,
    client: Option<CpuTime>,
}

impl Meter {
    fn start(pid: u32) -> Self {
        Self {
            server: procstat::process_cpu(pid).ok(),
            client: procstat::self_cpu().ok(),
            start: Instant::now(),
        }
    }

    fn finish(self, pid: u32, stats: &mut Stats) {
        stats.elapsed = self.start.elapsed();
        if let (Some(before), Ok(after)) = (self.server, procstat::process_cpu(pid)) {
            stats.server_cpu = after.since(before);
        }
        if let (Some(before), Ok(after)) = (self.client, procstat::self_cpu()) {
            stats.client_cpu = after.since(before);
        }
    }
}

/// `concurrency` workers for `duration` (or until `max_requests` were sent, if given).
pub async fn closed_loop(
    target: &Target,
    mode: Mode,
    concurrency: usize,
    duration: Duration,
    max_requests: Option<u64>,
) -> Stats {
    let stats = RefCell::new(Stats::default());
    let opened = Cell::new(0);
    let sent = Cell::new(0u64);
    let meter = Meter::start(target.pid);
    let deadline = Instant::now() + duration;
    let worker = || async {
        let mut conn: Option<Conn> = None;
        while Instant::now() < deadline && max_requests.is_none_or(|max| sent.get() < max) {
            sent.set(sent.get() + 1);
            let request = target.take();
            let (outcome, back) = one(target, request, conn.take(), Instant::now(), &opened).await;
            let failed = matches!(outcome, Outcome::Error(_));
            stats.borrow_mut().merge(outcome);
            if mode == Mode::KeepAlive {
                conn = back;
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    let mut stats = stats.into_inner();
    meter.finish(target.pid, &mut stats);
    stats.connections = opened.get();
    stats
}

/// `rate` requests/s for `duration`, each scheduled at its own instant; latency from that
/// instant to the last byte of the answer. Keep-alive reuses idle connections (opening more
/// when all are busy); per-request mode connects for every request.
pub async fn open_loop(target: &Target, mode: Mode, rate: f64, duration: Duration) -> Stats {
    let total = (rate * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut stats = Stats::default();
    let opened = Cell::new(0);
    let idle: RefCell<Vec<Conn>> = RefCell::new(Vec::new());
    if mode == Mode::KeepAlive {
        // A warm pool, as a keep-alive client would have; more are opened when all are busy.
        for _ in 0..32 {
            match Conn::connect(target.addr).await {
                Ok(conn) => {
                    opened.set(opened.get() + 1);
                    idle.borrow_mut().push(conn);
                }
                Err(e) => stats.error(format!("connect: {e}")),
            }
        }
    }
    let meter = Meter::start(target.pid);
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        let now = Instant::now();
        while next < total {
            let at = start + interval.mul_f64(next as f64);
            if at > now {
                break;
            }
            let request = target.take();
            let conn = match mode {
                Mode::KeepAlive => idle.borrow_mut().pop(),
                Mode::PerRequest => None,
            };
            let (idle, opened) = (&idle, &opened);
            inflight.push(async move {
                let (outcome, back) = one(target, request, conn, at, opened).await;
                if let (Mode::KeepAlive, Some(conn)) = (mode, back) {
                    idle.borrow_mut().push(conn);
                }
                outcome
            });
            next += 1;
        }
        while let Some(Some(outcome)) = inflight.next().now_or_never() {
            stats.merge(outcome);
        }
        if next >= total && inflight.is_empty() {
            break;
        }
        // Lets the runtime poll its sockets; spinning keeps the schedule exact (the timer
        // wheel has 1 ms granularity, the interval is 200 µs).
        tokio::task::yield_now().await;
    }
    drop(inflight);
    meter.finish(target.pid, &mut stats);
    stats.connections = opened.get();
    stats
}
