//! Directory benchmark (`just bench-directory`): `POST /freeswitch/directory` `sip_auth`
//! throughput and latency over loopback, side by side with nginx answering the same bytes.
//!
//! 1. Users: N users with one credential each are inserted through `switchyard::store::Store`
//!    into a fresh SQLite file before the service starts (the REST API would take minutes for
//!    100k users); a few more (`--rest-users`) are created through the REST API of the running
//!    service (`PUT /v1/users/{id}`, `POST /v1/users/{id}/sip-credentials`). The expected
//!    a1-hash of every SIP username is known to the bench.
//! 2. Corpus: one REGISTER form per user, built like request #3 of
//!    tests/fixtures/freeswitch/xml-curl-requests.txt, plus 5 % unknown users and 1 % malformed
//!    requests, shuffled; the load generator rotates through it.
//! 3. Servers: `target/release/switchyard` with a generated config (SQLite, API key, node
//!    password, allow_from 127.0.0.1/32, port 0) and nginx (no daemon, no master, one process)
//!    with `return 200 '<the document switchyard returns for one user>'`, both under
//!    `taskset -c <server cpu>`. The load generator (this process, one thread) runs on
//!    `<client cpu>`.
//! 4. Runs: a first pass over the corpus against a cold directory cache (reported), then
//!    closed-loop max throughput at several concurrencies per mode (keep-alive, connection per
//!    request), nginx and switchyard alternating, best of `--rounds`; then open loop at
//!    `--rate` req/s for `--open-secs` per mode and server: p50/p90/p99/max from the scheduled
//!    send time. Every answer is checked: the user's document with the right a1-hash, or
//!    exactly "not found"; nginx's answer byte for byte. Server CPU per request from
//!    /proc/<pid>/stat.
//! 5. The table goes to stdout and to target/bench-data/directory.md.
//!
//! Options: --users N (20000) --rest-users N (200) --rounds N (2) --closed-secs S (1.5)
//! --levels 1,4,16,64 --rate R (5000) --open-secs S (5) --server-cpu N (0) --client-cpu N (1)
//! --switchyard PATH --nginx PATH --out PATH --quick (a short smoke run).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use switchyard::store::{NewSipCredential, Store, UpsertUser};
use switchyard_bench::cli;
use switchyard_bench::corpus::{self, DOMAIN, Expect, KnownUser};
use switchyard_bench::http::Conn;
use switchyard_bench::load::{self, Checker, Mode, Stats, Target};
use switchyard_bench::servers::{self, API_KEY, Server, SwitchyardConfig};

/// Targets of issue 3.
const TARGET_KEEPALIVE_VS_NGINX: f64 = 0.5;
const TARGET_PER_REQUEST_VS_NGINX: f64 = 0.7;
const TARGET_P99_US: f64 = 1000.0;

