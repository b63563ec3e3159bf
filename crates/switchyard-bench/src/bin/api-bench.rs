//! Conference API benchmark (`just bench-api`, issue 5): `POST /v1/conferences/{name}/invitations`
//! (placement + store + notification) against fsim nodes, and `GET …/members` with 10,000 live
//! members, each side by side with nginx answering the same bytes in the same run.
//!
//! 1. Users: N users (`u00000`…) with one SIP credential each are inserted through
//!    `switchyard::store::Store` before the service starts (fresh SQLite file; with PostgreSQL a
//!    fresh database, dropped at the end). The bench knows every password.
//! 2. Processes: `fsim --nodes K` (the FreeSWITCH pool; its mod_xml_curl directory points at
//!    Switchyard, HEARTBEAT every 5 s) and `target/release/switchyard` with a generated config
//!    (the K nodes with `capacity = 5000`, an API key with every scope, the node password, log
//!    filter `info` as JSON to a file). Switchyard and nginx run under `taskset -c <server
//!    cpu>`; this process (one thread) and fsim under `<client cpu>`.
//! 3. Invitations: closed loop at each `--invite-levels` concurrency, keep-alive: every worker
//!    takes the next conference and sends its 5 invitations in a row (5 different users); the
//!    first one places the conference (reads every node's load, claims the name in the
//!    database), every one stores the invitation and publishes the `Invited` event. Each answer
//!    must be 201 with the user and a node; anything else is an error. Then open loop at
//!    `--invite-rate` invitations/s (latency from the scheduled send time). nginx answers the
//!    same requests with `return 200` and a captured invitation answer (same bytes).
//! 4. Live members: `--conferences` conferences × `--per-conference` users are invited (setup,
//!    timed), then every user calls into its conference through fsim's control port
//!    (`POST /nodes/{node}/calls`, on the node the invitation answer named): fsim asks
//!    Switchyard's directory (digest check), joins the conference and sends the
//!    `conference::maintenance` events Switchyard turns into live members. Once `GET /v1/nodes`
//!    counts them all: closed loop (each `--read-levels`) and open loop (`--read-rate`) of
//!    `GET /v1/conferences/{name}/members` (every answer must list the conference's members) and
//!    `GET /v1/members?user_id=…` (exactly the user's one membership); nginx serves one
//!    captured answer of each.
//! 5. Closed-loop runs alternate nginx and switchyard, best of `--rounds` (errors of every
//!    round count). CPU from /proc: server CPU-µs per request, the load generator's and fsim's
//!    CPU, and "other load": busy CPU of the machine that none of them used (noise).
//! 6. The tables go to stdout and to target/bench-data/api.md.
//!
//! Options: --users N (10000) --conferences N (1000) --per-conference N (10) --nodes N (16)
//! --invite-levels 1,8,32 --read-levels 1,8,32 --rounds N (2) --closed-secs S (2)
//! --invite-rate R (200) --read-rate R (1000) --open-secs S (4) --setup-concurrency N (32)
//! --backends sqlite[,postgres] (default sqlite, plus postgres when DATABASE_URL is set)
//! --database-url URL (PostgreSQL server to create the bench database on; default
//! DATABASE_URL) --no-pg-analyze (skip the ANALYZE after the invitation warm-up and after
//! the members joined) --log-filter F (info) --server-cpu N (0) --client-cpu N (1)
//! --switchyard PATH --fsim PATH --nginx PATH --out PATH --quick (a short smoke run).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use futures_util::StreamExt as _;
use memchr::memmem;
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use switchyard::store::{NewSipCredential, Store, StoreOptions, UpsertUser};
use switchyard_bench::apiload::{self, Run, Workload};
use switchyard_bench::cli;
use switchyard_bench::corpus::DOMAIN;
use switchyard_bench::fsim::{Fsim, FsimOptions};
use switchyard_bench::rest::{self, Client};
use switchyard_bench::servers::{self, NODE_CAPACITY, NginxLocation, Server, SwitchyardConfig};

/// Invitations per conference in the invitation runs.
const INVITES_PER_CONFERENCE: u64 = 5;
/// Scopes of the bench API key: users, credentials, nodes and conferences.
const SCOPES: &[&str] = &[
    "users:read",
    "users:write",
    "credentials:issue",
    "nodes:read",
    "nodes:write",
    "conferences:read",
    "conferences:write",
];
/// fsim's HEARTBEAT interval.
const HEARTBEAT_SECS: u64 = 5;
/// Host header of every request (both servers ignore it).
const HOST: &str = "127.0.0.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    users: usize,
    conferences: usize,
    per_conference: usize,
    nodes: usize,
    invite_levels: Vec<usize>,
    read_levels: Vec<usize>,
    rounds: usize,
    closed_secs: f64,
    invite_rate: f64,
    read_rate: f64,
    open_secs: f64,
    setup_concurrency: usize,
    backends: Vec<Backend>,
    database_url: Option<String>,
    log_filter: String,
    /// PostgreSQL: `ANALYZE` after the warm-up and after the members joined.
    pg_analyze: bool,
    server_cpu: usize,
    client_cpu: usize,
    switchyard: Option<PathBuf>,
    fsim: Option<PathBuf>,
    nginx: Option<PathBuf>,
    out: Option<PathBuf>,
    quick: bool,
}

