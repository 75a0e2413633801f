//! The report's "Subscriptions" section: idle subscriptions held, then fan-out.

use std::fmt::Write as _;

use super::{FanoutReport, IdleReport, SubscriptionsReport};

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn shape(report: &SubscriptionsReport) -> String {
    report
        .labels
        .get("shape")
        .cloned()
        .unwrap_or_else(|| "?".into())
}

fn describe(shape: &str) -> &'static str {
    match shape {
        "serve" => {
            "`gantry serve` on PostgreSQL and Redis: the gateway and both subgraphs in one process (subgraphs subscribed to in-process, events through Redis pub/sub)"
        }
        "split" => {
            "`gantry subgraph users` + `gantry subgraph posts` + `gantry gateway`, PostgreSQL and Redis: the gateway subscribes to the posts subgraph over a WebSocket per upstream subscription"
        }
        _ => "",
    }
}

pub fn section(md: &mut String, reports: &[SubscriptionsReport]) {
    if reports.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Subscriptions\n\nClients are `graphql-transport-ws` WebSockets to the gateway's \
         `/graphql` (as the `graphql-ws` client speaks it), anonymous, from `gantry-bench \
         subscriptions` on the same machine."
    );
    for report in reports {
        let shape = shape(report);
        let _ = writeln!(md, "\n### {shape}\n\n{}.", describe(&shape));
        if let Some(idle) = &report.idle {
            idle_section(md, idle);
        }
        if !report.fanout.is_empty() {
            fanout_section(md, &report.fanout);
        }
    }
}

fn idle_section(md: &mut String, idle: &IdleReport) {
    let _ = writeln!(
        md,
        "\n**Idle subscriptions held.** {} subscriptions over {} connections ({} each): {} to \
         {} hot posts (identical ones share an upstream), {} each to a post of its own; \
         `commentAdded {{ id body createdAt author {{ id username }} }}` and \
         `postLikeCountChanged {{ id likeCount }}` alternately, {} distinct (post, field) \
         pairs. All shown by `gantry_subscriptions_active` {:.1} s after the first \
         connection; {} refused or ended, {} connections failed.{}\n",
        idle.requested,
        idle.connections,
        idle.per_connection,
        idle.hot_subscriptions,
        idle.hot_posts,
        idle.distinct_subscriptions,
        idle.distinct_upstream_keys,
        idle.open_secs,
        idle.refused,
        idle.connect_failures,
        idle.sample_error
            .as_deref()
            .map(|e| format!(" First: `{}`.", e.replace('`', "'")))
            .unwrap_or_default(),
    );
    let _ = writeln!(md, "| | held | after closing every connection |");
    let _ = writeln!(md, "|---|--:|--:|");
    let _ = writeln!(
        md,
        "| gateway `gantry_subscriptions_active` | {:.0} | {:.0} |",
        idle.gateway_active, idle.gateway_active_after_close
    );
    let _ = writeln!(
        md,
        "| gateway `gantry_subscription_upstreams_active` | {:.0} | {:.0} |",
        idle.upstreams_active, idle.upstreams_active_after_close
    );
    let _ = writeln!(
        md,
        "| subgraphs `gantry_subscriptions_active{{subgraph}}` | {:.0} | {:.0} |",
        idle.subgraph_active, idle.subgraph_active_after_close
    );
    let _ = writeln!(
        md,
        "\nThe gauges were back to their starting values {:.1} s after the connections closed \
         (or the wait gave up at 60 s).\n",
        idle.close_secs
    );
    let _ = writeln!(
        md,
        "| process | VmRSS before MB | VmRSS held MB | VmRSS after close MB | VmHWM MB | bytes per subscription |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    for (name, memory) in &idle.processes {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {:.0} |",
            mb(memory.before.rss_kb),
            mb(memory.held.rss_kb),
            mb(memory.after_close.rss_kb),
            mb(memory.after_close.hwm_kb.max(memory.held.hwm_kb)),
            memory.bytes_per_subscription,
        );
    }
    let _ = writeln!(
        md,
        "\nBytes per subscription: (VmRSS held − VmRSS before) ÷ the subscriptions the \
         gateway held; for a subgraph process, its growth over the same number."
    );
}

