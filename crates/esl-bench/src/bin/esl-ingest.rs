//! ESL ingest benchmark (`just bench`).
//!
//! 1. Corpus: a FreeSWITCH-exact `event plain ALL` stream (see `esl_bench::corpus`), cached in
//!    `target/bench-data/esl-corpus.bin`.
//! 2. In memory: `FrameDecoder` + `Message::try_from` over the corpus in 64 KiB chunks, against a
//!    `memchr::memmem` scan for `\n\n` over the same bytes.
//! 3. Loopback TCP: an in-process replay server (its threads pinned to CPU 0) streams the corpus
//!    to consumers that each run in a child process pinned to CPU 1: a raw socket reader
//!    (reference), our tokio client `esl::conn`, our sans-IO client on a bare read loop, and the
//!    Rust peers freeswitch-esl-tokio and eslrs. Then the backlog test: 100,000 events while the
//!    consumer does not read for a while.
//! 4. The table goes to stdout and `target/bench-data/esl-ingest.md`.
//!
//! Other modes:
//!   esl-ingest --child KIND ADDR [--cpu N] [--pause-ms N] [--expect N]   one measured consumer
//!   esl-ingest --serve ADDR [--reps N] [--conference-only]              replay server for peers
//!   esl-ingest --peers-report FILE                                      table of peer results

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use esl_bench::clients::{self, ChildOpts, ChildReport};
use esl_bench::corpus::{Corpus, Kind};
use esl_bench::decode;
use esl_bench::measure;
use esl_bench::server::{Payload, Plan, ReplayServer};

/// Repetitions of the corpus per TCP connection for the fast consumers.
const REPS_FAST: u32 = 3;
/// Trials of each fast consumer (alternating raw / ours); the median is reported.
const TRIALS: usize = 5;
/// Events in the backlog test.
const BACKLOG_EVENTS: u64 = 100_000;
/// How long the backlog consumer does not read.
const BACKLOG_PAUSE: Duration = Duration::from_secs(3);
/// Targets.
const TARGET_CONF_EPS: f64 = 500_000.0;
const TARGET_VS_RAW: f64 = 0.5;
const TARGET_VS_PEER: f64 = 2.0;
const TARGET_BACKLOG_RSS_MIB: f64 = 64.0;
/// A child that takes longer than this is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(150);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child") => child_main(&args[1..]),
        Some("--serve") => serve_main(&args[1..]),
        Some("--peers-report") => peers_report_main(&args[1..]),
        Some("--profile") => profile_main(&args[1..]),
        Some("--help" | "-h") => {
            println!(
                "{}",
                include_str!("esl-ingest.rs")
                    .lines()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            Ok(())
        }
        None => bench_main(),
        Some(other) => bail!("unknown argument {other:?} (try --help)"),
    }
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> anyhow::Result<Option<T>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("bad value {v:?} for {name}"))
        }
    }
}

fn child_main(args: &[String]) -> anyhow::Result<()> {
    let kind = args.first().context("--child KIND ADDR")?;
    let addr: SocketAddr = args
        .get(1)
        .context("--child KIND ADDR")?
        .parse()
        .context("ADDR")?;
    let opts = ChildOpts {
        cpu: flag(args, "--cpu")?,
        pause: flag::<u64>(args, "--pause-ms")?.map(Duration::from_millis),
        expect: flag(args, "--expect")?,
    };
    match clients::run_child(kind, addr, opts) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Err(e) => {
            // One line, no backtrace: the parent prints it next to the run.
            eprintln!("  child {kind}: {e:#}");
            std::process::exit(1);
        }
    }
}