#[derive(Debug, Clone)]
struct Args {
    users: usize,
    rest_users: usize,
    rounds: usize,
    closed_secs: f64,
    levels: Vec<usize>,
    rate: f64,
    open_secs: f64,
    server_cpu: usize,
    client_cpu: usize,
    switchyard: Option<PathBuf>,
    nginx: Option<PathBuf>,
    out: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            users: 20_000,
            rest_users: 200,
            rounds: 2,
            closed_secs: 1.5,
            levels: vec![1, 4, 16, 64],
            rate: 5000.0,
            open_secs: 5.0,
            server_cpu: 0,
            client_cpu: 1,
            switchyard: None,
            nginx: None,
            out: None,
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        cli::exit_on_help(&flag, include_str!("directory-bench.rs"));
        if flag == "--quick" {
            args.users = args.users.min(2000);
            args.rest_users = args.rest_users.min(20);
            args.rounds = 1;
            args.closed_secs = 0.5;
            args.levels = vec![4, 16];
            args.open_secs = 1.0;
            continue;
        }
        let value = cli::value(&mut it, &flag)?;
        let num = |v: &str| cli::number(&flag, v);
        match flag.as_str() {
            "--users" => args.users = num(&value)? as usize,
            "--rest-users" => args.rest_users = num(&value)? as usize,
            "--rounds" => args.rounds = (num(&value)? as usize).max(1),
            "--closed-secs" => args.closed_secs = num(&value)?,
            "--levels" => {
                args.levels = value
                    .split(',')
                    .map(|v| num(v).map(|n| (n as usize).max(1)))
                    .collect::<anyhow::Result<_>>()?
            }
            "--rate" => args.rate = num(&value)?,
            "--open-secs" => args.open_secs = num(&value)?,
            "--server-cpu" => args.server_cpu = num(&value)? as usize,
            "--client-cpu" => args.client_cpu = num(&value)? as usize,
            "--switchyard" => args.switchyard = Some(value.into()),
            "--nginx" => args.nginx = Some(value.into()),
            "--out" => args.out = Some(value.into()),
            _ => bail!("unknown option {flag} (see --help)"),
        }
    }
    ensure!(args.users >= 1, "--users must be at least 1");
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // Before the runtime exists: every thread of this process inherits the mask.
    if !cli::pin_self(args.client_cpu) {
        eprintln!(
            "warning: cannot pin the load generator to CPU {}",
            args.client_cpu
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(run(args))
}

/// Inserts `n` users with one credential each straight into the store.
async fn seed_store(url: &str, n: usize) -> anyhow::Result<Vec<KnownUser>> {
    let store = Store::connect(url)
        .await
        .context("opening the bench database")?;
    let expires_at = Some(Utc::now() + chrono::Duration::days(1));
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let user_id = format!("u{i:06}");
        store
            .upsert_user(&UpsertUser {
                id: user_id.clone(),
                display_name: format!("Bench User {i}"),
                enabled: true,
            })
            .await
            .context("upsert_user")?;
        // Same shape as issued usernames: `sy` + 22 lowercase alphanumerics.
        let username = format!("syb{i:021}");
        let password = format!("bench-password-{i}-x7Qm2");
        let a1_hash = switchyard::credentials::a1_hash(&username, DOMAIN, &password);
        store
            .insert_sip_credential(&NewSipCredential {
                username: username.clone(),
                user_id,
                realm: DOMAIN.to_owned(),
                a1_hash: a1_hash.clone(),
                expires_at,
            })
            .await
            .context("insert_sip_credential")?;
        users.push(KnownUser { username, a1_hash });
    }
    store.close().await;
    Ok(users)
}

/// One REST call with the bench API key; the response status and body.
async fn rest(
    conn: &mut Conn,
    host: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let body = json.unwrap_or_default();
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = conn
        .round_trip(request.as_bytes())
        .await
        .with_context(|| format!("{method} {path}"))?;
    Ok((
        response.status,
        String::from_utf8_lossy(response.body).into_owned(),
    ))
}

/// Users and credentials through the REST API of the running service.
async fn seed_rest(server: &Server, n: usize) -> anyhow::Result<Vec<KnownUser>> {
    let host = server.addr.to_string();
    let mut conn = Conn::connect(server.addr).await?;
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("rest-{i:05}");
        let (status, text) = rest(
            &mut conn,
            &host,
            "PUT",
            &format!("/v1/users/{id}"),
            Some(&format!(
                r#"{{"display_name":"REST User {i}","enabled":true}}"#
            )),
        )
        .await?;
        ensure!(status == 200, "PUT /v1/users/{id}: {status} {text}");
        let (status, text) = rest(
            &mut conn,
            &host,
            "POST",
            &format!("/v1/users/{id}/sip-credentials"),
            None,
        )
        .await?;
        ensure!(
            status == 201,
            "POST sip-credentials for {id}: {status} {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).context("credential JSON")?;
        let field = |name: &str| {
            json.get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .with_context(|| format!("credential without {name}: {text}"))
        };
        let (username, password, ha1) = (field("username")?, field("password")?, field("ha1")?);
        ensure!(
            switchyard::credentials::a1_hash(&username, DOMAIN, &password) == ha1,
            "ha1 of {username} is not MD5(username:realm:password)"
        );
        users.push(KnownUser {
            username,
            a1_hash: ha1,
        });
    }
    Ok(users)
}

