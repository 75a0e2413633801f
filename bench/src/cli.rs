//! The command line, and running each command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rand::SeedableRng;

use crate::load::{LoadOptions, Mode};
use crate::pool::PoolFile;
use crate::prepare::PrepareOptions;
use crate::report::{DayReport, Machine};
use crate::scenario::{Scenario, ScenarioName};
use crate::subscriptions::{FanoutOptions, IdleOptions, SubscriptionOptions};

#[derive(Debug, Parser)]
#[command(name = "gantry-bench", about = "Load benchmarks for Gantry")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one scenario at a fixed rate (open loop) or over N connections (closed loop).
    Load(LoadArgs),
    /// Sign seeded users in and read hot ids from the database into a pool file.
    Prepare(PrepareArgs),
    /// Send one request of a scenario and save the response body (e.g. for `ceiling`).
    Sample(SampleArgs),
    /// Serve fixed bytes from a bare axum handler: the HTTP ceiling.
    Ceiling(CeilingArgs),
    /// Serve the four in-memory federation subgraphs of the gateway-bound comparison.
    Subgraphs(SubgraphsArgs),
    /// Send the deep query to each gateway; fail unless the answers are equal (keys sorted).
    CompareAnswers(CompareAnswersArgs),
    /// Hold idle subscriptions through the gateway, then measure event fan-out latency.
    Subscriptions(SubscriptionsArgs),
    /// Gather a folder of run JSON files into the day's JSON and Markdown reports.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql.
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum)]
    pub scenario: ScenarioName,
    /// The pool file from `prepare` (every scenario but `ceiling` needs it).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Open loop: requests per second, each intended at a fixed time.
    #[arg(
        long,
        conflicts_with = "connections",
        required_unless_present = "connections"
    )]
    pub rate: Option<f64>,
    /// Closed loop: this many connections, each sending back to back.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of load sent before measuring, not recorded.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Open loop: the most requests in flight; one that cannot start is an error.
    #[arg(long, default_value_t = 10_000)]
    pub max_outstanding: usize,
    /// Idle keep-alive connections kept (default: --connections, or 1024 in open loop).
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Seconds before a request counts as a timeout.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// A process to sample during the window, as NAME=PID; repeat for each.
    #[arg(long = "watch-pid", value_name = "NAME=PID", value_parser = name_value::<u32>)]
    pub watch_pid: Vec<(String, u32)>,
    /// A `/metrics` URL to read before and after the window, as NAME=URL; repeat for each.
    #[arg(long, value_name = "NAME=URL", value_parser = name_value::<String>)]
    pub metrics: Vec<(String, String)>,
    /// A label copied into the JSON (shape, gateway …), as KEY=VALUE; repeat for each.
    #[arg(long, value_name = "KEY=VALUE", value_parser = name_value::<String>)]
    pub label: Vec<(String, String)>,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The GraphQL endpoint to log in through.
    #[arg(long)]
    pub url: String,
    /// The seeded database (PostgreSQL or SQLite URL).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long)]
    pub out: PathBuf,
    /// How many seeded users to sign in.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Logins in flight at once (each costs an Argon2id hash on the server).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The seeded users' password (`gantry seed --password`).
    #[arg(long, default_value = "seeded orbit lantern")]
    pub password: String,
    /// The `gantry seed --seed` the data was made with.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 200)]
    pub popular_posts: usize,
    #[arg(long, default_value_t = 200)]
    pub popular_users: usize,
    /// Distinct users `federation-stress` asks for.
    #[arg(long, default_value_t = 300)]
    pub stress_users: usize,
    /// Sign in the users who follow the most of the `--popular-users` most-followed
    /// accounts, most first, instead of a random sample: the heaviest feed viewers.
    #[arg(long)]
    pub heavy_viewers: bool,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum)]
    pub scenario: ScenarioName,
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Where to write the body.
    #[arg(long)]
    pub out: PathBuf,
    /// Send the first request of this operation (e.g. `PostPage`) in the scenario's stream.
    #[arg(long)]
    pub operation: Option<String>,
}

