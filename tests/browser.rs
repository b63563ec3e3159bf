//! The demo page and the JS SDK in a real browser: `fsim` plays one FreeSWITCH node (ESL and SIP
//! over WebSocket), `switchyard` runs in demo mode serving `examples/web` at `/demo/`, and
//! `tests/browser/e2e.mjs` drives headless Chromium (Debian's `/usr/bin/chromium`, through
//! playwright-core) through every browser scenario: invitations, accept/decline/busy, JsSIP
//! REGISTER + INVITE, members and talking, chat in Cyrillic and emoji, a second tab, an expired
//! token. Screenshots land in `target/browser-artifacts/`.
//!
//! Needs Chromium and the npm packages: `bash tests/run` (or `just browser-setup`) installs them.
//! Without them the test fails, unless `SWITCHYARD_SKIP_BROWSER=1`, which turns it into a
//! printed skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_e2e::{Proc, bin_dir, binary};

const CHROMIUM: &str = "/usr/bin/chromium";
const XML_CURL_USER: &str = "freeswitch";
const XML_CURL_PASSWORD: &str = "browser-test-xml-curl-password";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// What is missing for the browser test, if anything.
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (Node.js)".to_owned());
    }
    for dir in [
        "tests/browser/node_modules/playwright-core",
        "examples/web/node_modules/jssip",
        "examples/web/vendor/jssip.js",
    ] {
        if !root.join(dir).exists() {
            missing.push(dir.to_owned());
        }
    }
    missing
}

/// A free loopback port: switchyard's address must be known before fsim starts (fsim's
/// mod_xml_curl URL points at it) and fsim's before switchyard starts (its `[[nodes]]`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

async fn wait_node_up(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match reqwest::get(format!("{base}/readyz")).await {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let up = ready.as_ref().is_some_and(|r| {
            r["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["id"] == "fs1" && n["state"] == "up"))
        });
        if up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fs1 never came up in /readyz: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_and_sdk_in_headless_chromium() {
    let root = workspace();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let what = missing.join(", ");
        if std::env::var("SWITCHYARD_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!(
                "notice: SWITCHYARD_SKIP_BROWSER=1 and {what} missing; skipping the browser test"
            );
            return;
        }
        panic!(
            "the browser test needs {what}: run `bash tests/run` or `just browser-setup` \
             (or set SWITCHYARD_SKIP_BROWSER=1 to skip it)"
        );
    }

    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let fsim = Proc::spawn(
        Command::new(binary("fsim"))
            .args(["--nodes", "1", "--name", "fs1", "--esl", "127.0.0.1:0"])
            .args(["--sip-ws", "127.0.0.1:0", "--heartbeat-interval", "1"])
            // The control port makes members talk (fsim has no media to measure).
            .args(["--control", "127.0.0.1:0"])
            .arg("--xml-curl")
            .arg(format!("{base}/freeswitch/directory"))
            .arg("--xml-curl-dialplan")
            .arg(format!("{base}/freeswitch/dialplan"))
            .arg("--xml-curl-credentials")
            .arg(format!("{XML_CURL_USER}:{XML_CURL_PASSWORD}")),
    );
    let esl = fsim.line("listening esl fs1 ");
    let sip_ws = fsim.line("listening sip-ws fs1 ");
    let fsim_control = fsim.line("listening control ");
    let wss_url = if sip_ws.contains("://") {
        sip_ws
    } else {
        format!("ws://{sip_ws}")
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    let web_root = root.join("examples/web");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [database]\nurl = \"sqlite://{db}?mode=rwc\"\n\
             [demo]\nenabled = true\nweb_root = \"{web_root}\"\n\
             [freeswitch]\nusername = \"{XML_CURL_USER}\"\npassword = \"{XML_CURL_PASSWORD}\"\n\
             [esl]\ndead_after_secs = 5\n\
             [[nodes]]\nid = \"fs1\"\nesl_addr = \"{esl}\"\nesl_password = \"ClueCon\"\nwss_url = \"{wss_url}\"\n",
            db = dir.path().join("sy.db").display(),
            web_root = web_root.display(),
        ),
    )
    .expect("write config");
    let switchyard = Proc::spawn(
        Command::new(binary("switchyard"))
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path()),
    );
    let listening = switchyard.line("listening on ");
    assert_eq!(listening, base, "switchyard listens where configured");
    wait_node_up(&base).await;

    let artifacts = bin_dir()
        .parent()
        .expect("target/")
        .join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let output = tokio::task::spawn_blocking({
        let root = root.clone();
        let artifacts = artifacts.clone();
        move || {
            Command::new("node")
                .arg(root.join("tests/browser/e2e.mjs"))
                .arg("--base")
                .arg(&base)
                .arg("--artifacts")
                .arg(&artifacts)
                .arg("--fsim-control")
                .arg(&fsim_control)
                .current_dir(&root)
                .output()
                .expect("run node tests/browser/e2e.mjs")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "browser scenarios failed ({}); screenshots and console logs in {}:\n{stdout}\n{stderr}",
        output.status,
        artifacts.display()
    );
    assert!(stdout.contains("PASS:"), "{stdout}");
    drop(switchyard);
    drop(fsim);
}
