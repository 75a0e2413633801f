//! Gantry behind PgBouncer in transaction pooling: the test starts its own `pgbouncer` in
//! front of the test server and plays the product's story through it on `gantry serve`:
//! migrations, registration, a post, a follow, the feed, and many reads at once over a
//! pool larger than PgBouncer's, so transactions of one client connection land on
//! different server connections.
//!
//! sqlx names every prepared statement it sends, so transaction pooling needs PgBouncer
//! 1.21 or later with `max_prepared_statements` (it prepares each statement again on
//! whichever server connection a transaction lands on). Debian 12 ships 1.18: `scripts/test`
//! builds 1.24.1 and names it in `GANTRY_TEST_PGBOUNCER`; without it the test uses
//! `/usr/sbin/pgbouncer`, and fails when that is older than 1.21.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::helpers::{
    Backend, Process, REGISTER, admin_url, eventually, free_port, fresh_database, start,
};

/// Server connections PgBouncer opens per database and user: fewer than the process's pool.
const SERVER_POOL: u64 = 4;

/// A `pgbouncer` process of this test, killed when dropped.
struct Bouncer {
    port: u16,
    _child: Child,
    _dir: TempDir,
}

/// The PgBouncer to run: `GANTRY_TEST_PGBOUNCER`, else the Debian package's.
fn binary() -> String {
    std::env::var("GANTRY_TEST_PGBOUNCER").unwrap_or_else(|_| "/usr/sbin/pgbouncer".to_owned())
}

