//! The real `switchyard` executable, driven as an operator or an orchestrator would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::support::db::sqlite_url;
use crate::support::spawn::client;

const STARTUP: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(10);

/// `switchyard` with a clean environment: no inherited `SWITCHYARD_*`/`RUST_LOG`, working
/// directory `dir` (so no stray `switchyard.toml` is picked up).
fn switchyard(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHYARD_") {
            command.env_remove(key);
        }
    }
    command
}

fn write_config(dir: &TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("test.toml");
    std::fs::write(&path, body).expect("write config");
    path
}

fn serve_config(dir: &TempDir) -> String {
    let db = sqlite_url(dir.path().join("switchyard.db"));
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
         [database]\nurl = \"{db}\"\n[log]\nfilter = \"info\"\n"
    )
}

/// Collects a pipe on a thread: lines as they arrive, and everything at the end.
fn read_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn drain(rx: &mpsc::Receiver<String>) -> String {
    rx.try_iter().collect::<Vec<_>>().join("\n")
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Runs to completion (bounded); returns exit status, stdout, stderr.
fn run_to_end(mut command: Command) -> (ExitStatus, String, String) {
    let mut child = command.spawn().expect("spawn switchyard");
    let stdout = read_lines(child.stdout.take().expect("stdout"));
    let stderr = read_lines(child.stderr.take().expect("stderr"));
    let status = wait_timeout(&mut child, EXIT).expect("switchyard exits by itself");
    thread::sleep(Duration::from_millis(50));
    (status, drain(&stdout), drain(&stderr))
}

async fn serve_and_stop_with(signal: Signal) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&dir, &serve_config(&dir));
    let mut command = switchyard(dir.path());
    command.arg("--config").arg(&config);
    let mut child = command.spawn().expect("spawn switchyard");
    let stdout = read_lines(child.stdout.take().expect("stdout"));
    let stderr = read_lines(child.stderr.take().expect("stderr"));

    let deadline = Instant::now() + STARTUP;
    let base = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match stdout.recv_timeout(remaining) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    break url.trim().to_owned();
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no `listening on` line; stderr:\n{}", drain(&stderr));
            }
        }
    };
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "the real port is printed: {base}");

    for path in ["/healthz", "/readyz"] {
        let response = client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert!(
        dir.path().join("switchyard.db").exists(),
        "SQLite file created"
    );

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, signal).expect("send signal");
    let status = wait_timeout(&mut child, EXIT);
    let logs = drain(&stderr);
    let status = status.unwrap_or_else(|| panic!("no exit within {EXIT:?} of {signal}:\n{logs}"));
    assert_eq!(
        status.code(),
        Some(0),
        "{signal} → clean exit; stderr:\n{logs}"
    );
    assert!(logs.contains(&format!("{signal} received")), "{logs}");
}

#[tokio::test]
async fn serves_then_exits_cleanly_on_sigterm() {
    serve_and_stop_with(Signal::SIGTERM).await;
}

#[tokio::test]
async fn serves_then_exits_cleanly_on_sigint() {
    serve_and_stop_with(Signal::SIGINT).await;
}

#[test]
fn unknown_config_key_fails_with_the_key_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = serve_config(&dir).replace("[http]\n", "[http]\nlisten_adress = \"x\"\n");
    let config = write_config(&dir, &body);
    let mut command = switchyard(dir.path());
    command.arg("--config").arg(&config).arg("serve");
    let (status, stdout, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("listen_adress"), "{stderr}");
    assert!(stderr.contains("test.toml"), "names the file: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn invalid_values_fail_with_every_key_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        &dir,
        "[http]\nlisten = \"nowhere\"\n[[nodes]]\nid = \"Bad Id\"\nesl_password = \"pw\"\n\
         wss_url = \"wss://fs1\"\n",
    );
    let mut command = switchyard(dir.path());
    command.arg("-c").arg(&config);
    let (status, _, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
    assert!(stderr.contains("nodes[0].id"), "{stderr}");
}

#[test]
fn garbage_config_file_fails_readably() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&dir, "[[[ this is not toml\n\u{0}\u{1}");
    let mut command = switchyard(dir.path());
    command.arg("--config").arg(&config).arg("check-config");
    let (status, stdout, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("test.toml"), "names the file: {stderr}");
    assert!(stdout.is_empty());
}

#[test]
fn missing_config_file_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = switchyard(dir.path());
    command
        .env("SWITCHYARD_CONFIG", "absent.toml")
        .arg("check-config");
    let (status, _, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("absent.toml") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn env_var_typo_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = switchyard(dir.path());
    command
        .env("SWITCHYARD_HTTP__LISTN", "127.0.0.1:0")
        .arg("check-config");
    let (status, _, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("listn"), "{stderr}");
}

#[test]
fn check_config_prints_config_without_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        &dir,
        "[database]\nurl = \"postgres://sy:db-secret@db/sy\"\n\
         [[nodes]]\nid = \"fs1\"\nesl_password = \"esl-secret\"\nwss_url = \"wss://fs1:7443\"\n",
    );
    let mut command = switchyard(dir.path());
    command
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .env("SWITCHYARD_HTTP__LISTEN", "0.0.0.0:9999");
    let (status, stdout, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.contains("listen = \"0.0.0.0:9999\""),
        "env applied:\n{stdout}"
    );
    assert!(stdout.contains("id = \"fs1\""), "{stdout}");
    assert!(stdout.contains("[redacted]"), "{stdout}");
    for secret in ["db-secret", "esl-secret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    let reparsed: toml::Value = toml::from_str(&stdout).expect("output is TOML");
    assert!(reparsed.get("esl").is_some());
}

/// The operator's view of the foundation: start the binary against two FreeSWITCH nodes
/// (simulated) and see both nodes' HEARTBEATs in the log. Multi-threaded: the simulated nodes
/// keep serving while this test blocks reading the child's stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_the_heartbeats_of_every_configured_node() {
    let mut sims = Vec::new();
    for name in ["fs-one", "fs-two"] {
        let mut config = fsim::NodeConfig::new(name);
        config.heartbeat_interval = Duration::from_millis(300);
        sims.push(fsim::SimNode::start(config).await.expect("fsim node"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut body = serve_config(&dir);
    for (id, sim) in ["one", "two"].iter().zip(&sims) {
        body.push_str(&format!(
            "[[nodes]]\nid = \"{id}\"\nesl_addr = \"{}\"\nesl_password = \"ClueCon\"\n\
             wss_url = \"wss://{id}.example.com:7443\"\n",
            sim.esl_addr()
        ));
    }
    let config = write_config(&dir, &body);
    let mut command = switchyard(dir.path());
    command.arg("--config").arg(&config).env("NO_COLOR", "1");
    let mut child = command.spawn().expect("spawn switchyard");
    let _stdout = read_lines(child.stdout.take().expect("stdout"));
    let stderr = read_lines(child.stderr.take().expect("stderr"));

    let deadline = Instant::now() + STARTUP;
    let mut seen = [false, false];
    let mut log = Vec::new();
    while seen.contains(&false) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = stderr.recv_timeout(remaining) else {
            let _ = child.kill();
            panic!("no heartbeat from both nodes; log:\n{}", log.join("\n"));
        };
        if line.contains("heartbeat") {
            for (i, id) in ["one", "two"].iter().enumerate() {
                if line.contains(&format!("node={id}")) || line.contains(&format!("node: {id}")) {
                    seen[i] = true;
                }
            }
        }
        log.push(line);
    }

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGTERM).expect("send signal");
    let status = wait_timeout(&mut child, EXIT).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", drain(&stderr));
}