/// `--profile decode|client|index|memchr [PASSES] [--conference-only]`: in-memory passes only, for
/// perf / callgrind.
fn profile_main(args: &[String]) -> anyhow::Result<()> {
    let what = args.first().map_or("decode", String::as_str);
    let passes: usize = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(5);
    let corpus = load_corpus()?;
    let data: bytes::Bytes = if args.iter().any(|a| a == "--conference-only") {
        corpus.filtered(|r| r.kind.is_conference()).0.into()
    } else {
        corpus.data.clone()
    };
    for _ in 0..passes {
        let start = Instant::now();
        let counts = match what {
            "decode" => decode::decode_pass(&data, false)?,
            "client" => decode::client_pass(&data)?,
            "index" => decode::index_only_pass(&data)?,
            "memchr" => decode::DecodeCounts {
                events: decode::memchr_pass(&data),
                ..Default::default()
            },
            other => bail!("--profile decode|client|index|memchr, not {other:?}"),
        };
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{what}: {} events ({} conference) in {secs:.3} s: {} events/s, {:.0} MiB/s",
            counts.events,
            counts.conference,
            fmt_rate(counts.events as f64 / secs),
            mib(data.len() as f64) / secs
        );
    }
    Ok(())
}

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("bench-data")
}

fn load_corpus() -> anyhow::Result<Corpus> {
    let path = data_dir().join("esl-corpus.bin");
    let start = Instant::now();
    let (corpus, generated) = Corpus::load_or_generate(&path)?;
    eprintln!(
        "corpus {} {} in {:.1} s",
        path.display(),
        if generated { "generated" } else { "loaded" },
        start.elapsed().as_secs_f64()
    );
    Ok(corpus)
}

fn serve_main(args: &[String]) -> anyhow::Result<()> {
    let bind = args.first().context("--serve ADDR")?;
    let reps: u32 = flag(args, "--reps")?.unwrap_or(1);
    let conference_only = args.iter().any(|a| a == "--conference-only");
    let corpus = load_corpus()?;
    let payload = if conference_only {
        let (data, events, conference) = corpus.filtered(|r| r.kind.is_conference());
        Payload {
            data: data.into(),
            events,
            conference,
            reps,
        }
    } else {
        Payload {
            data: corpus.data.clone(),
            events: corpus.frames.len() as u64,
            conference: corpus.conference_events(),
            reps,
        }
    };
    let server = ReplayServer::start(
        bind,
        Plan::Stream(Arc::new(payload)),
        pin_cpu_for_server(),
        true,
    )?;
    let p = match server_payload(&server, &corpus, conference_only, reps) {
        Some(p) => p,
        None => bail!("no payload"),
    };
    println!(
        "LISTENING {} events={} conference={} bytes={}",
        server.addr(),
        p.0,
        p.1,
        p.2
    );
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}

fn server_payload(
    _server: &ReplayServer,
    corpus: &Corpus,
    conference_only: bool,
    reps: u32,
) -> Option<(u64, u64, u64)> {
    let reps = u64::from(reps);
    if conference_only {
        let conf = corpus.conference_events();
        let bytes: u64 = corpus
            .frames
            .iter()
            .filter(|f| f.kind.is_conference())
            .map(|f| u64::from(f.len))
            .sum();
        Some((conf * reps, conf * reps, bytes * reps))
    } else {
        Some((
            corpus.frames.len() as u64 * reps,
            corpus.conference_events() * reps,
            corpus.data.len() as u64 * reps,
        ))
    }
}

fn pin_cpu_for_server() -> Option<usize> {
    (measure::available_cpus() >= 2).then_some(0)
}

fn pin_cpu_for_client() -> Option<usize> {
    (measure::available_cpus() >= 2).then_some(1)
}

// ------------------------------------------------------------------------------------------------

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// One measured TCP run.
#[derive(Clone, Debug)]
struct Run {
    label: String,
    stream: &'static str,
    report: ChildReport,
    sent_events: u64,
    sent_conference: u64,
    sent_bytes: u64,
    server_complete: bool,
}

impl Run {
    fn events_per_sec(&self) -> f64 {
        let events = if self.report.kind == "raw" {
            self.sent_events
        } else {
            self.report.events
        };
        events as f64 / self.report.secs.max(1e-9)
    }
    fn conf_per_sec(&self) -> f64 {
        let conf = if self.report.kind == "raw" {
            self.sent_conference
        } else {
            self.report.conference
        };
        conf as f64 / self.report.secs.max(1e-9)
    }
    fn mb_per_sec(&self) -> f64 {
        let delivered = if self.report.kind == "raw" {
            self.report.bytes as f64
        } else {
            // Bytes of the events delivered (all of them when nothing was dropped).
            self.sent_bytes as f64 * self.report.events as f64 / self.sent_events.max(1) as f64
        };
        mib(delivered) / self.report.secs.max(1e-9)
    }
    fn drops(&self) -> i64 {
        if self.report.kind == "raw" {
            return 0;
        }
        self.sent_events as i64 - self.report.events as i64
    }
    fn cpu_per_m(&self) -> f64 {
        let events = if self.report.kind == "raw" {
            self.sent_events
        } else {
            self.report.events
        };
        self.report.cpu_secs / (events.max(1) as f64 / 1e6)
    }
}

