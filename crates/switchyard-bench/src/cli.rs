//! What every bench binary does the same way: its `--help` text and flag values, where the
//! built binaries are, and pinning itself to a core.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The `//!` header of a bench's source (pass `include_str!` of its own file), as `--help` text.
pub fn usage(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim_start())
        .collect::<Vec<_>>()
        .join("\n")
}

/// For `--help` / `-h`: prints [`usage`] of `source` and exits.
pub fn exit_on_help(flag: &str, source: &str) {
    if flag == "--help" || flag == "-h" {
        println!("{}", usage(source));
        std::process::exit(0);
    }
}

/// The value that follows `flag` on the command line.
pub fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<String> {
    args.next().with_context(|| format!("{flag} needs a value"))
}

/// `value` (of `flag`) as a number.
pub fn number(flag: &str, value: &str) -> anyhow::Result<f64> {
    value
        .parse()
        .with_context(|| format!("{flag}: not a number: {value}"))
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else the workspace's `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Pins the calling process to `cpu`; `false` if the machine refused.
pub fn pin_self(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}
