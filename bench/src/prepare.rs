//! `gantry-bench prepare`: signs seeded users in through the API (with bounded concurrency,
//! waiting out `RATE_LIMITED` answers) and reads the hot ids straight from the database,
//! then writes the pool file every scenario draws from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::pool::{PoolFile, PooledUser};
use crate::scenario::operations;

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub url: String,
    pub database_url: String,
    pub out: PathBuf,
    /// How many seeded users to sign in.
    pub users: usize,
    pub concurrency: usize,
    pub password: String,
    /// The `--seed` the data was seeded with: usernames are `s<seed>_u<n>`.
    pub seed: u64,
    pub popular_posts: usize,
    pub popular_users: usize,
    pub stress_users: usize,
    /// Sign in the users who follow the most of the `popular_users` most-followed
    /// accounts (the feed's heaviest viewers) instead of a random sample.
    pub heavy_viewers: bool,
}

pub async fn run(options: PrepareOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut connect = ConnectOptions::new(options.database_url.clone());
    connect.max_connections(2).sqlx_logging(false);
    let db = Database::connect(connect)
        .await
        .context("connecting to the benchmark database")?;

    let prefix = format!("s{}_u", options.seed);
    let mut seeded: Vec<(String, String)> = rows(
        &db,
        &format!("SELECT id, username FROM users WHERE username LIKE '{prefix}%'"),
        &["id", "username"],
    )
    .await?
    .into_iter()
    .filter_map(|mut r| Some((r.remove(0), r.pop()?)))
    .filter(|(_, name)| name.starts_with(&prefix))
    .collect();
    if seeded.is_empty() {
        bail!("no seeded users named {prefix}* in the database: run `gantry seed` first");
    }
    // Sorted, then shuffled with a fixed seed: the same users every time.
    seeded.sort();
    let mut rng = StdRng::seed_from_u64(42);
    seeded.shuffle(&mut rng);
    seeded.truncate(options.users);
    if options.heavy_viewers {
        seeded = heavy_viewers(&db, &prefix, options.popular_users, options.users).await?;
    }

    let mut popular_posts = ids(
        &db,
        "SELECT post_id AS id, COUNT(*) AS n FROM likes GROUP BY post_id ORDER BY n DESC, post_id LIMIT",
        options.popular_posts,
    )
    .await?;
    fill(
        &mut popular_posts,
        ids(
            &db,
            "SELECT id FROM posts ORDER BY created_at DESC LIMIT",
            options.popular_posts,
        )
        .await?,
        options.popular_posts,
    );
    let mut popular_users = ids(
        &db,
        "SELECT followee_id AS id, COUNT(*) AS n FROM follows GROUP BY followee_id ORDER BY n DESC, followee_id LIMIT",
        options.popular_users,
    )
    .await?;
    fill(
        &mut popular_users,
        ids(
            &db,
            "SELECT DISTINCT author_id AS id FROM posts ORDER BY author_id LIMIT",
            options.popular_users,
        )
        .await?,
        options.popular_users,
    );
    let mut authors = ids(
        &db,
        "SELECT DISTINCT author_id AS id FROM posts ORDER BY author_id LIMIT",
        1_000_000,
    )
    .await?;
    authors.shuffle(&mut rng);
    authors.truncate(options.stress_users);
    db.close().await.ok();
    eprintln!(
        "prepare: {} popular posts, {} popular users, {} stress users; signing in {} users",
        popular_posts.len(),
        popular_users.len(),
        authors.len(),
        seeded.len()
    );

    let users = sign_in(&options, seeded).await?;
    let pool = PoolFile {
        password: options.password.clone(),
        users,
        popular_posts,
        popular_users,
        stress_users: authors,
    };
    pool.write(&options.out)?;
    eprintln!(
        "prepare: wrote {} in {:.1} s",
        options.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Logs every user in with bounded concurrency.
async fn sign_in(
    options: &PrepareOptions,
    seeded: Vec<(String, String)>,
) -> anyhow::Result<Vec<PooledUser>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, username) in seeded {
        let (client, limit) = (client.clone(), limit.clone());
        let (url, password) = (options.url.clone(), options.password.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let (access, refresh) = login(&client, &url, &username, &password).await?;
            anyhow::Ok(PooledUser {
                id,
                username,
                access_token: access,
                refresh_token: refresh,
            })
        });
    }
    let mut users = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        users.push(joined??);
    }
    users.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(users)
}