struct Bench {
    server: ReplayServer,
    exe: PathBuf,
}

impl Bench {
    fn run(
        &self,
        kind: &str,
        label: &str,
        stream: &'static str,
        payload: &Arc<Payload>,
        pause: Option<Duration>,
    ) -> anyhow::Result<Run> {
        self.server.take_reports();
        self.server.set_plan(Plan::Stream(Arc::clone(payload)));
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--child")
            .arg(kind)
            .arg(self.server.addr().to_string())
            .arg("--expect")
            .arg(payload.total_events().to_string());
        if let Some(cpu) = pin_cpu_for_client() {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        if let Some(p) = pause {
            cmd.arg("--pause-ms").arg(p.as_millis().to_string());
        }
        let out = run_with_timeout(cmd, CHILD_TIMEOUT);
        self.server.set_plan(Plan::Close);
        let out = out?;
        let report: ChildReport = serde_json::from_str(out.trim())
            .with_context(|| format!("child {kind} printed {out:?}"))?;
        // The server files its report once the client has closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conns = Vec::new();
        while Instant::now() < deadline {
            conns.extend(self.server.take_reports());
            if conns.iter().any(|c| !c.commands.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let served = conns.iter().find(|c| !c.commands.is_empty());
        let run = Run {
            label: label.to_owned(),
            stream,
            sent_events: served.map_or(0, |c| c.events_sent),
            sent_conference: if served.is_some_and(|c| c.complete) {
                payload.total_conference()
            } else {
                0
            },
            sent_bytes: served.map_or(0, |c| c.bytes_sent),
            server_complete: served.is_some_and(|c| c.complete),
            report,
        };
        eprintln!(
            "  {:<34} {:<16} {:>10} ev/s {:>9} conf/s {:>8.0} MiB/s  {:.2} s  cpu {:.2} s  hwm {:.1} MiB  drops {}{}",
            run.label,
            run.stream,
            fmt_rate(run.events_per_sec()),
            fmt_rate(run.conf_per_sec()),
            run.mb_per_sec(),
            run.report.secs,
            run.report.cpu_secs,
            run.report.vm_hwm_kib as f64 / 1024.0,
            run.drops(),
            if run.report.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", run.report.note)
            }
        );
        Ok(run)
    }
}

/// Runs `cmd`, returns its stdout; kills it (by its own pid) after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> anyhow::Result<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let mut lines = std::io::BufReader::new(stdout);
        let mut line = String::new();
        while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            out.push_str(&line);
            line.clear();
        }
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("child timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    if !status.success() {
        bail!("child failed ({status})");
    }
    Ok(out)
}

fn median_run(mut runs: Vec<Run>) -> Option<Run> {
    runs.sort_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()));
    let n = runs.len();
    runs.into_iter().nth(n / 2)
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

