//! `gantry-bench report`: gathers the JSON of every run in a folder into the day's JSON and
//! Markdown reports: one table per shape, then Gantry and Hive Router side by side (over
//! the `split` subgraphs, and gateway-bound in [`crate::side_by_side`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::prometheus;
use crate::record::RunReport;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DayReport {
    pub machine: Machine,
    /// Given with `--meta KEY=VALUE`: git commit, quick or full, notes.
    pub meta: BTreeMap<String, String>,
    pub runs: Vec<RunReport>,
    /// `gantry-bench subscriptions` runs, one per shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<crate::subscriptions::SubscriptionsReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_total_kb: u64,
}

impl Machine {
    pub fn this_one() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
                .unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            memory_total_kb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// Reads every `*.json` run in `dir`, in file-name order.
pub fn read_runs(dir: &Path) -> anyhow::Result<Vec<RunReport>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

pub(crate) fn label<'a>(run: &'a RunReport, key: &str) -> &'a str {
    run.labels.get(key).map_or("", String::as_str)
}

/// `100/s` or `50 conn`.
pub fn load_name(run: &RunReport) -> String {
    match (run.target_rps, run.connections) {
        (Some(rate), _) => format!("{rate:.0}/s"),
        (None, Some(n)) => format!("{n} conn"),
        _ => "?".into(),
    }
}

fn shape_description(shape: &str) -> &'static str {
    match shape {
        "sqlite" => "`gantry serve`, one process on a SQLite file, in-process caches",
        "pg-redis" => "`gantry serve` on PostgreSQL and Redis, response cache on",
        "split" => {
            "`gantry subgraph users` + `gantry subgraph posts` + `gantry gateway`, PostgreSQL and Redis, response cache on"
        }
        "ceiling" => {
            "`gantry-bench ceiling`: a bare axum handler returning a captured `mobile-reads` answer (HTTP alone)"
        }
        "replica" => {
            "`gantry serve` on PostgreSQL and Redis with `DATABASE_READ_URL` on a streaming replica of the database (`pg_basebackup`, same machine)"
        }
        "feed-100k-all" => {
            "`gantry serve` on PostgreSQL and Redis, 100,000 seeded users, response cache off: the signed-in feed of 1,000 random viewers"
        }
        "feed-100k-heavy" => {
            "the same server: the signed-in feed of the 200 viewers who follow the most of the 200 most-followed accounts"
        }
        "feed-100k-reference-all" => {
            "the same data and viewers, `GANTRY_FEED_READ=fanout-on-read` (the feed before timelines): 1,000 random viewers"
        }
        "feed-100k-reference-heavy" => {
            "the same data, `GANTRY_FEED_READ=fanout-on-read`: the 200 viewers who follow the most of the 200 most-followed accounts"
        }
        _ => "",
    }
}

/// The response cache's counter `name`, or every series of it when none is labelled so.
fn response_cache(samples: &prometheus::Samples, name: &str) -> f64 {
    samples
        .get(&format!("{name}{{cache=\"response\"}}"))
        .copied()
        .unwrap_or_else(|| prometheus::sum(samples, name))
}

/// Response-cache hit ratio from the gateway's counters, else from `x-cache` headers.
fn cache_hit_ratio(run: &RunReport) -> Option<f64> {
    let (mut hits, mut misses) = (0.0, 0.0);
    for samples in run.metrics_delta.values() {
        hits += response_cache(samples, "gantry_cache_hits_total");
        misses += response_cache(samples, "gantry_cache_misses_total");
    }
    if hits + misses == 0.0 {
        (hits, misses) = (run.cache_hits as f64, run.cache_misses as f64);
    }
    (hits + misses > 0.0).then(|| hits / (hits + misses))
}

/// SQL statements (every process's counter) per completed request.
fn sql_per_request(run: &RunReport) -> Option<f64> {
    let mut found = false;
    let mut statements = 0.0;
    for samples in run.metrics_delta.values() {
        if samples
            .keys()
            .any(|k| k.starts_with("gantry_sql_statements_total"))
        {
            found = true;
            statements += prometheus::sum(samples, "gantry_sql_statements_total");
        }
    }
    let requests = run.achieved_rps * run.duration_secs;
    (found && requests > 0.0).then(|| statements / requests)
}

