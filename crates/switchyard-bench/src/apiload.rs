//! Load for the REST API: like [`crate::load`], but requests are generated from a running index
//! (each invitation is new, so a corpus cannot be replayed), every answer is checked by the
//! workload, and latencies are also kept per request class (e.g. the invitation that places a
//! conference vs. the later ones). Closed loop (N keep-alive workers) and open loop (a fixed
//! schedule, latency from the scheduled instant: no coordinated omission). Single-threaded: run
//! it on a current-thread runtime on its own core.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::http::Conn;
use crate::load::Stats;
use crate::procstat::{self, CpuTime};

/// A request that takes longer is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What is sent and what must come back.
pub trait Workload {
    /// Writes request number `i` into `buf` (empty on entry); returns its class, an index into
    /// [`Workload::classes`].
    fn request(&self, i: u64, buf: &mut Vec<u8>) -> usize;

    /// Checks a 2xx answer to request `i`; `Err` counts it as a wrong answer.
    fn check(&self, i: u64, status: u16, body: &[u8]) -> Result<(), String>;

    /// Consecutive indices a closed-loop worker takes at once and sends in order on its
    /// connection (5: one conference's invitations, the first of which places it).
    fn batch(&self) -> u64 {
        1
    }

    /// Names of the request classes.
    fn classes(&self) -> &'static [&'static str] {
        &["all"]
    }
}

/// A server under load.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    pub addr: SocketAddr,
    /// Its CPU time is [`Stats::server_cpu`].
    pub pid: u32,
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// Every request (`latencies_ns` of all of them, unsorted until a percentile is asked).
    pub stats: Stats,
    /// Latencies (ns) by class.
    pub by_class: Vec<Vec<u64>>,
    /// CPU time of the other processes watched (`others` argument), in order.
    pub others_cpu: Vec<Duration>,
    /// Busy CPU time of the whole machine (every process, every core) during the run.
    pub machine_busy: Duration,
    /// First index this run used and one past the last.
    pub indices: (u64, u64),
}

impl Run {
    /// Percentile (`q` in 0..=1) of class `class` in µs; NaN when empty.
    pub fn class_percentile_us(&mut self, class: usize, q: f64) -> f64 {
        let Some(lat) = self.by_class.get_mut(class) else {
            return f64::NAN;
        };
        if lat.is_empty() {
            return f64::NAN;
        }
        if !lat.is_sorted() {
            lat.sort_unstable();
        }
        let idx = ((lat.len() - 1) as f64 * q).round() as usize;
        lat[idx] as f64 / 1e3
    }

    /// Cores' worth of CPU that neither the server, the watched processes nor the load
    /// generator used during the run: other work on the machine (noise).
    pub fn foreign_util(&self) -> f64 {
        let ours = self.stats.server_cpu
            + self.stats.client_cpu
            + self.others_cpu.iter().sum::<Duration>();
        self.machine_busy.saturating_sub(ours).as_secs_f64() / self.stats.elapsed.as_secs_f64()
    }

    /// CPU utilisation of watched process `k` during the run (1.0 = one core).
    pub fn other_util(&self, k: usize) -> f64 {
        self.others_cpu.get(k).map_or(f64::NAN, |c| {
            c.as_secs_f64() / self.stats.elapsed.as_secs_f64()
        })
    }
}

enum Outcome {
    Ok(usize, u64),
    Wrong(usize, u64, String),
    Error(String),
}

struct Collector {
    run: RefCell<Run>,
}

impl Collector {
    fn new(classes: usize) -> Self {
        Self {
            run: RefCell::new(Run {
                by_class: vec![Vec::new(); classes],
                ..Run::default()
            }),
        }
    }

    fn add(&self, outcome: Outcome) {
        let mut run = self.run.borrow_mut();
        let Run {
            stats, by_class, ..
        } = &mut *run;
        match outcome {
            Outcome::Ok(class, ns) => {
                stats.ok += 1;
                stats.latencies_ns.push(ns);
                if let Some(v) = by_class.get_mut(class) {
                    v.push(ns);
                }
            }
            Outcome::Wrong(class, ns, why) => {
                stats.wrong += 1;
                stats.latencies_ns.push(ns);
                if let Some(v) = by_class.get_mut(class) {
                    v.push(ns);
                }
                if stats.first_error.is_none() {
                    stats.first_error = Some(format!("wrong answer: {why}"));
                }
            }
            Outcome::Error(why) => {
                stats.errors += 1;
                if stats.first_error.is_none() {
                    stats.first_error = Some(why);
                }
            }
        }
    }
}

/// CPU meter of the server, the watched processes and this process.
struct Meter {
    start: Instant,
    server: Option<CpuTime>,
    others: Vec<Option<CpuTime>>,
    client: Option<CpuTime>,
    machine: Option<CpuTime>,
}

impl Meter {
    fn start(server: u32, others: &[u32]) -> Self {
        Self {
            server: procstat::process_cpu(server).ok(),
            others: others
                .iter()
                .map(|&p| procstat::process_cpu(p).ok())
                .collect(),
            client: procstat::self_cpu().ok(),
            machine: procstat::machine_busy().ok(),
            start: Instant::now(),
        }
    }