#[derive(Debug, Args)]
pub struct CeilingArgs {
    #[arg(long, default_value = "127.0.0.1:4900")]
    pub listen: SocketAddr,
    /// The bytes to answer with.
    #[arg(long)]
    pub body_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct SubgraphsArgs {
    /// A subgraph (accounts, products, reviews, inventory) and where it listens, as
    /// NAME=ADDRESS; repeat for each.
    #[arg(long, value_name = "NAME=ADDRESS", value_parser = name_value::<SocketAddr>, required = true)]
    pub listen: Vec<(String, SocketAddr)>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct CompareAnswersArgs {
    /// A gateway's GraphQL endpoint, as NAME=URL; give two or more.
    #[arg(long, value_name = "NAME=URL", value_parser = name_value::<String>, required = true)]
    pub gateway: Vec<(String, String)>,
    /// Write each gateway's answer, keys sorted, to this folder as NAME.json.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    /// The gateway's GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql (WebSockets go
    /// to the same path).
    #[arg(long)]
    pub url: String,
    /// A file of post ids, one a line: the first `--hot-posts` are the hot ones (the first
    /// is the fan-out's post), the rest each get one idle subscription.
    #[arg(long)]
    pub posts: PathBuf,
    /// A `/metrics` URL, as NAME=URL; repeat for each (the gateway's, the subgraphs').
    #[arg(long, value_name = "NAME=URL", value_parser = name_value::<String>)]
    pub metrics: Vec<(String, String)>,
    /// A process whose memory and CPU are read, as NAME=PID; repeat for each.
    #[arg(long = "watch-pid", value_name = "NAME=PID", value_parser = name_value::<u32>)]
    pub watch_pid: Vec<(String, u32)>,
    /// A label copied into the JSON (shape …), as KEY=VALUE; repeat for each.
    #[arg(long, value_name = "KEY=VALUE", value_parser = name_value::<String>)]
    pub label: Vec<(String, String)>,
    /// Idle: WebSocket connections.
    #[arg(long, default_value_t = 100)]
    pub idle_connections: usize,
    /// Idle: subscriptions per connection (the gateway allows 100 by default).
    #[arg(long, default_value_t = 100)]
    pub idle_per_connection: usize,
    /// Idle: the posts half of the subscriptions share.
    #[arg(long, default_value_t = 10)]
    pub hot_posts: usize,
    /// Idle: seconds to wait for every subscription to show in the gateway's gauge.
    #[arg(long, default_value_t = 180.0)]
    pub open_timeout: f64,
    /// Skip the idle measurement.
    #[arg(long)]
    pub skip_idle: bool,
    /// A fan-out run, as NAME=SELECTION of `commentAdded` (it must hold `body`), e.g.
    /// `posts-only=id body`; repeat for each, run in order.
    #[arg(long, value_name = "NAME=SELECTION", value_parser = name_value::<String>)]
    pub fanout: Vec<(String, String)>,
    /// Fan-out: subscribers of the post, one connection each.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Fan-out: comments per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Fan-out: seconds of comments.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Fan-out: once every comment is answered, seconds without a delivery after which the
    /// missing ones count as lost.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Fan-out: the seeded account that writes the comments.
    #[arg(long, default_value = "")]
    pub writer: String,
    /// The seeded users' password (`gantry seed --password`).
    #[arg(long, default_value = "seeded orbit lantern")]
    pub password: String,
    /// Worker threads of the clients.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The folder of run JSON files (read in file-name order).
    #[arg(long)]
    pub runs: PathBuf,
    #[arg(long)]
    pub json_out: PathBuf,
    #[arg(long)]
    pub md_out: PathBuf,
    /// The report's date, as in the file names.
    #[arg(long)]
    pub date: String,
    /// The JSON of a `subscriptions` run to include; repeat for each.
    #[arg(long)]
    pub subscriptions: Vec<PathBuf>,
    /// KEY=VALUE recorded with the report (commit, mode, note…, hive); repeat for each.
    #[arg(long, value_name = "KEY=VALUE", value_parser = name_value::<String>)]
    pub meta: Vec<(String, String)>,
}

fn name_value<T: std::str::FromStr>(s: &str) -> Result<(String, T), String>
where
    T::Err: std::fmt::Display,
{
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let value = value.parse::<T>().map_err(|e| format!("`{value}`: {e}"))?;
    Ok((name.to_owned(), value))
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Load(args) => runtime(args.threads)?.block_on(load(args)),
        Command::Prepare(args) => runtime(2)?.block_on(crate::prepare::run(PrepareOptions {
            url: args.url,
            database_url: args.database_url,
            out: args.out,
            users: args.users,
            concurrency: args.concurrency,
            password: args.password,
            seed: args.seed,
            popular_posts: args.popular_posts,
            popular_users: args.popular_users,
            stress_users: args.stress_users,
            heavy_viewers: args.heavy_viewers,
        })),
        Command::Ceiling(args) => {
            runtime(2)?.block_on(crate::ceiling::serve(args.listen, &args.body_file, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        }
        Command::Sample(args) => runtime(1)?.block_on(sample(args)),
        Command::Subgraphs(args) => {
            runtime(args.threads)?.block_on(crate::subgraphs::serve(args.listen, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        }
        Command::CompareAnswers(args) => {
            runtime(1)?.block_on(crate::answers::compare(&args.gateway, args.save.as_deref()))
        }
        Command::Subscriptions(args) => runtime(args.threads)?.block_on(subscriptions(args)),
        Command::Report(args) => report(args),
    }
}

async fn subscriptions(args: SubscriptionsArgs) -> anyhow::Result<()> {
    let posts: Vec<String> = std::fs::read_to_string(&args.posts)
        .with_context(|| format!("reading {}", args.posts.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if !args.fanout.is_empty() && args.writer.is_empty() {
        anyhow::bail!("a fan-out run needs --writer, a seeded username");
    }
    let options = SubscriptionOptions {
        url: args.url,
        metrics: args.metrics,
        watch: args.watch_pid,
        posts,
        idle: (!args.skip_idle).then(|| IdleOptions {
            connections: args.idle_connections,
            per_connection: args.idle_per_connection,
            hot_posts: args.hot_posts,
            open_timeout: Duration::from_secs_f64(args.open_timeout),
        }),
        fanout: args
            .fanout
            .into_iter()
            .map(|(name, selection)| FanoutOptions {
                name,
                selection,
                subscribers: args.subscribers,
                rate: args.rate,
                duration: Duration::from_secs_f64(args.duration),
                drain: Duration::from_secs_f64(args.drain),
                writer: args.writer.clone(),
                password: args.password.clone(),
            })
            .collect(),
        labels: args.label.into_iter().collect(),
    };
    let report = crate::subscriptions::run(options).await?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}

async fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let pool = args.pool.as_deref().map(PoolFile::read).transpose()?;
    let scenario = Scenario::new(args.scenario, &args.url, pool.as_ref())?;
    let client = crate::load::http_client(1, Duration::from_secs(30))?;
    scenario.setup(&client).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let request = std::iter::repeat_with(|| scenario.next(&mut rng))
        .take(10_000)
        .find(|r| args.operation.as_deref().is_none_or(|op| op == r.operation))
        .context("the scenario never sends that operation")?;
    let mut builder = client.request(request.method, request.url.clone());
    if let Some(body) = request.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    if let Some(auth) = request.authorization {
        builder = builder.header(reqwest::header::AUTHORIZATION, auth);
    }
    let response = builder.send().await?.error_for_status()?;
    let body = response.bytes().await?;
    std::fs::write(&args.out, &body).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "sample: {} bytes of {} from {}",
        body.len(),
        request.operation,
        request.url
    );
    Ok(())
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let pool = args.pool.as_deref().map(PoolFile::read).transpose()?;
    let scenario = Arc::new(Scenario::new(args.scenario, &args.url, pool.as_ref())?);
    let mode = match (args.rate, args.connections) {
        (Some(rate), _) => Mode::Open { rate },
        (None, Some(connections)) => Mode::Closed { connections },
        (None, None) => anyhow::bail!("give --rate or --connections"),
    };
    let pool_size = args.pool_size.unwrap_or(match mode {
        Mode::Open { .. } => 1024,
        Mode::Closed { connections } => connections,
    });
    let options = LoadOptions {
        scenario: scenario.clone(),
        mode,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        max_outstanding: args.max_outstanding,
        pool_size,
        request_timeout: Duration::from_secs_f64(args.timeout),
        watch: args.watch_pid,
        metrics: args.metrics,
        labels: args.label.into_iter().collect(),
        seed: args.seed,
    };
    let report = crate::load::run(options).await?;
    // `login` and `refreshSession` rotated tokens: keep the pool current for the next run
    // (presenting a rotated refresh token again would revoke its session).
    if let (Some(path), Some(mut pool)) = (&args.pool, pool)
        && args.scenario == ScenarioName::Mixed
    {
        for (user, session) in pool.users.iter_mut().zip(scenario.sessions()) {
            *user = session.snapshot(user);
        }
        pool.write(path)?;
    }
    let l = &report.latency;
    eprintln!(
        "{} {}: {:.0} req/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} errors {:?}",
        report.scenario,
        crate::report::load_name(&report),
        report.achieved_rps,
        l.p50_ms,
        l.p95_ms,
        l.p99_ms,
        l.max_ms,
        report.errors_total,
        report.errors,
    );
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let day = DayReport {
        machine: Machine::this_one(),
        meta: args.meta.into_iter().collect::<BTreeMap<_, _>>(),
        runs: crate::report::read_runs(&args.runs)?,
        subscriptions: args
            .subscriptions
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let md = crate::report::markdown(&day, &args.date);
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&day)?)
        .with_context(|| format!("writing {}", args.json_out.display()))?;
    std::fs::write(&args.md_out, &md)
        .with_context(|| format!("writing {}", args.md_out.display()))?;
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn name_value_pairs_parse() {
        assert_eq!(name_value::<u32>("gateway=42"), Ok(("gateway".into(), 42)));
        assert!(name_value::<u32>("gateway").is_err());
    }
}