fn bench_main() -> anyhow::Result<()> {
    let wall = Instant::now();
    let mut md = String::new();
    let cpus = measure::available_cpus();
    let _ = writeln!(md, "# ESL ingest benchmark\n");
    let _ = writeln!(
        md,
        "Machine: {cpus} CPUs available, load average at start {}. Server threads pinned to {}, each \
         measured consumer in its own child process pinned to {} on a current-thread tokio runtime \
         (the raw reader: blocking reads).\n",
        measure::load_average().unwrap_or_else(|| "?".into()),
        pin_cpu_for_server().map_or("nothing (1 CPU)".into(), |c| format!("CPU {c}")),
        pin_cpu_for_client().map_or("nothing (1 CPU)".into(), |c| format!("CPU {c}")),
    );

    // 1. Corpus ---------------------------------------------------------------------------------
    let corpus = load_corpus()?;
    let total_bytes = corpus.data.len() as f64;
    let _ = writeln!(
        md,
        "## Corpus\n\n{} events, {:.1} MiB, version {} (seeded StdRng), every frame written by \
         `esl::serialize::event_frame`.\n",
        corpus.frames.len(),
        mib(total_bytes),
        esl_bench::corpus::CORPUS_VERSION
    );
    let _ = writeln!(
        md,
        "| kind | events | % events | MiB | % bytes | avg bytes |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for (kind, s) in corpus.composition() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            kind.label(),
            s.count,
            100.0 * s.count as f64 / corpus.frames.len() as f64,
            mib(s.bytes as f64),
            100.0 * s.bytes as f64 / total_bytes,
            s.bytes / s.count.max(1)
        );
    }
    let (nu_frames, nu_values) = corpus.non_utf8();
    let _ = writeln!(
        md,
        "\n{nu_frames} events carry {nu_values} header values that are not UTF-8 once decoded \
         (`%XX` of Latin-1 caller names and raw legacy bytes).\n"
    );
    print!("{md}");
    let mut printed = md.len();

    // 2. In memory ------------------------------------------------------------------------------
    eprintln!("in-memory decode ...");
    let data = &corpus.data[..];
    let check = decode::decode_pass(data, true)?;
    if check.events != corpus.frames.len() as u64 || check.conference != corpus.conference_events()
    {
        bail!(
            "decode saw {} events / {} conference, the corpus has {} / {}",
            check.events,
            check.conference,
            corpus.frames.len(),
            corpus.conference_events()
        );
    }
    let (memchr_t, memchr_best, terminators) = decode::timed(7, || decode::memchr_pass(data));
    let (decode_t, decode_best, counts) = decode::timed(5, || decode::decode_pass(data, false));
    let counts = counts?;
    let (client_t, client_best, client_counts) = decode::timed(5, || decode::client_pass(data));
    let client_counts = client_counts?;
    let (index_t, index_best, index_counts) = decode::timed(5, || decode::index_only_pass(data));
    let index_counts = index_counts?;
    if client_counts.events != counts.events {
        bail!(
            "the sans-IO client delivered {} events, the decoder {}",
            client_counts.events,
            counts.events
        );
    }
    let memchr_mbs = mib(total_bytes) / memchr_t.as_secs_f64();
    let _ = writeln!(
        md,
        "## In memory (one thread, 64 KiB chunks; median of 5 passes, best in brackets; memchr: 7 passes)\n"
    );
    let _ = writeln!(
        md,
        "| what | events/s | conference events/s | MiB/s | vs memchr |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        md,
        "| memchr::memmem `\\n\\n` scan ({terminators} hits) | - | - | {memchr_mbs:.0} [{:.0}] | 1.000 |",
        mib(total_bytes) / memchr_best.as_secs_f64()
    );
    for (what, median, best, c) in [
        (
            "FrameDecoder + Message::try_from + Event::conference()",
            decode_t,
            decode_best,
            counts,
        ),
        (
            "sans-IO esl::client::Client (handle_input/poll_output) + Event::conference()",
            client_t,
            client_best,
            client_counts,
        ),
        (
            "lower bound, not a parser: FrameDecoder + one line/colon pass per event, no decoding",
            index_t,
            index_best,
            index_counts,
        ),
    ] {
        let mbs = mib(total_bytes) / median.as_secs_f64();
        let _ = writeln!(
            md,
            "| {what} | {} [{}] | {} [{}] | {mbs:.0} [{:.0}] | {:.3} |",
            fmt_rate(c.events as f64 / median.as_secs_f64()),
            fmt_rate(c.events as f64 / best.as_secs_f64()),
            fmt_rate(c.conference as f64 / median.as_secs_f64()),
            fmt_rate(c.conference as f64 / best.as_secs_f64()),
            mib(total_bytes) / best.as_secs_f64(),
            mbs / memchr_mbs
        );
    }
    let _ = writeln!(
        md,
        "\nDecoded {} events ({} conference), {} non-UTF-8 values kept exactly (`get_bytes`), \
         {:.1} MiB of BACKGROUND_JOB bodies.\n",
        check.events,
        check.conference,
        check.non_utf8_values,
        mib(check.body_bytes as f64)
    );
    // Conference-only in memory, for the per-conference-event cost.
    let (conf_data, conf_events, _) = corpus.filtered(|r| r.kind.is_conference());
    let (conf_t, conf_best, conf_counts) =
        decode::timed(5, || decode::decode_pass(&conf_data, false));
    let conf_counts = conf_counts?;
    let _ = writeln!(
        md,
        "Decoder on the conference events only ({conf_events} events, {:.1} MiB): {} [{}] events/s, \
         {:.0} MiB/s.\n",
        mib(conf_data.len() as f64),
        fmt_rate(conf_counts.conference as f64 / conf_t.as_secs_f64()),
        fmt_rate(conf_counts.conference as f64 / conf_best.as_secs_f64()),
        mib(conf_data.len() as f64) / conf_t.as_secs_f64()
    );
    print!("{}", &md[printed..]);
    printed = md.len();

    // 3. Loopback TCP ---------------------------------------------------------------------------
    let mixed = Arc::new(Payload {
        data: corpus.data.clone(),
        events: corpus.frames.len() as u64,
        conference: corpus.conference_events(),
        reps: REPS_FAST,
    });
    let mixed_once = Arc::new(Payload {
        reps: 1,
        data: mixed.data.clone(),
        ..*mixed
    });
    let conf_only = Arc::new(Payload {
        events: conf_events,
        conference: conf_events,
        data: conf_data.into(),
        reps: REPS_FAST,
    });
    let (backlog_data, backlog_conf) =
        corpus.first_n(BACKLOG_EVENTS, |r| r.kind != Kind::BackgroundJob);
    let backlog = Arc::new(Payload {
        data: backlog_data.into(),
        events: BACKLOG_EVENTS,
        conference: backlog_conf,
        reps: 1,
    });
    let server = ReplayServer::start("127.0.0.1:0", Plan::Close, pin_cpu_for_server(), false)?;
    let bench = Bench {
        server,
        exe: std::env::current_exe().context("current_exe")?,
    };
    eprintln!("loopback TCP via {} ...", bench.server.addr());
    let mut all_runs: Vec<Run> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut try_run =
        |kind: &str, label: &str, stream: &'static str, p: &Arc<Payload>, pause| match bench
            .run(kind, label, stream, p, pause)
        {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("  {label} on {stream}: FAILED: {e:#}");
                failures.push(format!("{label} on {stream}: {e:#}"));
                None
            }
        };
    let mut raw_mixed = Vec::new();
    let mut ours_mixed = Vec::new();
    let mut raw_conf = Vec::new();
    let mut ours_conf = Vec::new();
    for _ in 0..TRIALS {
        raw_mixed.extend(try_run("raw", "raw socket reader", "mixed", &mixed, None));
        ours_mixed.extend(try_run(
            "ours",
            "ours: esl::conn::EslClient",
            "mixed",
            &mixed,
            None,
        ));
    }
    for _ in 0..TRIALS {
        raw_conf.extend(try_run(
            "raw",
            "raw socket reader",
            "conference-only",
            &conf_only,
            None,
        ));
        ours_conf.extend(try_run(
            "ours",
            "ours: esl::conn::EslClient",
            "conference-only",
            &conf_only,
            None,
        ));
    }
    let sansio = try_run(
        "ours-sansio",
        "ours: sans-IO Client, bare read loop",
        "mixed",
        &mixed,
        None,
    );
    let fet = try_run(
        "fet",
        "freeswitch-esl-tokio 2.8.0",
        "mixed",
        &mixed_once,
        None,
    );
    let eslrs = try_run("eslrs", "eslrs 0.1.0-rc.3", "mixed", &mixed_once, None);
    let backlog_runs: Vec<Run> = [
        ("ours", "ours: esl::conn::EslClient"),
        ("fet", "freeswitch-esl-tokio 2.8.0"),
        ("eslrs", "eslrs 0.1.0-rc.3"),
    ]
    .iter()
    .filter_map(|(k, l)| try_run(k, l, "backlog 100k", &backlog, Some(BACKLOG_PAUSE)))
    .collect();

    let raw_mixed = median_run(raw_mixed);
    let ours_mixed = median_run(ours_mixed);
    let raw_conf = median_run(raw_conf);
    let ours_conf = median_run(ours_conf);
    for r in [
        &raw_mixed,
        &ours_mixed,
        &raw_conf,
        &ours_conf,
        &sansio,
        &fet,
        &eslrs,
    ]
    .into_iter()
    .flatten()
    {
        all_runs.push(r.clone());
    }

    let _ = writeln!(
        md,
        "## Loopback TCP (median of {TRIALS} trials for raw / ours; mixed stream = corpus x{REPS_FAST} for \
         raw and ours, x1 for peers; conference-only = the conference frames x{REPS_FAST})\n"
    );
    let _ = writeln!(
        md,
        "| consumer | stream | events/s | conference events/s | MiB/s | vs raw reader | CPU-s / M events | events per CPU-s | peak RSS MiB | drops | notes |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let raw_for = |stream: &str| -> Option<&Run> {
        match stream {
            "mixed" => raw_mixed.as_ref(),
            "conference-only" => raw_conf.as_ref(),
            _ => None,
        }
    };
    for r in &all_runs {
        let vs_raw = raw_for(r.stream)
            .filter(|_| r.report.kind != "raw")
            .map(|raw| format!("{:.3}", r.mb_per_sec() / raw.mb_per_sec()))
            .unwrap_or_else(|| "-".into());
        let mut notes = Vec::new();
        if !r.report.note.is_empty() {
            notes.push(r.report.note.clone());
        }
        if r.report.parse_errors > 0 {
            notes.push(format!("{} parse errors", r.report.parse_errors));
        }
        if r.report.lossy_events > 0 {
            notes.push(format!(
                "{} events with lossy values",
                r.report.lossy_events
            ));
        }
        if r.report.lib_dropped > 0 {
            notes.push(format!("library reports {} dropped", r.report.lib_dropped));
        }
        if !r.server_complete {
            notes.push("server did not finish sending".into());
        }
        if !r.report.pinned {
            notes.push("not pinned".into());
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} | {:.2} | {} | {:.1} | {} | {} |",
            r.label,
            r.stream,
            fmt_rate(r.events_per_sec()),
            fmt_rate(r.conf_per_sec()),
            r.mb_per_sec(),
            vs_raw,
            r.cpu_per_m(),
            fmt_rate(1e6 / r.cpu_per_m().max(1e-9)),
            r.report.vm_hwm_kib as f64 / 1024.0,
            r.drops(),
            notes.join("; ")
        );
    }

    let _ = writeln!(
        md,
        "\n### Backlog: {BACKLOG_EVENTS} events (no BACKGROUND_JOB), consumer idle for {:.0} s after subscribing, then drains\n",
        BACKLOG_PAUSE.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| consumer | RSS after the pause MiB | peak RSS MiB | drain s | delivered | drops | notes |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &backlog_runs {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            r.label,
            r.report.rss_after_pause_kib.unwrap_or(0) as f64 / 1024.0,
            r.report.vm_hwm_kib as f64 / 1024.0,
            r.report.drain_secs,
            r.report.events,
            r.drops(),
            r.report.note
        );
    }

    // Peers --------------------------------------------------------------------------------------
    let ours_eps = ours_mixed.as_ref().map(Run::events_per_sec);
    let ours_cpu = ours_mixed.as_ref().map(Run::cpu_per_m);
    let mut peers: Vec<Peer> = Vec::new();
    for r in [&fet, &eslrs].into_iter().flatten() {
        let mut note = String::from("Rust, same run, corpus x1");
        if r.report.kind == "eslrs" {
            note.push_str("; does not percent-decode values (less work than ours)");
        }
        if r.report.kind == "fet" {
            note.push_str("; EventOverflow::BlockFor(60 s) so it does not drop");
        }
        if r.report.lossy_events > 0 {
            let _ = write!(
                note,
                "; {} events with U+FFFD values",
                r.report.lossy_events
            );
        }
        peers.push(Peer {
            label: r.label.clone(),
            eps: r.events_per_sec(),
            cpu_per_m: Some(r.cpu_per_m()),
            note,
        });
    }
    let external = load_external_peers();
    peers.extend(external.iter().cloned());
    let _ = writeln!(md, "\n## Peers (mixed stream)\n");
    let _ = writeln!(
        md,
        "| peer | events/s | ours / peer (wall) | CPU-s / M events | ours / peer (CPU) | notes |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | --- |");
    for p in &peers {
        let ratio = ours_eps.map_or("-".into(), |o| format!("{:.2}", o / p.eps.max(1e-9)));
        let cpu_ratio = ours_cpu
            .zip(p.cpu_per_m)
            .map_or("-".into(), |(o, c)| format!("{:.2}", c / o.max(1e-9)));
        let _ = writeln!(
            md,
            "| {} | {} | {ratio} | {} | {cpu_ratio} | {} |",
            p.label,
            fmt_rate(p.eps),
            p.cpu_per_m.map_or("-".into(), |c| format!("{c:.2}")),
            p.note
        );
    }
    if external.is_empty() {
        let _ = writeln!(
            md,
            "\ngreenswitch (Python) and modesl (Node): not in this table; run `just bench-peers` \
             (results are then included here on the next `just bench`)."
        );
    }

    // Targets ------------------------------------------------------------------------------------
    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| target | measured | result |");
    let _ = writeln!(md, "| --- | --- | --- |");
    let mut target = |name: &str, measured: String, ok: Option<bool>| {
        let _ = writeln!(
            md,
            "| {name} | {measured} | {} |",
            ok.map_or("NOT MEASURED", met)
        );
    };
    let conf_eps = ours_conf.as_ref().map(Run::conf_per_sec);
    let per_cpu = |r: &Run| r.report.conference as f64 / r.report.cpu_secs.max(1e-9);
    target(
        "≥ 500,000 conference events/s, one core, loopback (conference-only stream)",
        ours_conf.as_ref().map_or("-".into(), |r| {
            format!(
                "{} /s wall ({} per CPU-second)",
                fmt_rate(r.conf_per_sec()),
                fmt_rate(per_cpu(r))
            )
        }),
        conf_eps.map(|v| v >= TARGET_CONF_EPS),
    );
    let mixed_conf_eps = ours_mixed.as_ref().map(Run::conf_per_sec);
    target(
        "≥ 500,000 conference events/s within the mixed stream",
        ours_mixed.as_ref().map_or("-".into(), |r| {
            format!(
                "{} /s wall ({} per CPU-second)",
                fmt_rate(r.conf_per_sec()),
                fmt_rate(per_cpu(r))
            )
        }),
        mixed_conf_eps.map(|v| v >= TARGET_CONF_EPS),
    );
    for (stream, ours, raw) in [
        ("conference-only", &ours_conf, &raw_conf),
        ("mixed", &ours_mixed, &raw_mixed),
    ] {
        let ratio = ours
            .as_ref()
            .zip(raw.as_ref())
            .map(|(o, r)| o.mb_per_sec() / r.mb_per_sec());
        target(
            &format!("≥ 50 % of the raw reader ({stream})"),
            ratio.map_or("-".into(), |v| format!("{:.1} %", v * 100.0)),
            ratio.map(|v| v >= TARGET_VS_RAW),
        );
    }
    let fastest_peer = peers
        .iter()
        .max_by(|a, b| a.eps.total_cmp(&b.eps))
        .map(|p| (p.label.clone(), p.eps));
    let peer_ratio = ours_eps
        .zip(fastest_peer.as_ref().map(|p| p.1))
        .map(|(o, p)| o / p);
    target(
        "≥ 2x the fastest peer (mixed stream, events/s)",
        match (&fastest_peer, peer_ratio) {
            (Some((name, _)), Some(r)) => format!("{r:.2}x {name}"),
            _ => "-".into(),
        },
        peer_ratio.map(|r| r >= TARGET_VS_PEER),
    );
    let ours_runs: Vec<&Run> = [&ours_mixed, &ours_conf]
        .into_iter()
        .flatten()
        .chain(backlog_runs.iter().filter(|r| r.report.kind == "ours"))
        .collect();
    let drops: i64 = ours_runs.iter().map(|r| r.drops()).sum();
    target(
        "0 drops (ours, every run above)",
        if ours_runs.is_empty() {
            "-".into()
        } else {
            format!("{drops} dropped")
        },
        (!ours_runs.is_empty()).then_some(drops == 0),
    );
    let backlog_ours = backlog_runs.iter().find(|r| r.report.kind == "ours");
    target(
        "RSS < 64 MiB with a 100,000-event backlog (ours, peak)",
        backlog_ours.map_or("-".into(), |r| {
            format!("{:.1} MiB", r.report.vm_hwm_kib as f64 / 1024.0)
        }),
        backlog_ours.map(|r| (r.report.vm_hwm_kib as f64 / 1024.0) < TARGET_BACKLOG_RSS_MIB),
    );
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Runs that failed\n");
        for f in &failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    let _ = writeln!(
        md,
        "\nHow measured: events/s = events delivered to the consumer / wall time from before \
         connecting to the end of the stream (the raw reader: events sent / its time). MiB/s and \
         'vs raw reader' compare bytes of the same stream. CPU-s = getrusage(RUSAGE_SELF) user+sys \
         of the child over the same span. Peak RSS = VmHWM of the child. Drops = events the server \
         wrote minus events the consumer got. Total bench time {:.0} s.",
        wall.elapsed().as_secs_f64()
    );
    print!("{}", &md[printed..]);
    let out = data_dir().join("esl-ingest.md");
    std::fs::create_dir_all(data_dir())?;
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// A peer row.
#[derive(Clone, Debug)]
struct Peer {
    label: String,
    eps: f64,
    cpu_per_m: Option<f64>,
    note: String,
}