    fn finish(self, server: u32, others: &[u32], run: &mut Run) {
        run.stats.elapsed = self.start.elapsed();
        if let (Some(before), Ok(after)) = (self.server, procstat::process_cpu(server)) {
            run.stats.server_cpu = after.since(before);
        }
        if let (Some(before), Ok(after)) = (self.client, procstat::self_cpu()) {
            run.stats.client_cpu = after.since(before);
        }
        if let (Some(before), Ok(after)) = (self.machine, procstat::machine_busy()) {
            run.machine_busy = after.since(before);
        }
        run.others_cpu = others
            .iter()
            .zip(self.others)
            .map(
                |(&pid, before)| match (before, procstat::process_cpu(pid)) {
                    (Some(before), Ok(after)) => after.since(before),
                    _ => Duration::ZERO,
                },
            )
            .collect();
    }
}

/// Request `i` on `conn` (connected first when `None`); the connection comes back when it can
/// be reused.
async fn one<W: Workload>(
    server: Server,
    workload: &W,
    i: u64,
    conn: Option<Conn>,
    since: Instant,
    opened: &Cell<u64>,
    buf: &mut Vec<u8>,
) -> (Outcome, Option<Conn>) {
    buf.clear();
    let class = workload.request(i, buf);
    let work = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => {
                opened.set(opened.get() + 1);
                Conn::connect(server.addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?
            }
        };
        let (outcome, close) = {
            let response = conn.round_trip(buf).await.map_err(|e| e.to_string())?;
            let ns = since.elapsed().as_nanos() as u64;
            let outcome = if !(200..300).contains(&response.status) {
                let text = String::from_utf8_lossy(response.body);
                Outcome::Error(format!(
                    "HTTP {}: {}",
                    response.status,
                    text.chars().take(300).collect::<String>()
                ))
            } else {
                match workload.check(i, response.status, response.body) {
                    Ok(()) => Outcome::Ok(class, ns),
                    Err(why) => Outcome::Wrong(class, ns, why),
                }
            };
            (outcome, response.close)
        };
        Ok::<_, String>((outcome, (!close).then_some(conn)))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(Ok((outcome, conn))) => (outcome, conn),
        Ok(Err(e)) => (Outcome::Error(e), None),
        Err(_) => (Outcome::Error("timeout".to_owned()), None),
    }
}

/// `concurrency` keep-alive workers for `duration` (or until `max_requests` indices were
/// taken). Indices come from `next` (left where this run stopped); a worker takes
/// [`Workload::batch`] of them at a time and finishes its batch after the deadline.
pub async fn closed_loop<W: Workload>(
    server: Server,
    others: &[u32],
    workload: &W,
    next: &Cell<u64>,
    concurrency: usize,
    duration: Duration,
    max_requests: Option<u64>,
) -> Run {
    let collector = Collector::new(workload.classes().len());
    let opened = Cell::new(0);
    let first = next.get();
    let batch = workload.batch().max(1);
    let meter = Meter::start(server.pid, others);
    let deadline = Instant::now() + duration;
    let worker = || async {
        let mut conn: Option<Conn> = None;
        let mut buf = Vec::with_capacity(1024);
        while Instant::now() < deadline && max_requests.is_none_or(|max| next.get() - first < max) {
            let start = next.get();
            next.set(start + batch);
            for i in start..start + batch {
                let (outcome, back) = one(
                    server,
                    workload,
                    i,
                    conn.take(),
                    Instant::now(),
                    &opened,
                    &mut buf,
                )
                .await;
                let failed = matches!(outcome, Outcome::Error(_));
                collector.add(outcome);
                conn = back;
                if failed {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    };
    futures_util::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let mut run = collector.run.into_inner();
    meter.finish(server.pid, others, &mut run);
    run.stats.connections = opened.get();
    run.indices = (first, next.get());
    run
}

/// `rate` requests/s for `duration`, each scheduled at its own instant (indices from `next`,
/// one per request); latency from that instant to the last byte of the answer. Idle
/// keep-alive connections are reused, more are opened when all are busy.
pub async fn open_loop<W: Workload>(
    server: Server,
    others: &[u32],
    workload: &W,
    next: &Cell<u64>,
    rate: f64,
    duration: Duration,
) -> Run {
    let total = (rate * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let collector = Collector::new(workload.classes().len());
    let opened = Cell::new(0);
    let idle: RefCell<Vec<Conn>> = RefCell::new(Vec::new());
    // A warm pool, as a keep-alive client would have.
    for _ in 0..8 {
        match Conn::connect(server.addr).await {
            Ok(conn) => {
                opened.set(opened.get() + 1);
                idle.borrow_mut().push(conn);
            }
            Err(e) => collector.add(Outcome::Error(format!("connect: {e}"))),
        }
    }
    let first = next.get();
    let meter = Meter::start(server.pid, others);
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        while sent < total {
            let at = start + interval.mul_f64(sent as f64);
            if at > now {
                break;
            }
            let i = next.get();
            next.set(i + 1);
            let conn = idle.borrow_mut().pop();
            let (idle, opened) = (&idle, &opened);
            inflight.push(async move {
                let mut buf = Vec::with_capacity(1024);
                let (outcome, back) = one(server, workload, i, conn, at, opened, &mut buf).await;
                if let Some(conn) = back {
                    idle.borrow_mut().push(conn);
                }
                outcome
            });
            sent += 1;
        }
        while let Some(Some(outcome)) = inflight.next().now_or_never() {
            collector.add(outcome);
        }
        if sent >= total && inflight.is_empty() {
            break;
        }
        // Spinning keeps the schedule exact (the timer wheel has 1 ms granularity).
        tokio::task::yield_now().await;
    }
    drop(inflight);
    let mut run = collector.run.into_inner();
    meter.finish(server.pid, others, &mut run);
    run.stats.connections = opened.get();
    run.indices = (first, next.get());
    run
}
