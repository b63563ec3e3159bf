//! `freeswitch-conf/` against Switchyard's own defaults: every file is well-formed XML, and the
//! values both sides must share (domain, context, xml_curl URLs and user, profile names, node
//! identity) agree. `freeswitch-conf/check.sh` adds a pre-processor emulation (Python). Then
//! the real `fsim` binary runs on these files against the real `switchyard`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use quick_xml::Reader;
use quick_xml::events::Event;
use switchyard::Config;

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../freeswitch-conf")
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read freeswitch-conf") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            xml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

/// Every element of a file: (name, attributes).
fn elements(path: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).expect("read");
    let mut reader = Reader::from_str(&text);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            a.unescape_value()
                                .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{} is not well-formed XML: {e}", path.display()),
        }
    }
    out
}

#[test]
fn every_file_is_well_formed() {
    let mut files = Vec::new();
    xml_files(&conf_dir(), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let mut reader = Reader::from_str(&text);
        reader.config_mut().check_end_names = true;
        let mut depth = 0usize;
        loop {
            match reader.read_event() {
                Ok(Event::Start(_)) => depth += 1,
                Ok(Event::End(_)) => depth -= 1,
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{} is not well-formed XML: {e}", file.display()),
            }
        }
        assert_eq!(depth, 0, "{}: unclosed elements", file.display());
    }
}

