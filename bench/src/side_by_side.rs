//! The `gateway-bound` section of a report: Gantry's gateway and Hive Router over the same
//! four in-memory subgraphs, each figure the median of the alternating rounds.
//!
//! Runs carry the labels `group=gateway-bound`, `gateway=gantry|hive`, `dedup=on|off` and
//! `round=N`; the gateway process is watched as `gateway`. CPU per request is the gateway's
//! `utime + stime` over the measured window divided by the responses completed in it; peak
//! RSS is the gateway's `VmHWM` (its peak since it started) at the end of the run.

use std::fmt::Write as _;

use crate::record::RunReport;
use crate::report::{DayReport, label, load_name};

/// The gateways compared, as labelled, and how the table names them.
const GATEWAYS: [(&str, &str); 2] = [("hive", "Hive Router"), ("gantry", "Gantry")];

/// One gateway's figures over the rounds of one (dedup, load) cell.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Medians {
    pub rounds: usize,
    pub rps: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Gateway CPU milliseconds per completed request.
    pub cpu_ms_per_request: Option<f64>,
    /// The gateway's `VmHWM`, in MiB.
    pub peak_rss_mb: Option<f64>,
    pub errors: u64,
}

/// The gateway's CPU milliseconds per completed request in one run.
pub fn cpu_ms_per_request(run: &RunReport) -> Option<f64> {
    let usage = run.processes.get("gateway")?;
    let completed = run.achieved_rps * run.duration_secs;
    (completed > 0.0).then(|| usage.cpu_secs * 1000.0 / completed)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The medians of `runs` (one gateway, one cell).
pub fn medians(runs: &[&RunReport]) -> Medians {
    let of = |f: &dyn Fn(&RunReport) -> f64| median(runs.iter().map(|r| f(r)).collect());
    let rps: Vec<f64> = runs.iter().map(|r| r.achieved_rps).collect();
    Medians {
        rounds: runs.len(),
        rps: of(&|r| r.achieved_rps).unwrap_or(0.0),
        rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
        rps_max: rps.iter().copied().fold(0.0, f64::max),
        p50_ms: of(&|r| r.latency.p50_ms).unwrap_or(0.0),
        p95_ms: of(&|r| r.latency.p95_ms).unwrap_or(0.0),
        p99_ms: of(&|r| r.latency.p99_ms).unwrap_or(0.0),
        cpu_ms_per_request: median(runs.iter().filter_map(|r| cpu_ms_per_request(r)).collect()),
        peak_rss_mb: median(
            runs.iter()
                .filter_map(|r| r.processes.get("gateway"))
                .map(|u| u.hwm_kb as f64 / 1024.0)
                .collect(),
        ),
        errors: runs.iter().map(|r| r.errors_total).sum(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn or_dash(value: Option<f64>, f: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "—".into(), f)
}

/// Appends the section, if the day has `gateway-bound` runs.
pub fn section(md: &mut String, day: &DayReport) {
    let runs: Vec<&RunReport> = day
        .runs
        .iter()
        .filter(|r| label(r, "group") == "gateway-bound")
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Gateway-bound: Gantry and Hive Router side by side\n\n\
         The deep query (users → reviews → product → reviews → author → reviews → product, \
         and topProducts → reviews → author → reviews → product, with fragments) through the \
         four in-memory subgraphs of `gantry-bench subgraphs`, against Gantry's gateway \
         (`gantry gateway --supergraph`, response cache off) and Hive Router, both reading \
         the same supergraph file; the two take turns, run by run. Each figure is the median \
         over the rounds (req/s also gives the lowest and highest). Dedup on: Gantry's \
         `GANTRY_DEDUP_OPERATIONS` and `GANTRY_DEDUP_SUBGRAPH`, Hive's \
         `traffic_shaping.router.dedupe.enabled` and `traffic_shaping.all.dedupe_enabled`; \
         off: all four off. CPU per request: the gateway process's user + system time in the \
         measured window over the responses completed in it. Peak RSS: the gateway's \
         `VmHWM`.\n"
    );
    let _ = writeln!(
        md,
        "| dedup | load | gateway | rounds | req/s (min–max) | p50 ms | p95 ms | p99 ms | CPU ms/req | peak RSS MB | errors |"
    );
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut cells: Vec<(String, String)> = Vec::new();
    for run in &runs {
        let cell = (label(run, "dedup").to_owned(), load_name(run));
        if !cells.contains(&cell) {
            cells.push(cell);
        }
    }
    let mut ratios = Vec::new();
    for (dedup, load) in &cells {
        let mut by_gateway = Vec::new();
        for (key, name) in GATEWAYS {
            let mine: Vec<&RunReport> = runs
                .iter()
                .filter(|r| {
                    label(r, "dedup") == dedup
                        && load_name(r) == *load
                        && label(r, "gateway") == key
                })
                .copied()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let m = medians(&mine);
            let _ = writeln!(
                md,
                "| {dedup} | {load} | {name} | {} | {:.0} ({:.0}–{:.0}) | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                m.rounds,
                m.rps,
                m.rps_min,
                m.rps_max,
                m.p50_ms,
                m.p95_ms,
                m.p99_ms,
                or_dash(m.cpu_ms_per_request, |v| format!("{v:.3}")),
                or_dash(m.peak_rss_mb, |v| format!("{v:.0}")),
                m.errors,
            );
            by_gateway.push((key, m));
        }
        let find = |key: &str| by_gateway.iter().find(|(k, _)| *k == key).map(|(_, m)| m);
        if let (Some(g), Some(h)) = (find("gantry"), find("hive")) {
            ratios.push(format!(
                "| {dedup} | {load} | {} | {} | {} | {} |",
                ratio(Some(g.rps), Some(h.rps)),
                ratio(g.cpu_ms_per_request, h.cpu_ms_per_request),
                ratio(Some(g.p99_ms), Some(h.p99_ms)),
                ratio(g.peak_rss_mb, h.peak_rss_mb),
            ));
        }
    }
    if !ratios.is_empty() {
        let _ = writeln!(
            md,
            "\nGantry ÷ Hive Router (medians; above 1 is more req/s, or more CPU, latency \
             and memory):\n\n| dedup | load | req/s | CPU per request | p99 | peak RSS |\n|---|---|--:|--:|--:|--:|"
        );
        for row in ratios {
            let _ = writeln!(md, "{row}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LatencySummary;
    use crate::report::Machine;
    use crate::watch::ProcessUsage;

    fn run(gateway: &str, dedup: &str, rps: f64, cpu_secs: f64, hwm_mb: u64) -> RunReport {
        RunReport {
            scenario: "gateway-bound".into(),
            mode: "closed".into(),
            connections: Some(50),
            duration_secs: 10.0,
            achieved_rps: rps,
            latency: LatencySummary {
                p99_ms: 1000.0 / rps,
                ..LatencySummary::default()
            },
            labels: [
                ("group", "gateway-bound"),
                ("gateway", gateway),
                ("dedup", dedup),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            processes: [(
                "gateway".to_owned(),
                ProcessUsage {
                    cpu_secs,
                    hwm_kb: hwm_mb * 1024,
                    ..ProcessUsage::default()
                },
            )]
            .into(),
            ..RunReport::default()
        }
    }

    #[test]
    fn cpu_per_request_is_the_window_cpu_over_completed_requests() {
        // 1,000 req/s for 10 s, 4 s of CPU: 0.4 ms per request.
        let r = run("gantry", "on", 1000.0, 4.0, 50);
        assert!((cpu_ms_per_request(&r).unwrap() - 0.4).abs() < 1e-9);
    }

    #[test]
    fn each_figure_is_the_median_of_the_rounds() {
        let runs = [
            run("hive", "on", 900.0, 9.0, 60),
            run("hive", "on", 1000.0, 5.0, 62),
            run("hive", "on", 5000.0, 1.0, 61),
        ];
        let m = medians(&runs.iter().collect::<Vec<_>>());
        assert_eq!(m.rounds, 3);
        assert_eq!(m.rps, 1000.0);
        assert_eq!((m.rps_min, m.rps_max), (900.0, 5000.0));
        assert_eq!(m.peak_rss_mb, Some(61.0));
        // 1.0, 0.5, 0.02 ms per request.
        assert!((m.cpu_ms_per_request.unwrap() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_table_pairs_the_gateways_and_gives_their_ratios() {
        let day = DayReport {
            machine: Machine::this_one(),
            meta: Default::default(),
            runs: vec![
                run("gantry", "on", 2000.0, 4.0, 40),
                run("hive", "on", 1000.0, 4.0, 80),
            ],
            subscriptions: Vec::new(),
        };
        let mut md = String::new();
        section(&mut md, &day);
        assert!(
            md.contains("| on | 50 conn | Hive Router | 1 | 1000 (1000–1000) | 0.00 | 0.00 | 1.00 | 0.400 | 80 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| on | 50 conn | 2.00× | 0.50× | 0.50× | 0.50× |"),
            "{md}"
        );
    }
}