/// Best closed-loop run per (server, mode, concurrency).
#[derive(Debug, Default)]
struct Closed {
    runs: Vec<(&'static str, Mode, usize, Stats)>,
}

impl Closed {
    fn keep_best(&mut self, server: &'static str, mode: Mode, level: usize, stats: Stats) {
        match self
            .runs
            .iter_mut()
            .find(|(s, m, l, _)| *s == server && *m == mode && *l == level)
        {
            Some(slot) if slot.3.rps() >= stats.rps() => {
                // Errors of any round count.
                slot.3.errors += stats.errors;
                slot.3.wrong += stats.wrong;
                if slot.3.first_error.is_none() {
                    slot.3.first_error = stats.first_error;
                }
            }
            Some(slot) => {
                let (errors, wrong) = (slot.3.errors, slot.3.wrong);
                let first = slot.3.first_error.take();
                slot.3 = stats;
                slot.3.errors += errors;
                slot.3.wrong += wrong;
                slot.3.first_error = slot.3.first_error.take().or(first);
            }
            None => self.runs.push((server, mode, level, stats)),
        }
    }

    fn get(&self, server: &str, mode: Mode, level: usize) -> Option<&Stats> {
        self.runs
            .iter()
            .find(|(s, m, l, _)| *s == server && *m == mode && *l == level)
            .map(|r| &r.3)
    }

    /// The best rate over all concurrencies, with its concurrency.
    fn max(&self, server: &str, mode: Mode) -> Option<(usize, &Stats)> {
        self.runs
            .iter()
            .filter(|(s, m, _, _)| *s == server && *m == mode)
            .max_by(|a, b| a.3.rps().total_cmp(&b.3.rps()))
            .map(|r| (r.2, &r.3))
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let target_dir = cli::target_dir();
    let switchyard_bin = args
        .switchyard
        .clone()
        .unwrap_or_else(|| target_dir.join("release/switchyard"));
    ensure!(
        switchyard_bin.is_file(),
        "{} not found: run `cargo build --release -p switchyard` first (or pass --switchyard)",
        switchyard_bin.display()
    );
    let nginx_bin = servers::find_binary(args.nginx.as_deref(), &["nginx"])
        .context("nginx not found: `apt-get install -y nginx-light` (or pass --nginx)")?;
    let dir = tempfile::Builder::new()
        .prefix("directory-bench")
        .tempdir()
        .context("temp dir")?;

    // 1. Users.
    let t = Instant::now();
    let url = servers::database_url(dir.path());
    let mut users = seed_store(&url, args.users).await?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "seeded {} users + credentials through the store in {seed_secs:.1} s",
        args.users
    );
    let config = SwitchyardConfig::new("directory-bench", dir.path());
    let sy =
        servers::start_switchyard(&switchyard_bin, dir.path(), args.server_cpu, &config).await?;
    let t = Instant::now();
    users.extend(seed_rest(&sy, args.rest_users).await?);
    let rest_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "created {} users + credentials through the REST API in {rest_secs:.1} s",
        args.rest_users
    );

    // 2. Corpus and the reference document.
    let (bodies, mix) = corpus::bodies(&users, 0x5157_4954_4348);
    let sy_requests = corpus::requests(&bodies, &sy.addr.to_string());
    let sample = sy_requests
        .iter()
        .find(|r| matches!(r.expect, Expect::User(_)))
        .context("no known user in the corpus")?;
    let document = {
        let mut conn = Conn::connect(sy.addr).await?;
        let response = conn.round_trip(&sample.bytes).await?;
        ensure!(
            response.status == 200,
            "sample request: HTTP {}",
            response.status
        );
        String::from_utf8(response.body.to_vec()).context("document is not UTF-8")?
    };
    ensure!(
        Checker::directory(&users).check(sample.expect, document.as_bytes()),
        "the sample answer is not the user's document:\n{document}"
    );