/// `<X-PRE-PROCESS cmd="set" data="name=value"/>` of vars.xml.
fn vars() -> BTreeMap<String, String> {
    elements(&conf_dir().join("vars.xml"))
        .into_iter()
        .filter(|(name, attrs)| {
            name == "X-PRE-PROCESS" && attrs.get("cmd").is_some_and(|c| c == "set")
        })
        .filter_map(|(_, attrs)| {
            let (k, v) = attrs.get("data")?.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `<param name=… value=…>` of a file, by name.
fn params(file: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    elements(&conf_dir().join(file))
        .into_iter()
        .filter(|(name, _)| name == "param")
        .filter_map(|(_, attrs)| {
            Some((
                attrs.get("name")?.clone(),
                attrs.get("value")?.clone(),
                attrs.clone(),
            ))
        })
        .collect()
}

#[test]
fn values_agree_with_switchyard_defaults() {
    let config = Config::default();
    let vars = vars();
    let var = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("vars.xml sets {k}"))
            .as_str()
    };
    assert_eq!(var("domain"), config.sip.domain, "[sip] domain");
    assert_eq!(
        var("switchyard_user_context"),
        config.sip.user_context,
        "[sip] user_context"
    );
    assert_eq!(
        var("switchyard_xml_curl_user"),
        config.freeswitch.username,
        "[freeswitch] username"
    );
    assert_eq!(
        var("switchyard_url"),
        format!("http://{}", config.http.listen),
        "[http] listen"
    );
    assert!(
        config.nodes.is_empty()
            || config
                .nodes
                .iter()
                .any(|n| n.id == var("switchyard_node_id"))
    );

    // xml_curl: one binding per section, to Switchyard's endpoints, with its credentials.
    let curl = params("autoload_configs/xml_curl.conf.xml");
    let url_of = |section: &str| {
        curl.iter()
            .find(|(name, _, attrs)| {
                name == "gateway-url" && attrs.get("bindings").is_some_and(|b| b == section)
            })
            .map(|(_, value, _)| value.clone())
            .unwrap_or_else(|| panic!("xml_curl binds {section}"))
    };
    assert_eq!(
        url_of("directory"),
        "$${switchyard_url}/freeswitch/directory"
    );
    assert_eq!(url_of("dialplan"), "$${switchyard_url}/freeswitch/dialplan");
    assert!(
        curl.iter().all(|(name, _, _)| name != "enable-post-var"),
        "Switchyard needs every field"
    );
    assert!(
        curl.iter()
            .any(|(name, value, _)| name == "gateway-credentials"
                && value == "$${switchyard_xml_curl_user}:$${switchyard_xml_curl_password}")
    );
    assert!(
        curl.iter().all(|(name, value, _)| name != "timeout"
            || value.parse::<u32>().is_ok_and(|t| t > 0 && t <= 5))
    );

    // The node identifies itself (the xml_curl `hostname`) by its Switchyard node id.
    let switch = params("autoload_configs/switch.conf.xml");
    assert!(
        switch
            .iter()
            .any(|(n, v, _)| n == "switchname" && v == "$${switchyard_node_id}")
    );

    // ESL: password from vars, inbound ACL applied.
    let esl = params("autoload_configs/event_socket.conf.xml");
    assert!(
        esl.iter()
            .any(|(n, v, _)| n == "password" && v == "$${switchyard_esl_password}")
    );
    assert!(esl.iter().any(|(n, _, _)| n == "apply-inbound-acl"));

    // The conference profiles Switchyard names in its dialplan answers.
    let profiles: Vec<String> = elements(&conf_dir().join("autoload_configs/conference.conf.xml"))
        .into_iter()
        .filter(|(name, _)| name == "profile")
        .filter_map(|(_, attrs)| attrs.get("name").cloned())
        .collect();
    for profile in [
        &config.conferences.audio_profile,
        &config.conferences.video_profile,
    ] {
        assert!(
            profiles.contains(profile),
            "conference.conf.xml lacks profile {profile}: {profiles:?}"
        );
    }

    // The static dialplan never joins a conference: joins come from Switchyard only.
    let dialplan = elements(&conf_dir().join("dialplan/switchyard.xml"));
    assert!(dialplan.iter().any(|(name, attrs)| {
        name == "context"
            && attrs
                .get("name")
                .is_some_and(|n| n == "$${switchyard_user_context}")
    }));
    assert!(
        dialplan.iter().all(|(name, attrs)| name != "action"
            || attrs.get("application").is_none_or(|a| a != "conference")),
        "the static dialplan must not join conferences"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: the real fsim binary configured by `freeswitch-conf/`, the real switchyard.

/// A child process whose stdout lines arrive on a channel; killed when dropped.
struct Proc {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let pipe = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, stdout }
    }

    /// The rest of the first stdout line starting with `prefix`.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no stdout line starting with {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fsim` executable next to `switchyard`'s, built first (switchyard's tests only link
/// fsim's library, so cargo does not build the binary for them).
fn fsim_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let switchyard = Path::new(env!("CARGO_BIN_EXE_switchyard"));
    let profile_dir = switchyard
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    BUILD.call_once(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "-p", "fsim", "--bin", "fsim"]);
        if profile_dir != "debug" {
            cargo.args(["--profile", &profile_dir]);
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "building fsim failed");
    });
    switchyard.with_file_name("fsim")
}

/// A command with no inherited `FSIM_*`/`SWITCHYARD_*`/`RUST_LOG` variables.
fn clean(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("FSIM_") || key_str.starts_with("SWITCHYARD_") {
            command.env_remove(&key);
        }
    }
    command
}