fn mb(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

/// `name value · name value` over the processes under test (not the load generator).
fn per_process(run: &RunReport, value: impl Fn(&crate::watch::ProcessUsage) -> String) -> String {
    let parts: Vec<String> = run
        .processes
        .iter()
        .filter(|(name, _)| name.as_str() != "load-generator")
        .map(|(name, usage)| {
            if run.processes.len() <= 2 {
                value(usage)
            } else {
                format!("{name} {}", value(usage))
            }
        })
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(" · ")
    }
}

fn errors_cell(run: &RunReport) -> String {
    if run.errors_total == 0 {
        return "0".into();
    }
    let top = run
        .errors
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| format!(" ({k}: {n})"))
        .unwrap_or_default();
    format!("{}{top}", run.errors_total)
}

fn opt(value: Option<f64>, f: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "—".into(), f)
}

pub fn markdown(day: &DayReport, date: &str) -> String {
    let mut md = String::new();
    let m = &day.machine;
    let _ = writeln!(md, "# Gantry load benchmark, {date}\n");
    let _ = writeln!(
        md,
        "Machine: {} cores ({}), {:.0} GiB, Linux {}. Commit `{}`. Mode: {}.",
        m.nproc,
        m.cpu_model,
        m.memory_total_kb as f64 / 1024.0 / 1024.0,
        m.kernel,
        day.meta.get("commit").map_or("?", String::as_str),
        day.meta.get("mode").map_or("?", String::as_str),
    );
    if let Some(first) = day.runs.first() {
        let _ = writeln!(
            md,
            "Each run: {:.0} s warm-up (sent, not recorded), then {:.0} s measured. The load \
             generator runs on the same machine and shares its cores. Open loop (`N/s`): \
             latency from each request's intended send time; closed loop (`50 conn`): 50 \
             connections back to back.",
            first.warmup_secs, first.duration_secs
        );
    }
    for (key, value) in &day.meta {
        if key.starts_with("note") {
            let _ = writeln!(md, "\n> {value}");
        }
    }

    let mut shapes: Vec<&str> = Vec::new();
    for run in day.runs.iter().filter(|r| label(r, "group") == "shapes") {
        let shape = label(run, "shape");
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    for shape in shapes {
        let _ = writeln!(md, "\n## {shape}\n");
        let description = shape_description(shape);
        if !description.is_empty() {
            let _ = writeln!(md, "{description}.\n");
        }
        let _ = writeln!(
            md,
            "| scenario | load | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | errors | cache hits | SQL/req | peak RSS MB | CPU % | generator CPU % |"
        );
        let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|---|--:|--:|---|---|--:|");
        for run in day
            .runs
            .iter()
            .filter(|r| label(r, "group") == "shapes" && label(r, "shape") == shape)
        {
            let l = &run.latency;
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
                run.scenario,
                load_name(run),
                run.achieved_rps,
                l.p50_ms,
                l.p95_ms,
                l.p99_ms,
                l.max_ms,
                errors_cell(run),
                opt(cache_hit_ratio(run), |r| format!("{:.0} %", r * 100.0)),
                opt(sql_per_request(run), |s| format!("{s:.2}")),
                per_process(run, |u| mb(u.rss_max_kb)),
                per_process(run, |u| format!("{:.0}", u.cpu_percent)),
                run.processes
                    .get("load-generator")
                    .map_or("—".into(), |u| format!("{:.0}", u.cpu_percent)),
            );
        }
    }

    crate::subscriptions::markdown::section(&mut md, &day.subscriptions);
    hive_section(&mut md, day);
    replica_reads_section(&mut md, day);
    crate::side_by_side::section(&mut md, day);
    mixed_operations(&mut md, day);
    error_samples(&mut md, day);
    md
}

/// Database reads by `(pool, reason)`.
type ReadsByRoute = BTreeMap<(String, String), f64>;

/// The database reads of a run (every process's `gantry_database_reads_total`), by pool and
/// reason.
fn reads_by_route(run: &RunReport) -> ReadsByRoute {
    let mut reads = BTreeMap::new();
    for samples in run.metrics_delta.values() {
        for (series, value) in samples {
            let Some(labels) = series.strip_prefix("gantry_database_reads_total{") else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches(['}', '"']).to_owned())
                    .unwrap_or_default()
            };
            *reads.entry((label("pool"), label("reason"))).or_insert(0.0) += value;
        }
    }
    reads
}

