//! `switchyard check-config`, black box: every problem of a file in one run.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The real binary, with no inherited `SWITCHYARD_*` variables, in `dir`.
fn check_config(dir: &Path, config: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .arg("check-config")
        .arg("--config")
        .arg(config);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHYARD_") {
            command.env_remove(key);
        }
    }
    command.output().expect("run switchyard check-config")
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
[http]
listn = "127.0.0.1:8080"
shutdown_grace_secs = "ten"

[pool]
heartbeat_late_sec = 30

[database]
url = "mysql://db/x"

[[nodes]]
id = "fs1"
esl_password = "x"
wss_url = "wss://fs1.example.com:7443"
capacity = 0
"#,
    )
    .expect("write config");
    let out = check_config(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed as config");
    let line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line about {needle}:\n{stderr}"))
    };
    // Unknown keys in two sections, with suggestions.
    assert!(line("http.listn").contains("did you mean `listen`?"));
    assert!(line("pool.heartbeat_late_sec").contains("did you mean `heartbeat_late_secs`?"));
    // A wrong type.
    assert!(line("http.shutdown_grace_secs").contains("invalid type"));
    // Failed checks.
    assert!(line("database.url").contains("sqlite://"));
    assert!(line("nodes[0].capacity").contains("greater than 0"));
    // Each names the file, and the count comes last.
    for key in [
        "http.listn",
        "pool.heartbeat_late_sec",
        "http.shutdown_grace_secs",
    ] {
        assert!(line(key).contains("bad.toml"), "{}", line(key));
    }
    assert!(
        stderr.trim_end().ends_with("5 problems found"),
        "count last:\n{stderr}"
    );
    assert!(!stderr.contains("mysql://"), "URLs may hold secrets");
}

#[test]
fn check_config_accepts_the_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("switchyard.example.toml");
    let out = check_config(dir.path(), &example);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: toml::Table = toml::from_str(&stdout).expect("prints TOML");
    assert!(printed.contains_key("http"), "{stdout}");
    assert!(stdout.contains("[redacted]"), "secrets redacted:\n{stdout}");
}