/// fsim configured by `freeswitch-conf/` (only Switchyard's URL and the ESL port overridden,
/// as a test must) authenticates a user through Switchyard's mod_xml_curl endpoint, with the
/// URL and credentials of xml_curl.conf.xml; Switchyard logs into fsim's event socket with the
/// password of event_socket.conf.xml. The Switchyard side takes the same values from vars.xml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsim_runs_on_freeswitch_conf_against_switchyard() {
    const API_KEY: &str = "conf-e2e-key-0123456789abcdef";
    let vars = vars();
    let var = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("vars.xml sets {k}"))
            .clone()
    };

    // Switchyard's port must be in fsim's URL before either starts: reserve one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let switchyard_url = format!("http://127.0.0.1:{port}");
    let overrides = [
        ("switchyard_url", switchyard_url.as_str()),
        ("switchyard_esl_listen_port", "0"),
    ];

    // The loader sees what the files say (and what the Switchyard side below uses).
    let settings = fsim::fsconf::load_dir(
        &conf_dir(),
        &overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .expect("freeswitch-conf loads");
    let node_id = var("switchyard_node_id");
    let (xml_user, xml_password) = (
        var("switchyard_xml_curl_user"),
        var("switchyard_xml_curl_password"),
    );
    assert_eq!(settings.switchname.as_deref(), Some(node_id.as_str()));
    assert_eq!(settings.domain.as_deref(), Some(var("domain").as_str()));
    assert_eq!(
        settings.directory.credentials,
        Some((xml_user.clone(), xml_password.clone()))
    );
    assert_eq!(settings.esl.password, var("switchyard_esl_password"));
    assert_eq!(
        settings.directory.url,
        Some(format!("{switchyard_url}/freeswitch/directory"))
    );

    let mut fsim = clean(&fsim_binary());
    fsim.arg("--freeswitch-conf")
        .arg(conf_dir())
        .args(["--control", "127.0.0.1:0"]);
    for (k, v) in overrides {
        fsim.arg("--set").arg(format!("{k}={v}"));
    }
    let fsim = Proc::spawn(&mut fsim);
    let esl_addr = fsim.line(&format!("listening esl {node_id} "));
    let control = fsim.line("listening control ");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [database]\nurl = \"sqlite://{db}?mode=rwc\"\n\
             [sip]\ndomain = \"{domain}\"\nuser_context = \"{context}\"\n\
             [freeswitch]\nusername = \"{xml_user}\"\npassword = \"{xml_password}\"\n\
             [api]\nkeys = [{{ id = \"e2e\", key = \"{API_KEY}\", scopes = [\"users:write\", \"credentials:issue\"] }}]\n\
             [[nodes]]\nid = \"{node_id}\"\nesl_addr = \"{esl_addr}\"\nesl_password = \"{esl_password}\"\n\
             wss_url = \"wss://{node_id}.test:{wss_port}\"\n",
            db = dir.path().join("sy.db").display(),
            domain = var("domain"),
            context = var("switchyard_user_context"),
            esl_password = var("switchyard_esl_password"),
            wss_port = var("switchyard_wss_port"),
        ),
    )
    .expect("write switchyard.toml");
    let switchyard = Proc::spawn(
        clean(Path::new(env!("CARGO_BIN_EXE_switchyard")))
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path()),
    );
    let base = switchyard.line("listening on ");
    assert_eq!(base, switchyard_url);

    // Switchyard authenticated on fsim's event socket with event_socket.conf's password.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready: serde_json::Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("GET /readyz")
            .json()
            .await
            .expect("readyz JSON");
        let up = ready["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == node_id && n["state"] == "up")
        });
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "node never up: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // fsim asks Switchyard for the user over mod_xml_curl (URL and basic auth from the files).
    let response = http
        .put(format!("{base}/v1/users/alice"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "display_name": "Alice", "enabled": true }))
        .send()
        .await
        .expect("PUT user");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let cred: serde_json::Value = http
        .post(format!("{base}/v1/users/alice/sip-credentials"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("POST credentials")
        .json()
        .await
        .expect("credential JSON");
    let register = |password: String| {
        http.post(format!("{control}/nodes/{node_id}/register"))
            .json(&serde_json::json!({ "user": cred["username"], "password": password }))
            .send()
    };
    let password = cred["password"].as_str().expect("password").to_owned();
    let ok = register(password).await.expect("register");
    let status = ok.status();
    let body: serde_json::Value = ok.json().await.expect("register JSON");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["registered"], true, "{body}");
    let wrong = register("wrong".to_owned()).await.expect("register");
    assert_eq!(wrong.status(), reqwest::StatusCode::FORBIDDEN);

    drop(switchyard);
    drop(fsim);
}