    // 3. nginx with that document.
    let ngx = servers::start_nginx(&nginx_bin, dir.path(), args.server_cpu, &document).await?;
    let ngx_requests = corpus::requests(&bodies, &ngx.addr.to_string());
    drop(bodies);
    {
        let mut conn = Conn::connect(ngx.addr).await?;
        let response = conn.round_trip(&ngx_requests[0].bytes).await?;
        ensure!(
            response.status == 200 && response.body == document.as_bytes(),
            "nginx does not answer the document (HTTP {})",
            response.status
        );
    }
    let nginx_version = std::process::Command::new(&nginx_bin)
        .arg("-v")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default();

    let targets = [
        Target {
            name: "nginx",
            addr: ngx.addr,
            pid: ngx.pid,
            requests: ngx_requests,
            checker: Checker::Fixed(document.clone().into_bytes()),
            next: 0.into(),
        },
        Target {
            name: "switchyard",
            addr: sy.addr,
            pid: sy.pid,
            requests: sy_requests,
            checker: Checker::directory(&users),
            next: 0.into(),
        },
    ];
    let corpus_len = targets[1].requests.len();

    // 4a. First pass over the corpus against the cold cache (also the warm-up).
    let cold = load::closed_loop(
        &targets[1],
        Mode::KeepAlive,
        16,
        Duration::from_secs(120),
        Some(corpus_len as u64),
    )
    .await;
    eprintln!(
        "cold-cache pass: {} requests, {:.0} req/s, errors {} wrong {}",
        cold.requests(),
        cold.rps(),
        cold.errors,
        cold.wrong
    );
    let _ = load::closed_loop(
        &targets[0],
        Mode::KeepAlive,
        16,
        Duration::from_millis(500),
        None,
    )
    .await;

    // 4b. Closed loop.
    let mut closed = Closed::default();
    let closed_secs = Duration::from_secs_f64(args.closed_secs);
    for round in 0..args.rounds {
        for mode in [Mode::KeepAlive, Mode::PerRequest] {
            for &level in &args.levels {
                for target in &targets {
                    let stats = load::closed_loop(target, mode, level, closed_secs, None).await;
                    eprintln!(
                        "round {} {:<10} {:<12} c={level:<3} {:>8.0} req/s  server {:>5.1} CPU-µs/req ({:>3.0} %)  client {:>3.0} %  errors {} wrong {}",
                        round + 1,
                        target.name,
                        mode.label(),
                        stats.rps(),
                        stats.server_cpu_us(),
                        stats.server_util() * 100.0,
                        stats.client_util() * 100.0,
                        stats.errors,
                        stats.wrong
                    );
                    closed.keep_best(target.name, mode, level, stats);
                }
            }
        }
    }