/// Results of `just bench-peers` (greenswitch, modesl), if it ran: one JSON `ChildReport` a line.
fn load_external_peers() -> Vec<Peer> {
    let path = data_dir().join("esl-peers.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let when = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or("?".into(), |d| {
            format!("{:.0} min ago", d.as_secs_f64() / 60.0)
        });
    text.lines()
        .filter_map(|l| serde_json::from_str::<ChildReport>(l).ok())
        .filter(|r| r.kind != "ours" && r.events > 0)
        .map(|r| {
            let mut note = format!("from `just bench-peers` ({when}), its own run");
            if r.parse_errors > 0 {
                let _ = write!(note, "; {} events it could not parse", r.parse_errors);
            }
            if r.lossy_events > 0 {
                let _ = write!(note, "; {} events with U+FFFD values", r.lossy_events);
            }
            if !r.note.is_empty() {
                let _ = write!(note, "; {}", r.note);
            }
            Peer {
                label: r.kind.clone(),
                eps: r.events as f64 / r.secs.max(1e-9),
                cpu_per_m: (r.cpu_secs > 0.0).then(|| r.cpu_secs / (r.events.max(1) as f64 / 1e6)),
                note,
            }
        })
        .collect()
}

fn peers_report_main(args: &[String]) -> anyhow::Result<()> {
    let path = args.first().context("--peers-report FILE")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let reports: Vec<ChildReport> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing peer results")?;
    let ours = reports
        .iter()
        .find(|r| r.kind == "ours" && r.events > 0)
        .map(|r| r.events as f64 / r.secs.max(1e-9));
    let mut md = String::from("# ESL ingest: peers outside Rust (same replay stream)\n\n");
    let _ = writeln!(
        md,
        "| consumer | events | conference | secs | events/s | ours / it | CPU-s / M events | peak RSS MiB | could not parse | lossy (U+FFFD) | notes |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in &reports {
        let eps = r.events as f64 / r.secs.max(1e-9);
        let ratio = match (ours, r.kind.as_str()) {
            (_, "ours") => "1.00".into(),
            (Some(o), _) if eps > 0.0 => format!("{:.2}", o / eps),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {} | {ratio} | {:.2} | {:.1} | {} | {} | {} |",
            r.kind,
            r.events,
            r.conference,
            r.secs,
            fmt_rate(eps),
            r.cpu_secs / (r.events.max(1) as f64 / 1e6),
            r.vm_hwm_kib as f64 / 1024.0,
            r.parse_errors,
            r.lossy_events,
            r.note
        );
    }
    print!("{md}");
    let out = data_dir().join("esl-peers.md");
    std::fs::write(&out, &md)?;
    eprintln!("written to {}", out.display());
    Ok(())
}