/// One login; a `RATE_LIMITED` answer is waited out (a few times at most).
pub async fn login(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<(String, String)> {
    let request = json!({
        "query": operations::LOGIN,
        "operationName": "Login",
        "variables": { "login": username, "password": password },
    });
    for _attempt in 0..5 {
        let body: Value = client
            .post(url)
            .json(&request)
            .send()
            .await
            .with_context(|| format!("logging in {username}"))?
            .json()
            .await
            .with_context(|| format!("logging in {username}: reading the answer"))?;
        let payload = &body["data"]["login"];
        if let (Some(access), Some(refresh)) = (
            payload["accessToken"].as_str(),
            payload["refreshToken"].as_str(),
        ) {
            return Ok((access.to_owned(), refresh.to_owned()));
        }
        let error = &body["errors"][0];
        if error["extensions"]["code"] == "RATE_LIMITED" {
            let wait = error["extensions"]["retryAfter"].as_u64().unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 60))).await;
            continue;
        }
        bail!("logging in {username} failed: {body}");
    }
    bail!(
        "logging in {username}: still rate limited; start the server with GANTRY_LOGIN_ADDRESS_THRESHOLD=1000000"
    )
}

/// Tops `list` up to `n` from `more`, without repeats.
fn fill(list: &mut Vec<String>, more: Vec<String>, n: usize) {
    for id in more {
        if list.len() >= n {
            break;
        }
        if !list.contains(&id) {
            list.push(id);
        }
    }
}

/// The `id` column of `sql` followed by ` <limit>`.
/// The seeded users who follow the most of the `popular` most-followed accounts, most
/// first: the viewers whose feeds merge the most-followed authors' posts.
async fn heavy_viewers(
    db: &DatabaseConnection,
    prefix: &str,
    popular: usize,
    limit: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT u.id AS id, u.username AS username \
         FROM (SELECT follower_id, COUNT(*) AS n FROM follows \
               WHERE followee_id IN (SELECT followee_id FROM follows GROUP BY followee_id \
                                     ORDER BY COUNT(*) DESC, followee_id LIMIT {popular}) \
               GROUP BY follower_id) AS heavy \
         JOIN users u ON u.id = heavy.follower_id \
         WHERE u.username LIKE '{prefix}%' \
         ORDER BY heavy.n DESC, u.id LIMIT {limit}"
    );
    let viewers: Vec<(String, String)> = rows(db, &sql, &["id", "username"])
        .await?
        .into_iter()
        .filter_map(|mut r| Some((r.remove(0), r.pop()?)))
        .collect();
    if viewers.is_empty() {
        bail!("no seeded user follows any of the most-followed accounts");
    }
    Ok(viewers)
}

async fn ids(db: &DatabaseConnection, sql: &str, limit: usize) -> anyhow::Result<Vec<String>> {
    Ok(rows(db, &format!("{sql} {limit}"), &["id"])
        .await?
        .into_iter()
        .filter_map(|mut r| r.pop())
        .collect())
}

/// Rows of text columns; UUID columns (a blob in SQLite, `uuid` in PostgreSQL) as strings.
async fn rows(
    db: &DatabaseConnection,
    sql: &str,
    columns: &[&str],
) -> anyhow::Result<Vec<Vec<String>>> {
    let statement = Statement::from_string(db.get_database_backend(), sql.to_owned());
    let rows = db
        .query_all_raw(statement)
        .await
        .with_context(|| format!("running {sql}"))?;
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    row.try_get::<String>("", c)
                        .or_else(|_| {
                            row.try_get::<sea_orm::prelude::Uuid>("", c)
                                .map(|u| u.to_string())
                        })
                        .with_context(|| format!("reading column {c} of {sql}"))
                })
                .collect()
        })
        .collect()
}