impl Default for Args {
    fn default() -> Self {
        let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        let mut backends = vec![Backend::Sqlite];
        if database_url.is_some() {
            backends.push(Backend::Postgres);
        }
        Self {
            users: 10_000,
            conferences: 1000,
            per_conference: 10,
            nodes: 16,
            invite_levels: vec![1, 8, 32],
            read_levels: vec![1, 8, 32],
            rounds: 2,
            closed_secs: 2.0,
            invite_rate: 200.0,
            read_rate: 1000.0,
            open_secs: 4.0,
            setup_concurrency: 32,
            backends,
            database_url,
            log_filter: "info".to_owned(),
            pg_analyze: true,
            server_cpu: 0,
            client_cpu: 1,
            switchyard: None,
            fsim: None,
            nginx: None,
            out: None,
            quick: false,
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        cli::exit_on_help(&flag, include_str!("api-bench.rs"));
        if flag == "--quick" {
            args.quick = true;
            args.users = 400;
            args.conferences = 20;
            args.per_conference = 10;
            args.nodes = 2;
            args.invite_levels = vec![4];
            args.read_levels = vec![4];
            args.rounds = 1;
            args.closed_secs = 0.5;
            args.invite_rate = 100.0;
            args.read_rate = 500.0;
            args.open_secs = 0.5;
            args.setup_concurrency = 8;
            args.backends = vec![Backend::Sqlite];
            continue;
        }
        if flag == "--no-pg-analyze" {
            args.pg_analyze = false;
            continue;
        }
        let value = cli::value(&mut it, &flag)?;
        let num = |v: &str| cli::number(&flag, v);
        let levels = |v: &str| -> anyhow::Result<Vec<usize>> {
            v.split(',')
                .map(|v| num(v).map(|n| (n as usize).max(1)))
                .collect()
        };
        match flag.as_str() {
            "--users" => args.users = num(&value)? as usize,
            "--conferences" => args.conferences = num(&value)? as usize,
            "--per-conference" => args.per_conference = num(&value)? as usize,
            "--nodes" => args.nodes = num(&value)? as usize,
            "--invite-levels" => args.invite_levels = levels(&value)?,
            "--read-levels" => args.read_levels = levels(&value)?,
            "--rounds" => args.rounds = (num(&value)? as usize).max(1),
            "--closed-secs" => args.closed_secs = num(&value)?,
            "--invite-rate" => args.invite_rate = num(&value)?,
            "--read-rate" => args.read_rate = num(&value)?,
            "--open-secs" => args.open_secs = num(&value)?,
            "--setup-concurrency" => args.setup_concurrency = (num(&value)? as usize).max(1),
            "--backends" => {
                args.backends = value
                    .split(',')
                    .map(|b| match b.trim() {
                        "sqlite" => Ok(Backend::Sqlite),
                        "postgres" | "postgresql" => Ok(Backend::Postgres),
                        other => bail!("--backends: unknown backend {other:?}"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--database-url" => args.database_url = Some(value),
            "--log-filter" => args.log_filter = value,
            "--server-cpu" => args.server_cpu = num(&value)? as usize,
            "--client-cpu" => args.client_cpu = num(&value)? as usize,
            "--switchyard" => args.switchyard = Some(value.into()),
            "--fsim" => args.fsim = Some(value.into()),
            "--nginx" => args.nginx = Some(value.into()),
            "--out" => args.out = Some(value.into()),
            _ => bail!("unknown option {flag} (see --help)"),
        }
    }
    ensure!(
        args.nodes >= 1 && args.nodes <= 1000,
        "--nodes must be 1..=1000"
    );
    ensure!(
        args.conferences >= 1 && args.per_conference >= 1,
        "--conferences and --per-conference must be at least 1"
    );
    ensure!(
        args.users >= args.conferences * args.per_conference
            && args.users >= INVITES_PER_CONFERENCE as usize,
        "--users must be at least --conferences × --per-conference (each member is a different \
         user) and at least {INVITES_PER_CONFERENCE}"
    );
    ensure!(!args.backends.is_empty(), "--backends is empty");
    if args.backends.contains(&Backend::Postgres) {
        ensure!(
            args.database_url.is_some(),
            "postgres needs --database-url or DATABASE_URL"
        );
    }
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

fn user_id(i: u64) -> String {
    format!("u{i:05}")
}

/// Same shape as issued usernames: `sy` + 22 lowercase alphanumerics.
fn sip_username(i: u64) -> String {
    format!("syb{i:021}")
}

fn sip_password(i: u64) -> String {
    format!("bench-password-{i}-x7Qm2")
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    memmem::find_iter(haystack, needle).count()
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// `POST /v1/conferences/inv-{c}/invitations`: index `i` is invitation `i % 5` of conference
/// `i / 5`, for user `(i) % users` (5 different users per conference).
#[derive(Debug)]
struct Invite {
    users: u64,
    /// nginx: the exact bytes it must answer.
    fixed: Option<Vec<u8>>,
}

impl Invite {
    fn parts(&self, i: u64) -> (u64, u64, String) {
        let (c, j) = (i / INVITES_PER_CONFERENCE, i % INVITES_PER_CONFERENCE);
        (c, j, user_id(i % self.users))
    }
}

impl Workload for Invite {
    fn request(&self, i: u64, buf: &mut Vec<u8>) -> usize {
        let (c, j, user) = self.parts(i);
        let body = format!(
            r#"{{"user_id":"{user}","caller_id":"Bench Caller","message":"Daily standup, room {c}"}}"#
        );
        buf.extend_from_slice(&rest::request(
            "POST",
            HOST,
            &format!("/v1/conferences/inv-{c:07}/invitations"),
            Some(&body),
        ));
        usize::from(j != 0)
    }

    fn check(&self, i: u64, status: u16, body: &[u8]) -> Result<(), String> {
        if let Some(fixed) = &self.fixed {
            return if body == fixed.as_slice() {
                Ok(())
            } else {
                Err("not the reference bytes".to_owned())
            };
        }
        if status != 201 {
            return Err(format!("HTTP {status}, expected 201 (a new invitation)"));
        }
        let (_, _, user) = self.parts(i);
        let user_needle = format!("\"user_id\":\"{user}\"");
        if memmem::find(body, user_needle.as_bytes()).is_none()
            || memmem::find(body, b"\"node\":{\"id\":\"fs").is_none()
        {
            return Err(format!(
                "no {user_needle} or no node in {}",
                String::from_utf8_lossy(body)
            ));
        }
        Ok(())
    }

    fn batch(&self) -> u64 {
        INVITES_PER_CONFERENCE
    }

    fn classes(&self) -> &'static [&'static str] {
        &["1st (places)", "2nd-5th"]
    }
}

/// `GET /v1/conferences/{name}/members` over the member conferences, shuffled.
#[derive(Debug)]
struct ConferenceMembers {
    names: Vec<String>,
    per_conference: usize,
    fixed: Option<Vec<u8>>,
}

impl Workload for ConferenceMembers {
    fn request(&self, i: u64, buf: &mut Vec<u8>) -> usize {
        let name = &self.names[(i % self.names.len() as u64) as usize];
        buf.extend_from_slice(&rest::request(
            "GET",
            HOST,
            &format!("/v1/conferences/{name}/members"),
            None,
        ));
        0
    }

    fn check(&self, _i: u64, _status: u16, body: &[u8]) -> Result<(), String> {
        if let Some(fixed) = &self.fixed {
            return if body == fixed.as_slice() {
                Ok(())
            } else {
                Err("not the reference bytes".to_owned())
            };
        }
        let n = count(body, b"\"member_id\":");
        if n == self.per_conference {
            Ok(())
        } else {
            Err(format!("{n} members, expected {}", self.per_conference))
        }
    }
}

/// `GET /v1/members?user_id=…` over the member users, shuffled: one membership each.
#[derive(Debug)]
struct UserMembers {
    users: Vec<String>,
    fixed: Option<Vec<u8>>,
}

impl Workload for UserMembers {
    fn request(&self, i: u64, buf: &mut Vec<u8>) -> usize {
        let user = &self.users[(i % self.users.len() as u64) as usize];
        buf.extend_from_slice(&rest::request(
            "GET",
            HOST,
            &format!("/v1/members?user_id={user}"),
            None,
        ));
        0
    }

    fn check(&self, i: u64, _status: u16, body: &[u8]) -> Result<(), String> {
        if let Some(fixed) = &self.fixed {
            return if body == fixed.as_slice() {
                Ok(())
            } else {
                Err("not the reference bytes".to_owned())
            };
        }
        let user = &self.users[(i % self.users.len() as u64) as usize];
        let needle = format!("\"user_id\":\"{user}\"");
        let n = count(body, b"\"member_id\":");
        if n == 1 && memmem::find(body, needle.as_bytes()).is_some() {
            Ok(())
        } else {
            Err(format!("{n} memberships for {user}, expected 1"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Setup.

/// Inserts `n` users with one credential each straight into the store.
async fn seed_store(url: &str, n: usize) -> anyhow::Result<()> {
    let options = StoreOptions {
        max_connections: 8,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(url, &options)
        .await
        .context("opening the bench database")?;
    let expires_at = Some(Utc::now() + chrono::Duration::days(1));
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..n as u64)
        .map(|i| {
            let store = store.clone();
            async move {
                let id = user_id(i);
                store
                    .upsert_user(&UpsertUser {
                        id: id.clone(),
                        display_name: format!("Bench User {i}"),
                        enabled: true,
                    })
                    .await
                    .context("upsert_user")?;
                let username = sip_username(i);
                let a1_hash = switchyard::credentials::a1_hash(&username, DOMAIN, &sip_password(i));
                store
                    .insert_sip_credential(&NewSipCredential {
                        username,
                        user_id: id,
                        realm: DOMAIN.to_owned(),
                        a1_hash,
                        expires_at,
                    })
                    .await
                    .context("insert_sip_credential")?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    store.close().await;
    results.into_iter().collect()
}

/// A fresh PostgreSQL database on the server of `admin_url`, dropped by [`PgDatabase::drop_db`].
#[derive(Debug)]
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let after_scheme = base.find("://").context("database URL without ://")? + 3;
    let path_start = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |p| after_scheme + p);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (install postgresql-client)")?;
    ensure!(
        output.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

impl PgDatabase {
    fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("switchyard_api_bench_{}", std::process::id());
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name)?,
            name,
        })
    }

    /// `ANALYZE` of the bench database: what autovacuum does within a minute or so, and what
    /// makes PostgreSQL replan the service's prepared statements with real statistics.
    fn analyze(&self) -> anyhow::Result<()> {
        psql(&with_database(&self.admin_url, &self.name)?, "ANALYZE")
    }

    /// The server processes of the connections to the bench database now.
    fn backend_pids(&self) -> anyhow::Result<Vec<u32>> {
        let output = std::process::Command::new("psql")
            .arg(&self.admin_url)
            .args(["-At", "-c"])
            .arg(format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ))
            .output()
            .context("running psql")?;
        ensure!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse().context("pid from pg_stat_activity"))
            .collect()
    }

    fn drop_db(&self) -> anyhow::Result<()> {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
    }
}

fn load_field(node: &serde_json::Value, field: &str) -> u64 {
    node.get("load")
        .and_then(|l| l.get(field))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// Invites `per` users into each of `conferences` conferences (`m0000`…; conference `c` gets
/// users `c*per`…): returns each conference's node.
async fn invite_members(
    addr: std::net::SocketAddr,
    conferences: usize,
    per: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let next = Cell::new(0usize);
    let placed: std::cell::RefCell<Vec<Option<String>>> = vec![None; conferences].into();
    let worker = || async {
        let mut client = Client::new(addr);
        loop {
            let c = next.get();
            if c >= conferences {
                return Ok::<_, anyhow::Error>(());
            }
            next.set(c + 1);
            let mut node: Option<String> = None;
            for k in 0..per {
                let user = user_id((c * per + k) as u64);
                let body = format!(
                    r#"{{"user_id":"{user}","caller_id":"Bench Caller","message":"Members run"}}"#
                );
                let json = client
                    .json(
                        "POST",
                        &format!("/v1/conferences/m{c:04}/invitations"),
                        Some(&body),
                        201,
                    )
                    .await?;
                let id = json
                    .get("node")
                    .and_then(|n| n.get("id"))
                    .and_then(|n| n.as_str())
                    .context("invitation answer without node.id")?;
                match &node {
                    Some(first) => ensure!(first == id, "m{c:04} moved from {first} to {id}"),
                    None => node = Some(id.to_owned()),
                }
            }
            if let Some(slot) = placed.borrow_mut().get_mut(c) {
                *slot = node;
            }
        }
    };
    let results = futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    for r in results {
        r?;
    }
    placed
        .into_inner()
        .into_iter()
        .enumerate()
        .map(|(c, node)| node.with_context(|| format!("m{c:04} not placed")))
        .collect()
}

/// Every member user calls into its conference through fsim's control port; returns the
/// failures that remained after retries.
async fn place_calls(
    control: std::net::SocketAddr,
    placed: &[String],
    per: usize,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let total = placed.len() * per;
    let next = Cell::new(0usize);
    let failures = Cell::new(0u64);
    let first_error: std::cell::RefCell<Option<String>> = None.into();
    let worker = || async {
        let mut client = Client::new(control);
        loop {
            let m = next.get();
            if m >= total {
                return;
            }
            next.set(m + 1);
            let (c, i) = (m / per, m as u64);
            let Some(node) = placed.get(c) else {
                return;
            };
            let body = format!(
                r#"{{"user":"{}","password":"{}","conference":"m{c:04}","profile":"audio"}}"#,
                sip_username(i),
                sip_password(i)
            );
            let path = format!("/nodes/{node}/calls");
            let mut attempt = 0;
            loop {
                attempt += 1;
                match client.call("POST", &path, Some(&body)).await {
                    Ok((201, _)) => break,
                    outcome => {
                        if attempt >= 3 {
                            failures.set(failures.get() + 1);
                            let mut first = first_error.borrow_mut();
                            if first.is_none() {
                                *first = Some(format!("{path} {body}: {outcome:?}"));
                            }
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    if let Some(e) = first_error.into_inner() {
        eprintln!("call failures: {} (first: {e})", failures.get());
    }
    Ok(failures.get())
}

/// Waits until `GET /v1/nodes` counts `expected` live members; the per-node counts.
async fn wait_members(
    client: &mut Client,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, u64)>> {
    let start = Instant::now();
    loop {
        let list = client.nodes().await?;
        let counts: Vec<(String, u64)> = list
            .iter()
            .map(|n| {
                (
                    n.get("id")
                        .and_then(|i| i.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    load_field(n, "members"),
                )
            })
            .collect();
        let total: u64 = counts.iter().map(|c| c.1).sum();
        if total >= expected {
            return Ok(counts);
        }
        ensure!(
            start.elapsed() < timeout,
            "only {total} of {expected} live members after {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Runs.

/// Best closed-loop run per (endpoint, server, concurrency).
#[derive(Debug, Default)]
struct Closed {
    runs: Vec<(&'static str, &'static str, usize, Run)>,
}

impl Closed {
    fn keep_best(&mut self, endpoint: &'static str, server: &'static str, level: usize, run: Run) {
        let slot = self
            .runs
            .iter_mut()
            .find(|(e, s, l, _)| *e == endpoint && *s == server && *l == level);
        match slot {
            Some(slot) => {
                let (errors, wrong) = (slot.3.stats.errors, slot.3.stats.wrong);
                let first = slot.3.stats.first_error.take();
                if run.stats.rps() > slot.3.stats.rps() {
                    let (e2, w2) = (run.stats.errors, run.stats.wrong);
                    let f2 = run.stats.first_error.clone();
                    slot.3 = run;
                    slot.3.stats.errors = errors + e2;
                    slot.3.stats.wrong = wrong + w2;
                    slot.3.stats.first_error = first.or(f2);
                } else {
                    slot.3.stats.errors += run.stats.errors;
                    slot.3.stats.wrong += run.stats.wrong;
                    slot.3.stats.first_error = first.or(run.stats.first_error);
                }
            }
            None => self.runs.push((endpoint, server, level, run)),
        }
    }

    fn get(&self, endpoint: &str, server: &str, level: usize) -> Option<&Run> {
        self.runs
            .iter()
            .find(|(e, s, l, _)| *e == endpoint && *s == server && *l == level)
            .map(|r| &r.3)
    }

    fn best(&self, endpoint: &str, server: &str) -> Option<(usize, &Run)> {
        self.runs
            .iter()
            .filter(|(e, s, _, _)| *e == endpoint && *s == server)
            .max_by(|a, b| a.3.stats.rps().total_cmp(&b.3.stats.rps()))
            .map(|r| (r.2, &r.3))
    }
}

fn log_run(label: &str, server: &str, level: &str, run: &Run) {
    let mut run = run.clone();
    eprintln!(
        "{label:<22} {server:<10} {level:<8} {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  server {:>6.1} CPU-µs/req ({:>3.0} %)  client {:>3.0} %  other {:>3.0} %  errors {} wrong {}{}",
        run.stats.rps(),
        run.stats.percentile_us(0.5),
        run.stats.percentile_us(0.99),
        run.stats.server_cpu_us(),
        run.stats.server_util() * 100.0,
        run.stats.client_util() * 100.0,
        run.foreign_util() * 100.0,
        run.stats.errors,
        run.stats.wrong,
        run.stats
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
}

/// Closed loop at every level, `rounds` times, nginx and switchyard alternating.
async fn closed_runs<W: Workload>(
    closed: &mut Closed,
    endpoint: &'static str,
    targets: [(&'static str, apiload::Server, &W, &Cell<u64>); 2],
    others: &[u32],
    levels: &[usize],
    rounds: usize,
    secs: f64,
) {
    for round in 0..rounds {
        for &level in levels {
            for (name, server, workload, next) in &targets {
                let run = apiload::closed_loop(
                    *server,
                    others,
                    *workload,
                    next,
                    level,
                    Duration::from_secs_f64(secs),
                    None,
                )
                .await;
                log_run(
                    &format!("{endpoint} r{}", round + 1),
                    name,
                    &format!("c={level}"),
                    &run,
                );
                closed.keep_best(endpoint, name, level, run);
            }
        }
    }
}

/// Open loop at `rate` for both servers.
async fn open_runs<W: Workload>(
    open: &mut Vec<(&'static str, &'static str, f64, Run)>,
    endpoint: &'static str,
    targets: [(&'static str, apiload::Server, &W, &Cell<u64>); 2],
    others: &[u32],
    rate: f64,
    secs: f64,
) {
    for (name, server, workload, next) in &targets {
        let run = apiload::open_loop(
            *server,
            others,
            *workload,
            next,
            rate,
            Duration::from_secs_f64(secs),
        )
        .await;
        log_run(
            &format!("{endpoint} open"),
            name,
            &format!("{rate}/s"),
            &run,
        );
        open.push((endpoint, *name, rate, run));
    }
}

// ---------------------------------------------------------------------------------------------
// One backend.

const EP_INVITE: &str = "POST …/invitations";
const EP_CONF_MEMBERS: &str = "GET …/{name}/members";
const EP_USER_MEMBERS: &str = "GET /v1/members?user_id";

#[derive(Debug)]
struct Binaries {
    switchyard: PathBuf,
    fsim: PathBuf,
    nginx: PathBuf,
}

#[derive(Debug, Default)]
struct Setup {
    seed_secs: f64,
    nodes_up_secs: f64,
    invite_answer_len: usize,
    invite_conferences: u64,
    member_invites: u64,
    member_invite_secs: f64,
    member_invite_sy_cpu: f64,
    calls: u64,
    call_failures: u64,
    calls_secs: f64,
    members_visible_secs: f64,
    calls_sy_cpu: Duration,
    calls_fsim_cpu: Duration,
    per_node_members: Vec<(String, u64)>,
    conf_members_len: usize,
    user_members_len: usize,
    nginx_static_members: bool,
}

#[derive(Debug)]
struct BackendReport {
    backend: Backend,
    setup: Setup,
    invites: Vec<InviteRow>,
    pg_pids: usize,
    closed: Closed,
    open: Vec<(&'static str, &'static str, f64, Run)>,
    sy_log_problems: Vec<String>,
    sy_log_lines: usize,
    fsim_log_lines: usize,
    secs: f64,
}

async fn bench_backend(
    args: &Args,
    backend: Backend,
    bins: &Binaries,
) -> anyhow::Result<BackendReport> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("api-bench")
        .tempdir()
        .context("temp dir")?;
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgDatabase::create(
            args.database_url.as_deref().unwrap_or_default(),
        )?),
    };
    let result = bench_in(args, backend, bins, dir.path(), pg.as_ref()).await;
    if let Some(pg) = &pg
        && let Err(e) = pg.drop_db()
    {
        eprintln!(
            "warning: could not drop the bench database {}: {e:#}",
            pg.name
        );
    }
    let mut report = result?;
    report.secs = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn bench_in(
    args: &Args,
    backend: Backend,
    bins: &Binaries,
    dir: &Path,
    pg: Option<&PgDatabase>,
) -> anyhow::Result<BackendReport> {
    let mut setup = Setup::default();
    let database_url = match pg {
        Some(pg) => pg.url.clone(),
        None => servers::database_url(dir),
    };

    // 1. Users.
    let t = Instant::now();
    seed_store(&database_url, args.users).await?;
    setup.seed_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "[{}] seeded {} users + credentials in {:.1} s",
        backend.label(),
        args.users,
        setup.seed_secs
    );

    // 2. fsim, then switchyard on a port reserved for it (fsim's directory URL names it).
    let port = servers::free_port()?;
    let fsim = Fsim::start(
        &bins.fsim,
        dir,
        &FsimOptions::for_switchyard(args.nodes, HEARTBEAT_SECS, port, args.client_cpu),
    )
    .await?;
    let config = SwitchyardConfig {
        port,
        database_url,
        log_filter: &args.log_filter,
        scopes: SCOPES,
        nodes: &fsim.nodes,
        ..SwitchyardConfig::new("api-bench", dir)
    };
    let sy = servers::start_switchyard(&bins.switchyard, dir, args.server_cpu, &config).await?;
    let mut admin = Client::new(sy.addr);
    setup.nodes_up_secs = admin.wait_nodes_up(args.nodes).await?.as_secs_f64();
    eprintln!(
        "[{}] {} fsim nodes up in {:.1} s",
        backend.label(),
        args.nodes,
        setup.nodes_up_secs
    );
    let result = bench_running(
        args,
        backend,
        bins,
        dir,
        Procs {
            sy: &sy,
            fsim: &fsim,
            pg,
        },
        &mut setup,
    )
    .await;
    let sy_log = std::fs::read_to_string(&sy.log).unwrap_or_default();
    let fsim_log = std::fs::read_to_string(&fsim.log).unwrap_or_default();
    sy.stop().await;
    fsim.stop().await;
    let measured = result?;
    let sy_log_problems: Vec<String> = sy_log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .map(|l| l.chars().take(400).collect())
        .collect();
    Ok(BackendReport {
        backend,
        setup,
        invites: measured.invites,
        closed: measured.closed,
        open: measured.open,
        pg_pids: measured.pg_pids,
        sy_log_problems,
        sy_log_lines: sy_log.lines().count(),
        fsim_log_lines: fsim_log.lines().count(),
        secs: 0.0,
    })
}

type OpenRuns = Vec<(&'static str, &'static str, f64, Run)>;

/// What the runs of one backend measured.
#[derive(Debug, Default)]
struct Measured {
    invites: Vec<InviteRow>,
    closed: Closed,
    open: OpenRuns,
    /// PostgreSQL server processes metered with the runs.
    pg_pids: usize,
}

/// The processes of one backend's run.
#[derive(Debug, Clone, Copy)]
struct Procs<'a> {
    sy: &'a Server,
    fsim: &'a Fsim,
    pg: Option<&'a PgDatabase>,
}

async fn bench_running(
    args: &Args,
    backend: Backend,
    bins: &Binaries,
    dir: &Path,
    procs: Procs<'_>,
    setup: &mut Setup,
) -> anyhow::Result<Measured> {
    let Procs { sy, fsim, pg } = procs;
    let label = backend.label();
    let mut closed = Closed::default();
    let mut open: OpenRuns = Vec::new();
    let mut others = vec![fsim.pid];
    let sy_target = apiload::Server {
        addr: sy.addr,
        pid: sy.pid,
    };

    // 3. Invitations. Warm-up (also captures a typical answer: a 2nd invitation).
    let invite = Invite {
        users: args.users as u64,
        fixed: None,
    };
    let sy_next = Cell::new(0u64);
    let warm = apiload::closed_loop(
        sy_target,
        &others,
        &invite,
        &sy_next,
        8,
        Duration::from_secs(60),
        Some(if args.quick { 20 } else { 250 }),
    )
    .await;
    log_run("invite warm-up", "switchyard", "c=8", &warm);
    ensure!(
        warm.stats.errors + warm.stats.wrong == 0,
        "invitation warm-up failed: {:?}",
        warm.stats.first_error
    );
    // With PostgreSQL, its server processes share the machine: metered like fsim.
    let mut pg_pids = 0;
    if let Some(pg) = pg {
        if args.pg_analyze {
            pg.analyze()?;
        }
        let pids = pg.backend_pids()?;
        pg_pids = pids.len();
        others.extend(pids);
    }
    let answer = {
        let i = sy_next.get() + 1;
        let mut buf = Vec::new();
        invite.request(sy_next.get(), &mut buf);
        let mut conn = switchyard_bench::http::Conn::connect(sy.addr).await?;
        let _ = conn.round_trip(&buf).await?;
        buf.clear();
        invite.request(i, &mut buf);
        let response = conn.round_trip(&buf).await?;
        ensure!(
            response.status == 201,
            "sample invitation: HTTP {}",
            response.status
        );
        invite
            .check(i, response.status, response.body)
            .map_err(anyhow::Error::msg)?;
        let text = String::from_utf8(response.body.to_vec()).context("answer is not UTF-8")?;
        sy_next.set(i + INVITES_PER_CONFERENCE - 1);
        text
    };
    // Start on a conference boundary.
    let rem = sy_next.get() % INVITES_PER_CONFERENCE;
    if rem != 0 {
        sy_next.set(sy_next.get() + INVITES_PER_CONFERENCE - rem);
    }
    setup.invite_answer_len = answer.len();
    let ngx = servers::start_nginx_locations(
        &bins.nginx,
        dir,
        args.server_cpu,
        &[NginxLocation {
            matcher: "~ ^/v1/conferences/[^/]+/invitations$".to_owned(),
            content_type: "application/json".to_owned(),
            body: answer.clone(),
        }],
    )
    .await?;
    let ngx_target = apiload::Server {
        addr: ngx.addr,
        pid: ngx.pid,
    };
    let ngx_invite = Invite {
        users: args.users as u64,
        fixed: Some(answer.into_bytes()),
    };
    let ngx_next = Cell::new(0u64);
    let _ = apiload::closed_loop(
        ngx_target,
        &others,
        &ngx_invite,
        &ngx_next,
        4,
        Duration::from_millis(300),
        None,
    )
    .await;
    // Open loop first, while few conferences are placed (placement cost grows with them).
    open_runs(
        &mut open,
        EP_INVITE,
        [
            ("nginx", ngx_target, &ngx_invite, &ngx_next),
            ("switchyard", sy_target, &invite, &sy_next),
        ],
        &others,
        args.invite_rate,
        args.open_secs,
    )
    .await;
    // Closed loop: every run is kept (conferences accumulate, so rounds are not repeats).
    let mut invites = Vec::new();
    for round in 0..args.rounds {
        for &level in &args.invite_levels {
            let placements = sy_next.get().div_ceil(INVITES_PER_CONFERENCE);
            let secs = Duration::from_secs_f64(args.closed_secs);
            let nginx = apiload::closed_loop(
                ngx_target,
                &others,
                &ngx_invite,
                &ngx_next,
                level,
                secs,
                None,
            )
            .await;
            log_run(
                &format!("{EP_INVITE} r{}", round + 1),
                "nginx",
                &format!("c={level}"),
                &nginx,
            );
            let sy_run =
                apiload::closed_loop(sy_target, &others, &invite, &sy_next, level, secs, None)
                    .await;
            log_run(
                &format!("{EP_INVITE} r{}", round + 1),
                "switchyard",
                &format!("c={level} ({placements} placed)"),
                &sy_run,
            );
            invites.push(InviteRow {
                round: round + 1,
                level,
                placements,
                nginx,
                sy: sy_run,
            });
        }
    }
    ngx.stop().await;
    setup.invite_conferences = sy_next.get().div_ceil(INVITES_PER_CONFERENCE);
    eprintln!(
        "[{label}] invitations done: {} conferences placed",
        setup.invite_conferences
    );

    // 4. Live members.
    let sy_cpu = || switchyard_bench::procstat::process_cpu(sy.pid).map(|c| c.0);
    let fsim_cpu = || switchyard_bench::procstat::process_cpu(fsim.pid).map(|c| c.0);
    let t = Instant::now();
    let cpu0 = sy_cpu()?;
    let placed = invite_members(
        sy.addr,
        args.conferences,
        args.per_conference,
        args.setup_concurrency,
    )
    .await?;
    setup.member_invites = (args.conferences * args.per_conference) as u64;
    setup.member_invite_secs = t.elapsed().as_secs_f64();
    setup.member_invite_sy_cpu = (sy_cpu()? - cpu0).as_secs_f64();
    eprintln!(
        "[{label}] {} member invitations in {:.1} s",
        setup.member_invites, setup.member_invite_secs
    );
    let t = Instant::now();
    let (sy0, fs0) = (sy_cpu()?, fsim_cpu()?);
    setup.calls = (args.conferences * args.per_conference) as u64;
    setup.call_failures = place_calls(
        fsim.control,
        &placed,
        args.per_conference,
        args.setup_concurrency,
    )
    .await?;
    setup.calls_secs = t.elapsed().as_secs_f64();
    ensure!(
        setup.call_failures == 0,
        "{} of {} calls failed (see above)",
        setup.call_failures,
        setup.calls
    );
    let mut admin = Client::new(sy.addr);
    setup.per_node_members =
        wait_members(&mut admin, setup.calls, Duration::from_secs(120)).await?;
    setup.members_visible_secs = t.elapsed().as_secs_f64();
    if let Some(pg) = pg
        && args.pg_analyze
    {
        pg.analyze()?;
    }
    setup.calls_sy_cpu = sy_cpu()?.saturating_sub(sy0);
    setup.calls_fsim_cpu = fsim_cpu()?.saturating_sub(fs0);
    eprintln!(
        "[{label}] {} calls in {:.1} s, all {} members live after {:.1} s",
        setup.calls, setup.calls_secs, setup.calls, setup.members_visible_secs
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5357_4954_4348);
    let mut names: Vec<String> = (0..args.conferences).map(|c| format!("m{c:04}")).collect();
    names.shuffle(&mut rng);
    let mut member_users: Vec<String> = (0..(args.conferences * args.per_conference) as u64)
        .map(user_id)
        .collect();
    member_users.shuffle(&mut rng);
    let conf_members = ConferenceMembers {
        names,
        per_conference: args.per_conference,
        fixed: None,
    };
    let user_members = UserMembers {
        users: member_users,
        fixed: None,
    };
    // Every conference and every user is checked once before the runs.
    let mut check_next = Cell::new(0u64);
    let full = apiload::closed_loop(
        sy_target,
        &others,
        &conf_members,
        &check_next,
        8,
        Duration::from_secs(120),
        Some(args.conferences as u64),
    )
    .await;
    log_run("members full pass", "switchyard", "c=8", &full);
    ensure!(
        full.stats.errors + full.stats.wrong == 0,
        "GET …/members full pass: {:?}",
        full.stats.first_error
    );
    check_next = Cell::new(0);
    let full = apiload::closed_loop(
        sy_target,
        &others,
        &user_members,
        &check_next,
        8,
        Duration::from_secs(120),
        Some(setup.calls),
    )
    .await;
    log_run("user members full pass", "switchyard", "c=8", &full);
    ensure!(
        full.stats.errors + full.stats.wrong == 0,
        "GET /v1/members full pass: {:?}",
        full.stats.first_error
    );
    let capture = |path: String| async move {
        let mut client = Client::new(sy.addr);
        let (status, body) = client.call("GET", &path, None).await?;
        ensure!(status == 200, "GET {path}: HTTP {status}");
        Ok::<_, anyhow::Error>(body)
    };
    let conf_body = capture(format!("/v1/conferences/{}/members", conf_members.names[0])).await?;
    let user_body = capture(format!("/v1/members?user_id={}", user_members.users[0])).await?;
    setup.conf_members_len = conf_body.len();
    setup.user_members_len = user_body.len();
    let conf_location = NginxLocation {
        matcher: "~ ^/v1/conferences/[^/]+/members$".to_owned(),
        content_type: "application/json".to_owned(),
        body: conf_body.clone(),
    };
    setup.nginx_static_members = conf_body.len() > servers::MAX_NGINX_RETURN;
    let ngx = servers::start_nginx_locations(
        &bins.nginx,
        dir,
        args.server_cpu,
        &[
            conf_location,
            NginxLocation {
                matcher: "= /v1/members".to_owned(),
                content_type: "application/json".to_owned(),
                body: user_body.clone(),
            },
        ],
    )
    .await?;
    let ngx_target = apiload::Server {
        addr: ngx.addr,
        pid: ngx.pid,
    };
    let ngx_conf_members = ConferenceMembers {
        names: conf_members.names.clone(),
        per_conference: args.per_conference,
        fixed: Some(conf_body.into_bytes()),
    };
    let ngx_user_members = UserMembers {
        users: user_members.users.clone(),
        fixed: Some(user_body.into_bytes()),
    };
    let (sy_n1, ngx_n1, sy_n2, ngx_n2) = (
        Cell::new(0u64),
        Cell::new(0u64),
        Cell::new(0u64),
        Cell::new(0u64),
    );
    closed_runs(
        &mut closed,
        EP_CONF_MEMBERS,
        [
            ("nginx", ngx_target, &ngx_conf_members, &ngx_n1),
            ("switchyard", sy_target, &conf_members, &sy_n1),
        ],
        &others,
        &args.read_levels,
        args.rounds,
        args.closed_secs,
    )
    .await;
    closed_runs(
        &mut closed,
        EP_USER_MEMBERS,
        [
            ("nginx", ngx_target, &ngx_user_members, &ngx_n2),
            ("switchyard", sy_target, &user_members, &sy_n2),
        ],
        &others,
        &args.read_levels,
        args.rounds,
        args.closed_secs,
    )
    .await;
    open_runs(
        &mut open,
        EP_CONF_MEMBERS,
        [
            ("nginx", ngx_target, &ngx_conf_members, &ngx_n1),
            ("switchyard", sy_target, &conf_members, &sy_n1),
        ],
        &others,
        args.read_rate,
        args.open_secs,
    )
    .await;
    open_runs(
        &mut open,
        EP_USER_MEMBERS,
        [
            ("nginx", ngx_target, &ngx_user_members, &ngx_n2),
            ("switchyard", sy_target, &user_members, &sy_n2),
        ],
        &others,
        args.read_rate,
        args.open_secs,
    )
    .await;
    ngx.stop().await;
    // The members are still all there.
    let still = wait_members(&mut admin, setup.calls, Duration::from_secs(1)).await?;
    let total: u64 = still.iter().map(|c| c.1).sum();
    ensure!(
        total == setup.calls,
        "{total} live members at the end, expected {}",
        setup.calls
    );
    Ok(Measured {
        invites,
        closed,
        open,
        pg_pids,
    })
}

/// One closed-loop invitation run and the nginx run next to it.
#[derive(Debug)]
struct InviteRow {
    round: usize,
    level: usize,
    /// Conferences placed (all live, idle) when the run started.
    placements: u64,
    nginx: Run,
    sy: Run,
}

// ---------------------------------------------------------------------------------------------

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
    let bins = Binaries {
        switchyard: bin(&args.switchyard, "switchyard")?,
        fsim: bin(&args.fsim, "fsim")?,
        nginx: servers::find_binary(args.nginx.as_deref(), &["nginx"])
            .context("nginx not found: `apt-get install -y nginx-light` (or pass --nginx)")?,
    };
    let nginx_version = std::process::Command::new(&bins.nginx)
        .arg("-v")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default();
    let machine = Machine::now();
    let mut reports = Vec::new();
    for &backend in &args.backends {
        reports.push(bench_backend(&args, backend, &bins).await?);
    }
    let info = Info {
        args: args.clone(),
        nginx_version,
        machine_start: machine,
        machine_end: Machine::now(),
        total_secs: started.elapsed().as_secs_f64(),
    };
    let text = report(&info, &mut reports);
    println!("{text}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-data/api.md"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("written to {}", out.display());
    let failed: u64 = reports
        .iter()
        .flat_map(|r| {
            r.closed
                .runs
                .iter()
                .filter(|c| c.1 == "switchyard")
                .map(|c| &c.3)
                .chain(r.open.iter().filter(|o| o.1 == "switchyard").map(|o| &o.3))
                .chain(r.invites.iter().map(|row| &row.sy))
        })
        .map(|run| run.stats.errors + run.stats.wrong)
        .sum();
    ensure!(
        failed == 0,
        "{failed} switchyard requests failed (see the table)"
    );
    Ok(())
}

/// Machine conditions.
#[derive(Debug, Clone)]
struct Machine {
    cores: usize,
    loadavg: String,
}

impl Machine {
    fn now() -> Self {
        Self {
            // Not available_parallelism: this process is pinned to one core.
            cores: nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
                .ok()
                .flatten()
                .map_or(0, |n| n as usize),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
struct Info {
    args: Args,
    nginx_version: String,
    machine_start: Machine,
    machine_end: Machine,
    total_secs: f64,
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

/// The PostgreSQL processes' CPU (watched processes after fsim).
fn pg_util(run: &Run) -> f64 {
    run.others_cpu
        .iter()
        .skip(1)
        .sum::<Duration>()
        .as_secs_f64()
        / run.stats.elapsed.as_secs_f64()
}

fn report(info: &Info, reports: &mut [BackendReport]) -> String {
    let a = &info.args;
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# API benchmark: invitations and live members (issue 5)\n"
    );
    let _ = writeln!(
        r,
        "Generated by `just bench-api`{} ({}) in {:.0} s. {} cores (load average {} at the start, \
         {} at the end; the machine is shared: compare within one run only). switchyard (release) \
         and the nginx reference ({}, one process) on core {}; the load generator (one thread, \
         keep-alive connections) and fsim ({} nodes, HEARTBEAT every {HEARTBEAT_SECS} s, max 1000 \
         sessions each) on core {}; PostgreSQL, when used, is not pinned. Switchyard: \
         `capacity = {NODE_CAPACITY}` per node, log filter `{}` (JSON to a file), default pool \
         sizes (5 database connections). Ratios compare switchyard with nginx answering the same \
         requests with fixed bytes in the same run: throughput sy/ngx, CPU per request and p99 \
         ngx/sy (1.00 = as fast as nginx). \"pg\": CPU of the PostgreSQL server processes of the \
         bench database; \"other\": busy CPU of the machine that none of the metered processes \
         used (noise; 100 % = one core). CPU figures come from /proc at 10 ms resolution.\n",
        if a.quick { " --quick" } else { "" },
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        info.total_secs,
        info.machine_start.cores,
        info.machine_start.loadavg,
        info.machine_end.loadavg,
        info.nginx_version,
        a.server_cpu,
        a.nodes,
        a.client_cpu,
        a.log_filter,
    );

    // Summary.
    let _ = writeln!(r, "## Summary\n");
    let _ = writeln!(
        r,
        "| store | figure | switchyard | nginx, same requests | ratio |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|");
    for rep in reports.iter_mut() {
        let store = rep.backend.label();
        if let Some(row) = rep
            .invites
            .iter()
            .max_by(|x, y| x.sy.stats.rps().total_cmp(&y.sy.stats.rps()))
        {
            let _ = writeln!(
                r,
                "| {store} | invitations/s, best closed loop (c={}, {} conferences placed before) | {:.0} | {:.0} | {} |",
                row.level,
                row.placements,
                row.sy.stats.rps(),
                row.nginx.stats.rps(),
                ratio(row.sy.stats.rps() / row.nginx.stats.rps())
            );
        }
        if let Some(row) = rep.invites.last() {
            let _ = writeln!(
                r,
                "| {store} | invitations/s, last closed-loop run (c={}, {} conferences placed before) | {:.0} | {:.0} | {} |",
                row.level,
                row.placements,
                row.sy.stats.rps(),
                row.nginx.stats.rps(),
                ratio(row.sy.stats.rps() / row.nginx.stats.rps())
            );
        }
        for endpoint in [EP_INVITE, EP_CONF_MEMBERS, EP_USER_MEMBERS] {
            let mut pair: Vec<&mut (&str, &str, f64, Run)> =
                rep.open.iter_mut().filter(|o| o.0 == endpoint).collect();
            if pair.len() == 2 {
                let n99 = pair[0].3.stats.percentile_us(0.99);
                let rate = pair[1].2;
                let s99 = pair[1].3.stats.percentile_us(0.99);
                let what = if endpoint == EP_INVITE {
                    format!("invitation p99 ms at {rate:.0}/s (open loop, first)")
                } else {
                    format!(
                        "`{endpoint}` p99 ms at {rate:.0}/s, {} live members",
                        rep.setup.calls
                    )
                };
                let _ = writeln!(
                    r,
                    "| {store} | {what} | {} | {} | {} |",
                    ms(s99),
                    ms(n99),
                    ratio(n99 / s99)
                );
            }
        }
        for endpoint in [EP_CONF_MEMBERS, EP_USER_MEMBERS] {
            if let (Some((sl, s)), Some((nl, n))) = (
                rep.closed.best(endpoint, "switchyard"),
                rep.closed.best(endpoint, "nginx"),
            ) {
                let _ = writeln!(
                    r,
                    "| {store} | `{endpoint}` req/s, best closed loop | {:.0} (c={sl}) | {:.0} (c={nl}) | {} |",
                    s.stats.rps(),
                    n.stats.rps(),
                    ratio(s.stats.rps() / n.stats.rps())
                );
            }
        }
    }
    let _ = writeln!(r);

    for rep in reports.iter_mut() {
        backend_section(&mut r, a, rep);
    }
    r
}

fn invite_table(r: &mut String, rows: &mut [InviteRow], pg: bool) {
    let _ = writeln!(
        r,
        "| round | conc. | placed before | nginx req/s | switchyard inv/s | ratio | switchyard p50 / p99 ms | nginx p99 ms | p99 ratio (ngx/sy) | 1st (places) p50 / p99 ms | 2nd–5th p50 / p99 ms | CPU-µs/req sy / ngx | CPU ratio (ngx/sy) | switchyard CPU % | client % | {}other % | errors sy / ngx |",
        if pg { "pg % | " } else { "" }
    );
    let _ = writeln!(
        r,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|",
        if pg { "---:|" } else { "" }
    );
    for row in rows.iter_mut() {
        let (s, n) = (&mut row.sy, &mut row.nginx);
        let (s99, n99) = (s.stats.percentile_us(0.99), n.stats.percentile_us(0.99));
        let _ = writeln!(
            r,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} / {} | {} | {} | {} / {} | {} / {} | {:.0} / {:.1} | {} | {:.0} | {:.0} | {}{:.0} | {} / {} |",
            row.round,
            row.level,
            row.placements,
            n.stats.rps(),
            s.stats.rps(),
            ratio(s.stats.rps() / n.stats.rps()),
            ms(s.stats.percentile_us(0.5)),
            ms(s99),
            ms(n99),
            ratio(n99 / s99),
            ms(s.class_percentile_us(0, 0.5)),
            ms(s.class_percentile_us(0, 0.99)),
            ms(s.class_percentile_us(1, 0.5)),
            ms(s.class_percentile_us(1, 0.99)),
            s.stats.server_cpu_us(),
            n.stats.server_cpu_us(),
            ratio(n.stats.server_cpu_us() / s.stats.server_cpu_us()),
            s.stats.server_util() * 100.0,
            s.stats.client_util() * 100.0,
            if pg {
                format!("{:.0} | ", pg_util(s) * 100.0)
            } else {
                String::new()
            },
            s.foreign_util() * 100.0,
            s.stats.errors + s.stats.wrong,
            n.stats.errors + n.stats.wrong,
        );
    }
    if let Some(e) = rows.iter().find_map(|row| {
        row.sy
            .stats
            .first_error
            .clone()
            .map(|e| format!("switchyard: {e}"))
            .or_else(|| {
                row.nginx
                    .stats
                    .first_error
                    .clone()
                    .map(|e| format!("nginx: {e}"))
            })
    }) {
        let _ = writeln!(r, "\nFirst error ({e})");
    }
    let _ = writeln!(r);
}

fn closed_table(r: &mut String, closed: &Closed, endpoint: &str, levels: &[usize], pg: bool) {
    let _ = writeln!(
        r,
        "| conc. | nginx req/s | switchyard req/s | ratio | switchyard p50 / p99 ms | nginx p50 / p99 ms | p99 ratio (ngx/sy) | CPU-µs/req sy / ngx | CPU ratio (ngx/sy) | server CPU % sy / ngx | client % | {}other % | errors sy / ngx |",
        if pg { "pg % | " } else { "" }
    );
    let _ = writeln!(
        r,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|",
        if pg { "---:|" } else { "" }
    );
    for &level in levels {
        let (Some(n), Some(s)) = (
            closed.get(endpoint, "nginx", level),
            closed.get(endpoint, "switchyard", level),
        ) else {
            continue;
        };
        let (mut n, mut s) = (n.clone(), s.clone());
        let (s50, s99) = (s.stats.percentile_us(0.5), s.stats.percentile_us(0.99));
        let (n50, n99) = (n.stats.percentile_us(0.5), n.stats.percentile_us(0.99));
        let _ = writeln!(
            r,
            "| {level} | {:.0} | {:.0} | {} | {} / {} | {} / {} | {} | {:.0} / {:.1} | {} | {:.0} / {:.0} | {:.0} | {}{:.0} | {} / {} |",
            n.stats.rps(),
            s.stats.rps(),
            ratio(s.stats.rps() / n.stats.rps()),
            ms(s50),
            ms(s99),
            ms(n50),
            ms(n99),
            ratio(n99 / s99),
            s.stats.server_cpu_us(),
            n.stats.server_cpu_us(),
            ratio(n.stats.server_cpu_us() / s.stats.server_cpu_us()),
            s.stats.server_util() * 100.0,
            n.stats.server_util() * 100.0,
            s.stats.client_util() * 100.0,
            if pg {
                format!("{:.0} | ", pg_util(&s) * 100.0)
            } else {
                String::new()
            },
            s.foreign_util() * 100.0,
            s.stats.errors + s.stats.wrong,
            n.stats.errors + n.stats.wrong,
        );
    }
    let first_error = closed
        .runs
        .iter()
        .filter(|c| c.0 == endpoint)
        .find_map(|c| c.3.stats.first_error.clone().map(|e| (c.1, e)));
    if let Some((server, e)) = first_error {
        let _ = writeln!(r, "\nFirst error ({server}): {e}");
    }
    let _ = writeln!(r);
}

fn open_table(
    r: &mut String,
    open: &mut [(&'static str, &'static str, f64, Run)],
    endpoint: &str,
    pg: bool,
) {
    let _ = writeln!(
        r,
        "| server | rate/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | p99 ratio (ngx/sy) | CPU-µs/req | server CPU % | {}other % | errors |",
        if pg { "pg % | " } else { "" }
    );
    let _ = writeln!(
        r,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|",
        if pg { "---:|" } else { "" }
    );
    let ngx99 = open
        .iter_mut()
        .find(|o| o.0 == endpoint && o.1 == "nginx")
        .map_or(f64::NAN, |o| o.3.stats.percentile_us(0.99));
    for (_, server, rate, run) in open.iter_mut().filter(|o| o.0 == endpoint) {
        let p99 = run.stats.percentile_us(0.99);
        let _ = writeln!(
            r,
            "| {server} | {rate:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {}{:.0} | {} |",
            run.stats.rps(),
            ms(run.stats.percentile_us(0.5)),
            ms(run.stats.percentile_us(0.9)),
            ms(p99),
            ms(run.stats.percentile_us(1.0)),
            if *server == "switchyard" {
                ratio(ngx99 / p99)
            } else {
                String::new()
            },
            run.stats.server_cpu_us(),
            run.stats.server_util() * 100.0,
            if pg {
                format!("{:.0} | ", pg_util(run) * 100.0)
            } else {
                String::new()
            },
            run.foreign_util() * 100.0,
            run.stats.errors + run.stats.wrong,
        );
    }
    let _ = writeln!(r);
}

fn backend_section(r: &mut String, a: &Args, rep: &mut BackendReport) {
    let s = &rep.setup;
    let store = rep.backend.label();
    let pg = rep.backend == Backend::Postgres;
    let _ = writeln!(r, "## {store} ({:.0} s)\n", rep.secs);
    let _ = writeln!(
        r,
        "Setup: {} users with a SIP credential seeded through the store in {:.1} s; {} fsim \
         nodes up (HEARTBEAT seen) {:.1} s after Switchyard started.{}\n",
        a.users,
        s.seed_secs,
        a.nodes,
        s.nodes_up_secs,
        if pg {
            format!(
                " {} PostgreSQL server processes metered (the pool's connections after the \
                 warm-up). {}",
                rep.pg_pids,
                if a.pg_analyze {
                    "`ANALYZE` ran after the invitation warm-up and after the members joined \
                     (as autovacuum would within a minute; without it the name lookups use the \
                     wrong index, see `--no-pg-analyze`)."
                } else {
                    "No `ANALYZE` (`--no-pg-analyze`): statistics as autovacuum left them."
                }
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(r, "### `POST /v1/conferences/{{name}}/invitations`\n");
    let _ = writeln!(
        r,
        "Each conference gets {INVITES_PER_CONFERENCE} invitations (5 users); the 1st places it \
         on a node (every candidate's load, live placements counted in the database, claim), \
         each stores an invitation and publishes the `Invited` event; 201 with the user and a \
         node required. nginx answers a captured {}-byte invitation answer. Conferences stay \
         placed (idle: nobody joins), so each run starts with more of them: {} by the end.\n",
        s.invite_answer_len, s.invite_conferences
    );
    let _ = writeln!(
        r,
        "Open loop first, {:.1} s, latency from the scheduled send time:\n",
        a.open_secs
    );
    open_table(r, &mut rep.open, EP_INVITE, pg);
    let _ = writeln!(
        r,
        "Closed loop, {:.1} s per run, every run kept (in order); a worker sends one \
         conference's invitations in a row:\n",
        a.closed_secs
    );
    invite_table(r, &mut rep.invites, pg);

    let conferences = a.conferences;
    let _ = writeln!(r, "### Live members\n");
    let min = s.per_node_members.iter().map(|n| n.1).min().unwrap_or(0);
    let max = s.per_node_members.iter().map(|n| n.1).max().unwrap_or(0);
    let _ = writeln!(
        r,
        "Setup: {} invitations ({conferences} conferences × {}) in {:.1} s ({:.0}/s at \
         concurrency {}, switchyard {:.0} CPU-µs each); {} calls through fsim's control port \
         (directory digest check + conference join + ESL events) in {:.1} s ({:.0}/s, \
         concurrency {}), all {} members live in `GET /v1/nodes` {:.1} s after the first call \
         (switchyard {:.1} CPU-s, fsim {:.1} CPU-s for the calls); {} failed. Members per node: \
         {min}–{max}. Every conference and every user was read once and checked before the \
         runs. nginx serves one captured answer of each: {} bytes (10 members){} and {} bytes \
         (1 membership).\n",
        s.member_invites,
        a.per_conference,
        s.member_invite_secs,
        s.member_invites as f64 / s.member_invite_secs,
        a.setup_concurrency,
        s.member_invite_sy_cpu * 1e6 / s.member_invites.max(1) as f64,
        s.calls,
        s.calls_secs,
        s.calls as f64 / s.calls_secs,
        a.setup_concurrency,
        s.calls,
        s.members_visible_secs,
        s.calls_sy_cpu.as_secs_f64(),
        s.calls_fsim_cpu.as_secs_f64(),
        s.call_failures,
        s.conf_members_len,
        if s.nginx_static_members {
            ", as a static file: over nginx's 4 KiB `return` limit"
        } else {
            ""
        },
        s.user_members_len,
    );
    for endpoint in [EP_CONF_MEMBERS, EP_USER_MEMBERS] {
        let _ = writeln!(
            r,
            "#### `{endpoint}` (closed loop, {:.1} s per run, best of {})\n",
            a.closed_secs, a.rounds
        );
        closed_table(r, &rep.closed, endpoint, &a.read_levels, pg);
        let _ = writeln!(r, "Open loop, {:.1} s:\n", a.open_secs);
        open_table(r, &mut rep.open, endpoint, pg);
    }
    let _ = writeln!(
        r,
        "Logs: switchyard {} lines, {} WARN/ERROR{}; fsim {} lines at `warn`.\n",
        rep.sy_log_lines,
        rep.sy_log_problems.len(),
        rep.sy_log_problems
            .first()
            .map(|l| format!(" (first: `{l}`)"))
            .unwrap_or_default(),
        rep.fsim_log_lines,
    );
    let by_node: BTreeMap<&str, u64> = s
        .per_node_members
        .iter()
        .map(|(n, c)| (n.as_str(), *c))
        .collect();
    let _ = writeln!(
        r,
        "Members by node: {}\n",
        by_node
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn ratios() {
        assert_eq!(super::ratio(0.5), "0.500");
        assert_eq!(super::ratio(0.0123), "0.0123");
        assert_eq!(super::ratio(12.34), "12.3");
        assert_eq!(super::ratio(f64::NAN), "–");
    }

    #[test]
    fn database_names() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "b").ok(),
            Some("postgres://postgres@127.0.0.1:5432/b".to_owned())
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "b").ok(),
            Some("postgres://u:p@h/b?sslmode=disable".to_owned())
        );
        assert_eq!(
            with_database("postgres://h:5432", "b").ok(),
            Some("postgres://h:5432/b".to_owned())
        );
    }
}