/// The replica's share of database reads, for the runs of a server with a read replica.
fn replica_reads_section(md: &mut String, day: &DayReport) {
    let runs: Vec<(&RunReport, ReadsByRoute)> = day
        .runs
        .iter()
        .map(|run| (run, reads_by_route(run)))
        .filter(|(_, reads)| reads.keys().any(|(pool, _)| pool == "replica"))
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Reads served by the read replica\n\nDatabase reads made outside write \
         transactions during each measured window (`gantry_database_reads_total`), by the \
         pool that served them: the replica for reads that tolerate its lag, the primary for \
         mutations, a viewer's reads within `GANTRY_READ_YOUR_WRITES_MS` of their own write \
         (`must_be_current`, which also counts sign-in and session reads), and reads the \
         replica was skipped or failed for.\n"
    );
    let _ = writeln!(
        md,
        "| shape | scenario | load | reads | replica share | primary: must be current | primary: replica skipped or failed |"
    );
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|");
    for (run, reads) in runs {
        let total: f64 = reads.values().sum();
        let of = |pick: &dyn Fn(&str, &str) -> bool| -> f64 {
            reads
                .iter()
                .filter(|((pool, reason), _)| pick(pool, reason))
                .fold(0.0, |sum, (_, n)| sum + n)
        };
        let share = |n: f64| format!("{:.1} %", 100.0 * n / total.max(1.0));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            label(run, "shape"),
            run.scenario,
            load_name(run),
            total,
            share(of(&|pool, _| pool == "replica")),
            share(of(&|_, reason| reason == "must_be_current")),
            share(of(&|_, reason| {
                reason == "replica_skipped" || reason == "replica_failed"
            })),
        );
    }
}

fn hive_section(md: &mut String, day: &DayReport) {
    let hive: Vec<&RunReport> = day
        .runs
        .iter()
        .filter(|r| label(r, "group") == "hive")
        .collect();
    if hive.is_empty() {
        if let Some(why) = day.meta.get("hive") {
            let _ = writeln!(md, "\n## Gantry and Hive Router\n\n{why}");
        }
        return;
    }
    let _ = writeln!(
        md,
        "\n## Gantry and Hive Router\n\nThe same `split` subgraph processes behind Gantry's \
         gateway and behind Hive Router, measured alternately. Dedup on: Gantry's defaults \
         (operation and subgraph de-duplication) and Hive's `traffic_shaping.router.dedupe` \
         and `traffic_shaping.all.dedupe_enabled`; off: all four off. RSS is the gateway \
         process's peak during the run.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | dedup | load | Gantry req/s | Hive req/s | Gantry/Hive | Gantry p95 ms | Hive p95 ms | Gantry/Hive | Gantry RSS MB | Hive RSS MB | Gantry/Hive | gateway CPU % G / H | SQL/req G / H | errors G / H |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    let key = |r: &RunReport| {
        (
            r.scenario.clone(),
            label(r, "dedup").to_owned(),
            load_name(r),
        )
    };
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for run in &hive {
        if !keys.contains(&key(run)) {
            keys.push(key(run));
        }
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "—".into()
        }
    };
    for k in keys {
        let find = |gateway: &str| {
            hive.iter()
                .find(|r| key(r) == k && label(r, "gateway") == gateway)
                .copied()
        };
        let (Some(g), Some(h)) = (find("gantry"), find("hive")) else {
            continue;
        };
        let rss = |r: &RunReport| r.processes.get("gateway").map_or(0, |u| u.rss_max_kb);
        let cpu = |r: &RunReport| {
            r.processes
                .get("gateway")
                .map_or("—".into(), |u| format!("{:.0}", u.cpu_percent))
        };
        let sql = |r: &RunReport| opt(sql_per_request(r), |s| format!("{s:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
            k.0,
            k.1,
            k.2,
            g.achieved_rps,
            h.achieved_rps,
            ratio(g.achieved_rps, h.achieved_rps),
            g.latency.p95_ms,
            h.latency.p95_ms,
            ratio(g.latency.p95_ms, h.latency.p95_ms),
            mb(rss(g)),
            mb(rss(h)),
            ratio(rss(g) as f64, rss(h) as f64),
            cpu(g),
            cpu(h),
            sql(g),
            sql(h),
            errors_cell(g),
            errors_cell(h),
        );
    }
}

/// Per-operation latencies of the `mixed` runs at their highest load.
fn mixed_operations(md: &mut String, day: &DayReport) {
    let mixed: Vec<&RunReport> = day
        .runs
        .iter()
        .filter(|r| r.scenario == "mixed" && r.connections.is_some())
        .collect();
    if mixed.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## mixed, per operation (closed loop)\n");
    let _ = writeln!(
        md,
        "| shape | operation | count | errors | p50 ms | p95 ms | p99 ms |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|");
    for run in mixed {
        for (op, r) in &run.by_operation {
            let _ = writeln!(
                md,
                "| {} | {op} | {} | {} | {:.2} | {:.2} | {:.2} |",
                label(run, "shape"),
                r.count,
                r.errors,
                r.latency.p50_ms,
                r.latency.p95_ms,
                r.latency.p99_ms
            );
        }
    }
}