    // 4c. Open loop at a fixed rate.
    let mut open: Vec<(&'static str, Mode, Stats)> = Vec::new();
    let open_secs = Duration::from_secs_f64(args.open_secs);
    for mode in [Mode::KeepAlive, Mode::PerRequest] {
        for target in &targets {
            let mut stats = load::open_loop(target, mode, args.rate, open_secs).await;
            eprintln!(
                "open {:<10} {:<12} {:>6.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs  errors {} wrong {}",
                target.name,
                mode.label(),
                stats.rps(),
                stats.percentile_us(0.5),
                stats.percentile_us(0.99),
                stats.percentile_us(1.0),
                stats.errors,
                stats.wrong
            );
            open.push((target.name, mode, stats));
        }
    }

    let sy_log = std::fs::read_to_string(&sy.log).unwrap_or_default();
    let sy_log_problems = sy_log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .count();
    ngx.stop().await;
    sy.stop().await;

    // 5. Report.
    let info = Info {
        users: args.users,
        rest_users: args.rest_users,
        seed_secs,
        rest_secs,
        mix,
        corpus_len,
        document_len: document.len(),
        nginx_version,
        server_cpu: args.server_cpu,
        client_cpu: args.client_cpu,
        rate: args.rate,
        open_secs: args.open_secs,
        closed_secs: args.closed_secs,
        rounds: args.rounds,
        levels: args.levels.clone(),
        sy_log_problems,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let report = report(&info, cold, &closed, &mut open);
    println!("{report}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-data/directory.md"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

#[derive(Debug)]
struct Info {
    users: usize,
    rest_users: usize,
    seed_secs: f64,
    rest_secs: f64,
    mix: corpus::Mix,
    corpus_len: usize,
    document_len: usize,
    nginx_version: String,
    server_cpu: usize,
    client_cpu: usize,
    rate: f64,
    open_secs: f64,
    closed_secs: f64,
    rounds: usize,
    levels: Vec<usize>,
    sy_log_problems: usize,
    total_secs: f64,
}

fn yes(ok: bool) -> &'static str {
    if ok { "**yes**" } else { "**NO**" }
}

fn report(
    info: &Info,
    mut cold: Stats,
    closed: &Closed,
    open: &mut [(&'static str, Mode, Stats)],
) -> String {
    let mut r = String::new();
    let pct = |n: usize| 100.0 * n as f64 / info.corpus_len.max(1) as f64;
    let _ = writeln!(
        r,
        "# Directory benchmark: `POST /freeswitch/directory`, `sip_auth`\n"
    );
    let _ = writeln!(
        r,
        "Generated by `just bench-directory` ({}) in {:.0} s. Server core {}, load-generator core {} \
         (one thread). nginx {} (one process) answers `return 200` with the {}-byte document \
         switchyard returns for one user. Corpus: {} users with a credential ({} inserted \
         through the store in {:.1} s, {} through the REST API in {:.1} s); {} requests per pass: \
         {} known ({:.1} %), {} unknown ({:.1} %), {} malformed ({:.1} %), shuffled and rotated. \
         Every answer is checked (the user's document with the right a1-hash, or exactly \"not \
         found\"; nginx byte for byte). CPU-µs/req: server process utime+stime per request. The \
         machine is shared: compare within one run only.\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        info.total_secs,
        info.server_cpu,
        info.client_cpu,
        info.nginx_version,
        info.document_len,
        info.users + info.rest_users,
        info.users,
        info.seed_secs,
        info.rest_users,
        info.rest_secs,
        info.corpus_len,
        info.mix.known,
        pct(info.mix.known),
        info.mix.unknown,
        pct(info.mix.unknown),
        info.mix.malformed,
        pct(info.mix.malformed),
    );

    let _ = writeln!(
        r,
        "## Max throughput (closed loop, {:.1} s per run, best of {} rounds)\n",
        info.closed_secs, info.rounds
    );
    let _ = writeln!(
        r,
        "| mode | conc. | nginx req/s | switchyard req/s | ratio | nginx CPU-µs/req | switchyard CPU-µs/req | CPU ratio (ngx/sy) | switchyard p50 / p99 µs | server CPU % (ngx / sy) | client CPU % (ngx / sy) | errors (ngx / sy) |"
    );
    let _ = writeln!(
        r,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for mode in [Mode::KeepAlive, Mode::PerRequest] {
        for &level in &info.levels {
            let (Some(n), Some(s)) = (
                closed.get("nginx", mode, level),
                closed.get("switchyard", mode, level),
            ) else {
                continue;
            };
            let mut s = s.clone();
            let _ = writeln!(
                r,
                "| {} | {level} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {} / {} |",
                mode.label(),
                n.rps(),
                s.rps(),
                s.rps() / n.rps(),
                n.server_cpu_us(),
                s.server_cpu_us(),
                n.server_cpu_us() / s.server_cpu_us(),
                s.percentile_us(0.5),
                s.percentile_us(0.99),
                n.server_util() * 100.0,
                s.server_util() * 100.0,
                n.client_util() * 100.0,
                s.client_util() * 100.0,
                n.errors + n.wrong,
                s.errors + s.wrong,
            );
        }
    }
    let _ = writeln!(
        r,
        "\nCold cache (first pass over the corpus, keep-alive, 16 connections): {:.0} req/s, \
         p50 {:.0} µs, p99 {:.0} µs, {:.1} CPU-µs/req, errors {}, wrong answers {}.\n",
        cold.rps(),
        cold.percentile_us(0.5),
        cold.percentile_us(0.99),
        cold.server_cpu_us(),
        cold.errors,
        cold.wrong
    );

    let _ = writeln!(
        r,
        "## Latency at {:.0} req/s (open loop, {:.0} s, from the scheduled send time)\n",
        info.rate, info.open_secs
    );
    let _ = writeln!(
        r,
        "| server | mode | req/s | p50 µs | p90 µs | p99 µs | max µs | CPU-µs/req | server CPU % | connections | errors | wrong |"
    );
    let _ = writeln!(
        r,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, mode, s) in open.iter_mut() {
        let _ = writeln!(
            r,
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} | {} |",
            mode.label(),
            s.rps(),
            s.percentile_us(0.5),
            s.percentile_us(0.9),
            s.percentile_us(0.99),
            s.percentile_us(1.0),
            s.server_cpu_us(),
            s.server_util() * 100.0,
            s.connections,
            s.errors,
            s.wrong
        );
    }

    // Targets.
    let _ = writeln!(r, "\n## Targets (issue 3)\n");
    let _ = writeln!(r, "| target | measured | met |");
    let _ = writeln!(r, "|---|---|---|");
    for (mode, goal) in [
        (Mode::KeepAlive, TARGET_KEEPALIVE_VS_NGINX),
        (Mode::PerRequest, TARGET_PER_REQUEST_VS_NGINX),
    ] {
        if let (Some((nl, n)), Some((sl, s))) =
            (closed.max("nginx", mode), closed.max("switchyard", mode))
        {
            let ratio = s.rps() / n.rps();
            let _ = writeln!(
                r,
                "| {}: ≥ {:.0} % of nginx req/s | {:.0} vs {:.0} req/s (c={sl} / c={nl}) = {:.0} % | {} |",
                mode.label(),
                goal * 100.0,
                s.rps(),
                n.rps(),
                ratio * 100.0,
                yes(ratio >= goal)
            );
            // On a shared machine neither server may get a whole core: CPU per request is the
            // steadier figure (what each would do with the core to itself).
            let cpu_ratio = n.server_cpu_us() / s.server_cpu_us();
            let _ = writeln!(
                r,
                "| {}: same, by CPU per request at those runs (1 core each) | {:.1} vs {:.1} CPU-µs/req = {:.0} % | {} |",
                mode.label(),
                s.server_cpu_us(),
                n.server_cpu_us(),
                cpu_ratio * 100.0,
                yes(cpu_ratio >= goal)
            );
        }
    }
    for (name, mode, s) in open.iter_mut() {
        if *name != "switchyard" {
            continue;
        }
        let p99 = s.percentile_us(0.99);
        let _ = writeln!(
            r,
            "| p99 ≤ 1 ms at {:.0} req/s, {} | {:.0} µs | {} |",
            info.rate,
            mode.label(),
            p99,
            yes(p99 <= TARGET_P99_US)
        );
    }
    let sy_runs = closed
        .runs
        .iter()
        .filter(|r| r.0 == "switchyard")
        .map(|r| &r.3)
        .chain(open.iter().filter(|o| o.0 == "switchyard").map(|o| &o.2))
        .chain(std::iter::once(&cold));
    let (mut answered, mut errors, mut wrong) = (0, 0, 0);
    let mut first_error = None;
    for s in sy_runs {
        answered += s.ok + s.wrong;
        errors += s.errors;
        wrong += s.wrong;
        if first_error.is_none() {
            first_error.clone_from(&s.first_error);
        }
    }
    let _ = writeln!(
        r,
        "| zero errors (switchyard, all runs kept in the tables) | {errors} errors{} | {} |",
        first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        yes(errors == 0)
    );
    let _ = writeln!(
        r,
        "| every answer checked, right a1-hash | {answered} answers checked, {wrong} wrong | {} |",
        yes(wrong == 0 && answered > 0)
    );
    let _ = writeln!(
        r,
        "| switchyard log: no WARN/ERROR lines | {} | {} |",
        info.sy_log_problems,
        yes(info.sy_log_problems == 0)
    );
    r
}
