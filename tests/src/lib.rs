//! What the black-box tests share: the real executables (`switchyard`, `fsim`) built by the same
//! `cargo test --workspace`, and child processes whose stdout lines (the `listening …` lines)
//! the tests read. The tests themselves are the files next to `src/`: `e2e.rs`, `browser.rs`,
//! `deploy.rs`, `docs.rs`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `target/<profile>/`, next to the running test executable's `deps/` directory.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout")
        .to_path_buf()
}

/// The path of a workspace binary, rebuilt first so a stale executable is never tested. The
/// build is the same as `cargo test --workspace`'s (same packages, so the same unified
/// features), hence a no-op there.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["test", "--workspace", "--no-run", "--quiet"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn");
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

    /// The rest of the first stdout line starting with `prefix` (waits up to 30 s).
    pub fn line(&self, prefix: &str) -> String {
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

    /// SIGTERM, then the exit code within 15 s (`None`: still running, or killed by a signal).
    pub fn terminate(mut self) -> Option<i32> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