fn error_samples(md: &mut String, day: &DayReport) {
    let with_errors: Vec<&RunReport> = day.runs.iter().filter(|r| r.errors_total > 0).collect();
    if with_errors.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Errors\n");
    for run in with_errors {
        let who = [
            label(run, "shape"),
            label(run, "gateway"),
            label(run, "dedup"),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        for (kind, n) in &run.errors {
            let sample = run.error_samples.get(kind).map_or("", String::as_str);
            let sample = sample.replace('|', "\\|").replace('\n', " ");
            let _ = writeln!(
                md,
                "- {who} {} {}: {n} × `{kind}`: {sample}",
                run.scenario,
                load_name(run)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::ProcessUsage;

    fn run(group: &str, gateway: &str, rps: f64, p95: f64, rss_kb: u64) -> RunReport {
        let mut run = RunReport {
            scenario: "federation-stress".into(),
            mode: "closed".into(),
            connections: Some(50),
            duration_secs: 10.0,
            achieved_rps: rps,
            ..RunReport::default()
        };
        run.latency.p95_ms = p95;
        for (k, v) in [
            ("group", group),
            ("gateway", gateway),
            ("dedup", "on"),
            ("shape", "split"),
        ] {
            run.labels.insert(k.into(), v.into());
        }
        run.processes.insert(
            "gateway".into(),
            ProcessUsage {
                rss_max_kb: rss_kb,
                ..ProcessUsage::default()
            },
        );
        let mut delta = prometheus::Samples::new();
        delta.insert("gantry_sql_statements_total".into(), 500.0);
        run.metrics_delta.insert("posts".into(), delta);
        run
    }

    fn day(runs: Vec<RunReport>) -> DayReport {
        DayReport {
            machine: Machine {
                nproc: 2,
                cpu_model: "cpu".into(),
                kernel: "6".into(),
                memory_total_kb: 1,
            },
            meta: BTreeMap::new(),
            runs,
            subscriptions: Vec::new(),
        }
    }

    #[test]
    fn the_replica_share_is_its_reads_over_every_read_of_the_run() {
        let mut replica = run("shapes", "", 100.0, 10.0, 1024);
        replica.scenario = "mixed".into();
        replica.labels.insert("shape".into(), "replica".into());
        let delta = replica.metrics_delta.entry("serve".into()).or_default();
        for (series, n) in [
            ("{pool=\"replica\",reason=\"lag_tolerant\"}", 750.0),
            ("{pool=\"primary\",reason=\"must_be_current\"}", 200.0),
            ("{pool=\"primary\",reason=\"replica_skipped\"}", 40.0),
            ("{pool=\"primary\",reason=\"replica_failed\"}", 10.0),
        ] {
            delta.insert(format!("gantry_database_reads_total{series}"), n);
        }
        let without = run("shapes", "", 100.0, 10.0, 1024);
        let md = markdown(&day(vec![replica, without]), "2026-01-01");
        assert!(
            md.contains("| replica | mixed | 50 conn | 1000 | 75.0 % | 20.0 % | 5.0 % |"),
            "{md}"
        );
        assert_eq!(
            md.matches("| split | federation-stress | 50 conn |")
                .count(),
            0
        );
    }

    #[test]
    fn gantry_and_hive_runs_pair_up_into_ratios() {
        let md = markdown(
            &day(vec![
                run("hive", "gantry", 2000.0, 30.0, 60 * 1024),
                run("hive", "hive", 1000.0, 60.0, 30 * 1024),
            ]),
            "2026-01-01",
        );
        assert!(
            md.contains("| federation-stress | on | 50 conn | 2000 | 1000 | 2.00 | 30.00 | 60.00 | 0.50 | 60 | 30 | 2.00 | 0 / 0 | 0.03 / 0.05 | 0 / 0 |"),
            "{md}"
        );
    }

    #[test]
    fn sql_statements_are_divided_by_completed_requests() {
        let r = run("shapes", "", 10.0, 1.0, 1);
        assert_eq!(sql_per_request(&r), Some(5.0));
        assert!(markdown(&day(vec![r]), "d").contains("| 5.00 |"));
    }
}
