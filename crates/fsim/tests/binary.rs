//! The `fsim` binary end to end: start on free ports, speak ESL over a raw socket, drive the
//! control port, stop with SIGTERM.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fsim::directory::a1_hash;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const DOMAIN: &str = "127.0.0.1";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/freeswitch/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A directory server for users 1001/1002 (passwords secret1001/secret1002), like the capture's.

#[derive(Clone, Default)]
struct Directory {
    authorization: Arc<Mutex<Vec<Option<String>>>>,
}

async fn directory_handler(
    State(st): State<Directory>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    st.authorization.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    let form: HashMap<&str, &str> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let user = form.get("user").copied().unwrap_or_default();
    if !["1001", "1002"].contains(&user) {
        return (
            StatusCode::OK,
            "<document type=\"freeswitch/xml\"><section name=\"result\"><result status=\"not found\"/></section></document>\n".to_owned(),
        );
    }
    let a1 = a1_hash(user, DOMAIN, &format!("secret{user}"));
    (
        StatusCode::OK,
        format!(
            r#"<document type="freeswitch/xml">
  <section name="directory">
    <domain name="{DOMAIN}">
      <groups><group name="default"><users>
      <user id="{user}">
        <params><param name="a1-hash" value="{a1}"/><param name="allow-empty-password" value="false"/></params>
        <variables>
          <variable name="user_context" value="default"/>
          <variable name="effective_caller_id_name" value="Extension {user}"/>
          <variable name="effective_caller_id_number" value="{user}"/>
        </variables>
      </user>
      </users></group></groups>
    </domain>
  </section>
</document>
"#
        ),
    )
}