fn fanout_section(md: &mut String, runs: &[FanoutReport]) {
    let first = &runs[0];
    let _ = writeln!(
        md,
        "\n**Fan-out.** {} subscribers of one post's `commentAdded`, each on its own \
         connection; one signed-in writer adds comments to that post at {:.0}/s in open loop \
         for {:.0} s. Latency: from the instant before the `addComment` request is written to \
         the instant each subscriber reads that comment's `next` frame off its socket (one \
         clock; the comment's body names it). Spread: per comment, first subscriber's receipt \
         to last. Delivered/s: deliveries from the first comment's send to the last receipt. \
         Lost: deliveries still missing once none had arrived for 10 s (or 90 s after the last \
         comment was answered); skipped: events the subgraph dropped for a subscriber more than 1,024 \
         behind (`gantry_live_events_skipped_total`).\n",
        first.subscribers, first.rate, first.duration_secs
    );
    let _ = writeln!(
        md,
        "| selection | comments ok / sent | deliveries | lost | skipped | duplicates | event errors | p50 ms | p95 ms | p99 ms | max ms | spread p50 / p99 ms | addComment p50 / p99 ms | delivered/s | upstreams | CPU % |"
    );
    let _ = writeln!(
        md,
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    for run in runs {
        let l = &run.latency;
        let cpu: Vec<String> = run
            .processes
            .iter()
            .map(|(name, usage)| format!("{name} {:.0}", usage.cpu_percent))
            .collect();
        let _ = writeln!(
            md,
            "| {} (`{}`) | {} / {} | {} of {} | **{}** | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} | {:.0} | {} |",
            run.name,
            run.query
                .split_once("commentAdded(postId: $postId) ")
                .and_then(|(_, selection)| selection.strip_suffix(" }"))
                .unwrap_or(run.query.as_str()),
            run.comments_ok,
            run.comments_sent,
            run.delivered,
            run.expected_deliveries,
            run.lost,
            run.skipped_by_subgraphs,
            run.duplicates,
            run.event_errors,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.max_ms,
            run.spread.p50_ms,
            run.spread.p99_ms,
            run.mutation_latency.p50_ms,
            run.mutation_latency.p99_ms,
            run.delivered_per_sec,
            run.upstreams_active,
            cpu.join(" · "),
        );
    }
    for run in runs {
        for (what, sample) in [
            ("addComment error", &run.sample_mutation_error),
            ("event error", &run.sample_event_error),
        ] {
            if let Some(sample) = sample {
                let sample: String = sample.chars().take(300).collect();
                let _ = writeln!(
                    md,
                    "\n- {} {what}: `{}`",
                    run.name,
                    sample.replace('`', "'")
                );
            }
        }
        if run.ended_early > 0 {
            let _ = writeln!(
                md,
                "\n- {}: {} subscriptions ended before the run did",
                run.name, run.ended_early
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriptions::{Memory, ProcessMemory};

    #[test]
    fn the_section_gives_memory_per_subscription_and_lost_events() {
        let mut idle = IdleReport {
            requested: 10_000,
            gateway_active: 10_000.0,
            upstreams_active: 5_020.0,
            ..IdleReport::default()
        };
        idle.processes.insert(
            "serve".into(),
            ProcessMemory {
                before: Memory {
                    rss_kb: 102_400,
                    hwm_kb: 102_400,
                },
                held: Memory {
                    rss_kb: 204_800,
                    hwm_kb: 204_800,
                },
                after_close: Memory {
                    rss_kb: 153_600,
                    hwm_kb: 204_800,
                },
                bytes_per_subscription: 10_485.76,
            },
        );
        let fanout = FanoutReport {
            name: "posts-only".into(),
            query: "subscription CommentAdded($postId: ID!) { commentAdded(postId: $postId) { id body } }".into(),
            subscribers: 1000,
            comments_ok: 2000,
            comments_sent: 2000,
            expected_deliveries: 2_000_000,
            delivered: 1_999_990,
            lost: 10,
            ..FanoutReport::default()
        };
        let mut report = SubscriptionsReport {
            idle: Some(idle),
            fanout: vec![fanout],
            ..SubscriptionsReport::default()
        };
        report.labels.insert("shape".into(), "serve".into());
        let mut md = String::new();
        section(&mut md, &[report]);
        assert!(
            md.contains("| serve | 100.0 | 200.0 | 150.0 | 200.0 | 10486 |"),
            "{md}"
        );
        assert!(
            md.contains("| gateway `gantry_subscription_upstreams_active` | 5020 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| posts-only (`{ id body }`) | 2000 / 2000 | 1999990 of 2000000 | **10** | 0 |"
            ),
            "{md}"
        );
    }
}