/// `(major, minor)` of the PgBouncer at `binary`.
fn version(binary: &str) -> (u32, u32) {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run PgBouncer at {binary} ({err}): run scripts/test, which builds one")
        });
    let text = String::from_utf8_lossy(&output.stdout);
    let number = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default();
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Bouncer {
    async fn start() -> Self {
        let binary = binary();
        let found = version(&binary);
        assert!(
            found >= (1, 21),
            "PgBouncer at {binary} is {}.{}: transaction pooling needs 1.21 or later \
             (max_prepared_statements); run scripts/test, which builds 1.24.1 and sets \
             GANTRY_TEST_PGBOUNCER",
            found.0,
            found.1
        );
        let server = reqwest::Url::parse(&admin_url()).expect("the test server's URL");
        let host = server.host_str().unwrap_or("127.0.0.1").to_owned();
        let server_port = server.port().unwrap_or(5432);
        let dir = tempfile::Builder::new()
            .prefix("gantry-pgbouncer-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let d = dir.path().display();
        let ini = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {d}/users.txt\nadmin_users = postgres\n\
             pool_mode = transaction\nmax_prepared_statements = 200\n\
             default_pool_size = {SERVER_POOL}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits\nstats_period = 1\nlogfile = {d}/pgbouncer.log\n"
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").expect("users.txt");
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let mut command = Command::new(&binary);
        if root {
            // PgBouncer does not run as root: it switches to `postgres` at start.
            let _ = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status();
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pgbouncer starts");
        eventually("pgbouncer listens", Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Self {
            port,
            _child: child,
            _dir: dir,
        }
    }

    /// `database` (a test database URL on the test server), through this PgBouncer.
    fn url_of(&self, database: &str) -> String {
        let name = database.rsplit('/').next().unwrap_or_default();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The rows of `command` on PgBouncer's admin console, with their column names.
    fn admin(&self, command: &str) -> Vec<std::collections::HashMap<String, String>> {
        let port = self.port.to_string();
        let output = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "pgbouncer",
            ])
            .args(["-AF", "|", "-P", "footer=off", "-c", command])
            .output()
            .expect("psql runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split('|')
            .map(str::to_owned)
            .collect();
        lines
            .map(|line| {
                header
                    .iter()
                    .cloned()
                    .zip(line.split('|').map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    /// A column of `database`'s row in `SHOW STATS`, summed over its rows.
    fn stat(&self, database: &str, column: &str) -> u64 {
        let name = database.rsplit('/').next().unwrap_or_default();
        self.admin("SHOW STATS")
            .iter()
            .filter(|row| row.get("database").map(String::as_str) == Some(name))
            .filter_map(|row| row.get(column)?.parse::<u64>().ok())
            .sum()
    }
}

async fn graphql(process: &Process, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", process.address))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("graphql answers")
        .json()
        .await
        .expect("graphql json")
}

/// Registers `username`; returns `(id, access token)`.
async fn register(process: &Process, username: &str) -> (String, String) {
    let input = json!({ "input": {
        "username": username,
        "email": format!("{username}@example.com"),
        "password": "correct horse battery",
        "displayName": username,
    }});
    let response = graphql(process, REGISTER, input, None).await;
    let payload = &response["data"]["register"];
    match (
        payload["user"]["id"].as_str(),
        payload["accessToken"].as_str(),
    ) {
        (Some(id), Some(token)) => (id.to_owned(), token.to_owned()),
        _ => panic!("register: {response}"),
    }
}

#[tokio::test]
async fn the_whole_story_runs_through_pgbouncer_in_transaction_pooling() {
    let bouncer = Bouncer::start().await;
    let pool_mode: Vec<String> = bouncer
        .admin("SHOW CONFIG")
        .into_iter()
        .filter(|row| row.get("key").map(String::as_str) == Some("pool_mode"))
        .filter_map(|row| row.get("value").cloned())
        .collect();
    assert_eq!(pool_mode, ["transaction"]);
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let data = data_dir.path().display().to_string();
    let through_bouncer = bouncer.url_of(&database);
    // Migrations, the outbox consumer and requests all go through PgBouncer, from a pool
    // twice as large as PgBouncer's.
    let serve = start(
        &["serve"],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("DATABASE_URL", through_bouncer.as_str()),
            ("GANTRY_DATABASE_MAX_CONNECTIONS", "8"),
            ("GANTRY_RESPONSE_CACHE", "false"),
        ],
    )
    .await;

    let (alice_id, alice) = register(&serve, "alice").await;
    let (_, bob) = register(&serve, "bob").await;
    let created = graphql(
        &serve,
        "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
        json!({ "b": "hello through the pooler" }),
        Some(&alice),
    )
    .await;
    assert!(created["data"]["createPost"]["id"].is_string(), "{created}");
    let followed = graphql(
        &serve,
        "mutation($u: ID!) { follow(userId: $u) { id followerCount } }",
        json!({ "u": alice_id }),
        Some(&bob),
    )
    .await;
    assert_eq!(followed["data"]["follow"]["followerCount"], 1, "{followed}");

    // Many feeds at once: more requests than the process has connections, and those
    // more than PgBouncer has server connections. Each round trip takes whichever server
    // connection is free, which may not have the process's statements prepared yet.
    for round in 0..3 {
        let feeds = (0..32).map(|_| {
            graphql(
                &serve,
                "{ feed(first: 5) { edges { node { body author { username } } } } }",
                json!({}),
                Some(&bob),
            )
        });
        for feed in futures::future::join_all(feeds).await {
            assert_eq!(
                feed,
                json!({ "data": { "feed": { "edges": [
                    { "node": { "body": "hello through the pooler", "author": { "username": "alice" } } }
                ] } } }),
                "round {round}"
            );
        }
    }

    // PgBouncer's figures are refreshed every `stats_period` (1 s here): it passed the
    // transactions on, and prepared the named statements it saw on server connections.
    eventually(
        "PgBouncer counts the transactions and statements it passed on",
        Duration::from_secs(10),
        || async {
            (bouncer.stat(&database, "total_xact_count") > 0
                && bouncer.stat(&database, "total_server_parse_count") > 0)
                .then_some(())
        },
    )
    .await;
    let servers = bouncer
        .admin("SHOW SERVERS")
        .into_iter()
        .filter(|row| row.get("database").map(String::as_str) == database.rsplit('/').next())
        .count();
    assert!(
        (1..=SERVER_POOL as usize).contains(&servers),
        "{servers} server connections for a pool of {SERVER_POOL}"
    );
}