async fn start_directory() -> (String, Directory) {
    let st = Directory::default();
    let app = Router::new()
        .route("/freeswitch/directory", post(directory_handler))
        .with_state(st.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/freeswitch/directory"), st)
}

// ---------------------------------------------------------------------------------------------
// The process.

struct Fsim {
    child: Child,
    esl: Vec<(String, SocketAddr)>,
    control: String,
    stderr: Arc<Mutex<String>>,
}

async fn spawn_fsim(args: &[&str], nodes: usize) -> Fsim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsim"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = Arc::clone(&stderr);
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut esl = Vec::new();
    let mut control = None;
    let found = timeout(Duration::from_secs(20), async {
        while esl.len() < nodes || control.is_none() {
            let Some(line) = out_lines.next_line().await.unwrap() else {
                return false;
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["listening", "esl", name, addr] => {
                    esl.push((name.to_string(), addr.parse().unwrap()))
                }
                ["listening", "control", url] => control = Some(url.to_string()),
                _ => panic!("unexpected stdout line {line:?}"),
            }
        }
        true
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "fsim did not announce its ports; stderr:\n{}",
        stderr.lock().unwrap()
    );
    tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
    Fsim {
        child,
        esl,
        control: control.unwrap(),
        stderr,
    }
}

// ---------------------------------------------------------------------------------------------
// A raw ESL connection.

struct Esl {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Esl {
    async fn connect(addr: SocketAddr) -> Esl {
        Esl {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Reads one frame (header block + Content-Length body) as raw bytes; `None` at EOF.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let total = end + 2 + len;
                while self.buf.len() < total {
                    if !self.fill().await {
                        return None;
                    }
                }
                return Some(self.buf.drain(..total).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn frame_within(&mut self, secs: u64) -> Option<Vec<u8>> {
        timeout(Duration::from_secs(secs), self.frame())
            .await
            .expect("ESL frame timed out")
    }

    async fn send(&mut self, cmd: &str) {
        self.stream
            .write_all(format!("{cmd}\n\n").as_bytes())
            .await
            .unwrap();
    }

    /// Connects and authenticates, checking the greeting and the reply byte for byte.
    async fn login(addr: SocketAddr) -> Esl {
        let mut esl = Esl::connect(addr).await;
        let ok = fixture("esl-auth-ok.txt");
        let greeting = esl.frame_within(5).await.unwrap();
        assert_eq!(greeting, b"Content-Type: auth/request\n\n");
        esl.send("auth ClueCon").await;
        let reply = esl.frame_within(5).await.unwrap();
        assert_eq!(reply, ok[greeting.len()..]);
        esl
    }

    /// Reads frames until one contains all of `needles`.
    async fn wait_for(&mut self, needles: &[&str]) -> String {
        let found = timeout(Duration::from_secs(10), async {
            loop {
                let frame = self.frame().await.expect("EOF while waiting for an event");
                let text = String::from_utf8_lossy(&frame).into_owned();
                if needles.iter().all(|n| text.contains(n)) {
                    return text;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no frame with {needles:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Control-port helpers.

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn binary_serves_esl_and_control_and_stops_on_sigterm() {
    let (directory_url, directory) = start_directory().await;
    let mut fsim = spawn_fsim(
        &[
            "--esl",
            "127.0.0.1:0",
            "--password",
            "ClueCon",
            "--heartbeat-interval",
            "20",
            "--xml-curl",
            &directory_url,
            "--xml-curl-credentials",
            "fs:xmlpass",
            "--xml-curl-timeout",
            "1",
            "--name",
            "fs1",
            "--domain",
            DOMAIN,
            "--control",
            "127.0.0.1:0",
            "--nodes",
            "2",
        ],
        2,
    )
    .await;
    assert_eq!(fsim.esl[0].0, "fs1");
    assert_eq!(fsim.esl[1].0, "fs2");
    let base = fsim.control.clone();
    let http = reqwest::Client::new();

    // ESL: greeting, auth, `api version` exactly as captured.
    let mut esl = Esl::login(fsim.esl[0].1).await;
    esl.send("api version").await;
    assert_eq!(
        esl.frame_within(5).await.unwrap(),
        fixture("esl-api-version.txt")
    );
    esl.send("event plain CUSTOM conference::maintenance").await;
    let reply = String::from_utf8(esl.frame_within(5).await.unwrap()).unwrap();
    assert!(
        reply.contains("+OK event listener enabled plain"),
        "{reply}"
    );

    // GET /nodes.
    let (status, nodes) = call(&http, reqwest::Method::GET, format!("{base}/nodes"), None).await;
    assert_eq!(status, StatusCode::OK);
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["name"], "fs1");
    assert_eq!(nodes[0]["esl_addr"], fsim.esl[0].1.to_string());
    assert_eq!(nodes[1]["esl_addr"], fsim.esl[1].1.to_string());
    let core_uuid = nodes[0]["core_uuid"].as_str().unwrap().to_owned();
    assert_eq!(core_uuid.len(), 36);

    // Register: good, wrong password, unknown user, unknown node, bad body.
    let reg = |node: &str| format!("{base}/nodes/{node}/register");
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        reg("fs1"),
        Some(json!({"user": "1001", "password": "secret1001"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["registered"], true);
    assert_eq!(
        directory.authorization.lock().unwrap()[0].as_deref(),
        Some("Basic ZnM6eG1scGFzcw==") // fs:xmlpass
    );
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        reg("fs1"),
        Some(json!({"user": "1001", "password": "nope"})),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_password"))
    );
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        reg("fs1"),
        Some(json!({"user": "4242", "password": "x"})),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_not_found"))
    );
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        reg("fs9"),
        Some(json!({"user": "1001", "password": "secret1001"})),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("node_not_found"))
    );
    let resp = http
        .post(reg("fs1"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "bad_request");
    let (status, v) = call(&http, reqwest::Method::GET, reg("fs1"), None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (status, v) = call(&http, reqwest::Method::GET, format!("{base}/nope"), None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );

    // A call into conference 3000: 201, member 1, add-member on ESL.
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/nodes/fs1/calls"),
        Some(json!({"user": "1001", "password": "secret1001", "conference": "3000", "profile": "default"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["member_id"], 1);
    assert_eq!(v["conference"], "3000");
    let uuid = v["uuid"].as_str().unwrap().to_owned();
    esl.wait_for(&["Action: add-member", &format!("Unique-ID: {uuid}")])
        .await;

    // Talking on and off.
    let talking = format!("{base}/nodes/fs1/calls/{uuid}/talking");
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        talking.clone(),
        Some(json!({"talking": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    esl.wait_for(&["Action: start-talking"]).await;
    let (status, snap) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/nodes/fs1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(snap["core_uuid"], core_uuid.as_str());
    assert_eq!(snap["conferences"][0]["name"], "3000");
    assert_eq!(snap["conferences"][0]["members"][0]["talking"], true);
    assert_eq!(snap["channels"][0]["uuid"], uuid.as_str());
    assert_eq!(snap["registrations"][0], "1001@127.0.0.1");
    assert_eq!(snap["open_auth_count"], 0);
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        talking.clone(),
        Some(json!({"talking": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    esl.wait_for(&["Action: stop-talking"]).await;

    // Hang up; a second hang-up is an error with a code.
    let call_url = format!("{base}/nodes/fs1/calls/{uuid}");
    let (status, v) = call(&http, reqwest::Method::DELETE, call_url.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    esl.wait_for(&["Action: del-member"]).await;
    let (status, v) = call(&http, reqwest::Method::DELETE, call_url, None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_channel"))
    );

    // Faults. A slow directory times out (1 s timeout, 1.5 s delay)...
    let fault = |node: &str, f: &str| format!("{base}/nodes/{node}/faults/{f}");
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        fault("fs1", "directory-delay"),
        Some(json!({"ms": 1500})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        reg("fs1"),
        Some(json!({"user": "1002", "password": "secret1002"})),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("directory_timeout"))
    );
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        fault("fs1", "directory-delay"),
        Some(json!({"ms": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        fault("fs1", "directory-delay"),
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, v) = call(&http, reqwest::Method::POST, fault("fs1", "explode"), None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );

    // ...freeze/unfreeze answer, drop-esl closes fs2's ESL connections.
    for f in ["freeze", "unfreeze"] {
        let (status, v) = call(&http, reqwest::Method::POST, fault("fs1", f), None).await;
        assert_eq!(status, StatusCode::OK, "{f}: {v}");
    }
    let mut esl2 = Esl::login(fsim.esl[1].1).await;
    let (status, _) = call(&http, reqwest::Method::POST, fault("fs2", "drop-esl"), None).await;
    assert_eq!(status, StatusCode::OK);
    let eof = timeout(Duration::from_secs(5), async {
        while esl2.frame().await.is_some() {}
    })
    .await;
    assert!(eof.is_ok(), "drop-esl did not close the connection");

    // Restart gives fs2 a new Core-UUID.
    let (_, before) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/nodes/fs2"),
        None,
    )
    .await;
    let (status, v) = call(&http, reqwest::Method::POST, fault("fs2", "restart"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(v["core_uuid"], before["core_uuid"]);
    assert_eq!(v["core_uuid"].as_str().unwrap().len(), 36);

    // SIGTERM: the ESL client of fs1 gets the shutdown notice, the process exits 0.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(fsim.child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let notice = esl
        .wait_for(&["Content-Type: text/disconnect-notice"])
        .await;
    assert!(
        notice.contains("The system is being shut down."),
        "{notice}"
    );
    let status = timeout(Duration::from_secs(15), fsim.child.wait())
        .await
        .expect("fsim did not exit after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        fsim.stderr.lock().unwrap()
    );
    let log = fsim.stderr.lock().unwrap().clone();
    assert!(log.contains("node listening"), "{log}");
    assert!(log.contains("control port listening"), "{log}");
}

#[tokio::test]
async fn sigint_without_control_port_exits_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsim"))
        .args(["--esl", "127.0.0.1:0", "--name", "solo"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening esl solo ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let _esl = Esl::login(addr).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_arguments_fail_fast() {
    for args in [
        vec!["--xml-curl-credentials", "nocolon"],
        vec!["--heartbeat-interval", "0"],
        vec!["--xml-curl-timeout", "-1"],
        vec!["--nodes", "0"],
        vec!["--esl", "not-an-address"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fsim"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A port that is taken: exits non-zero with a message.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_fsim"))
        .args(["--esl", &addr])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
