//! CPU time of a process (all its threads, `/proc/<pid>/stat` utime + stime) and of this one
//! (`getrusage`).

use std::time::Duration;

use anyhow::Context as _;
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::{SysconfVar, sysconf};

/// User + system CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime(pub Duration);

impl CpuTime {
    pub fn since(self, earlier: CpuTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

fn clock_ticks() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// utime + stime of `pid` (every thread, dead ones included), at clock-tick resolution.
pub fn process_cpu(pid: u32) -> anyhow::Result<CpuTime> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    parse_stat(&text, clock_ticks())
}

fn parse_stat(text: &str, ticks_per_sec: u64) -> anyhow::Result<CpuTime> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short stat line")?
            .parse::<u64>()
            .context("stat field is not a number")
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(CpuTime(Duration::from_micros(
        ticks * 1_000_000 / ticks_per_sec,
    )))
}

/// This process's user + system time.
pub fn self_cpu() -> anyhow::Result<CpuTime> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let micros = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().max(0) as u64)
            + Duration::from_micros(tv.tv_usec().max(0) as u64)
    };
    Ok(CpuTime(
        micros(usage.user_time()) + micros(usage.system_time()),
    ))
}

/// CPU time every core of the machine spent busy (user, nice, system, irq, softirq, steal from
/// the `cpu` line of `/proc/stat`): with the figures of the processes under test it shows how
/// much of the machine something else used during a run.
pub fn machine_busy() -> anyhow::Result<CpuTime> {
    let text = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    parse_machine(&text, clock_ticks())
}

fn parse_machine(text: &str, ticks_per_sec: u64) -> anyhow::Result<CpuTime> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().context("/proc/stat field is not a number"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Ok(CpuTime(Duration::from_micros(
        busy * 1_000_000 / ticks_per_sec,
    )))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_stat;

    #[test]
    fn stat_line() {
        let line =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        let cpu = parse_stat(line, 100).ok().map(|c| c.0);
        assert_eq!(cpu, Some(Duration::from_secs(3)));
        assert!(super::process_cpu(std::process::id()).is_ok());
    }

    #[test]
    fn machine_line() {
        let text = "cpu  100 5 50 1000 7 3 2 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let busy = super::parse_machine(text, 100).ok().map(|c| c.0);
        assert_eq!(busy, Some(Duration::from_millis(2000)));
        assert!(super::machine_busy().is_ok());
    }
}
