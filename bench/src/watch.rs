//! Memory and CPU of the processes under test, read from `/proc` while a run measures:
//! `VmRSS` sampled for the window's peak, `VmHWM` (the peak since the process started), and
//! `utime + stime` at both ends of the window for the average CPU.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux ABI this runs
/// on (reading `sysconf(_SC_CLK_TCK)` would need `unsafe`, which the workspace forbids).
const TICKS_PER_SEC: f64 = 100.0;

/// How often the resident set is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessUsage {
    pub pid: u32,
    /// The largest `VmRSS` seen during the window, in KiB.
    pub rss_max_kb: u64,
    /// `VmHWM` at the end: the peak resident set since the process started, in KiB.
    pub hwm_kb: u64,
    /// CPU time used during the window, in seconds (all threads, user + system).
    pub cpu_secs: f64,
    /// That, as a percentage of one core over the window (200 = two cores busy).
    pub cpu_percent: f64,
    /// False when the process went away during the window.
    pub alive: bool,
}

/// `(VmRSS, VmHWM)` in KiB.
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `utime + stime` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields from
    // the last `)`. After it come field 3 (state) onward; utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Samples `processes` (name, pid) until `stop` turns true, then reports each.
pub async fn watch(
    processes: Vec<(String, u32)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> BTreeMap<String, ProcessUsage> {
    let started = Instant::now();
    let start_ticks: Vec<Option<u64>> = processes.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let mut rss_max = vec![0u64; processes.len()];
    loop {
        for ((_, pid), max) in processes.iter().zip(rss_max.iter_mut()) {
            if let Some((rss, _)) = memory_kb(*pid) {
                *max = (*max).max(rss);
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    let window = started.elapsed().as_secs_f64().max(1e-9);
    processes
        .into_iter()
        .zip(start_ticks)
        .zip(rss_max)
        .map(|(((name, pid), start), rss_max_kb)| {
            let end = cpu_ticks(pid);
            let cpu_secs = match (start, end) {
                (Some(s), Some(e)) => e.saturating_sub(s) as f64 / TICKS_PER_SEC,
                _ => 0.0,
            };
            let usage = ProcessUsage {
                pid,
                rss_max_kb,
                hwm_kb: memory_kb(pid).map(|(_, hwm)| hwm).unwrap_or(0),
                cpu_secs,
                cpu_percent: cpu_secs / window * 100.0,
                alive: end.is_some(),
            };
            (name, usage)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (gantry (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 70 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some(320));
    }

    #[test]
    fn resident_and_peak_memory_are_read_from_status() {
        let status = "Name:\tgantry\nVmHWM:\t  51200 kB\nVmRSS:\t  40960 kB\nThreads:\t9\n";
        assert_eq!(parse_status(status), Some((40960, 51200)));
    }

    #[test]
    fn this_process_can_be_watched() {
        let pid = std::process::id();
        assert!(memory_kb(pid).is_some_and(|(rss, hwm)| rss > 0 && hwm >= rss));
        assert!(cpu_ticks(pid).is_some());
    }
}
