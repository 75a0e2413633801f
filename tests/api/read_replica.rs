//! `DATABASE_READ_URL` against a real PostgreSQL streaming replica: a second cluster the
//! test makes with `pg_basebackup -R` from the test server and starts on a port of its
//! own. Pausing the replica's replay (`pg_wal_replay_pause()`) makes its lag visible: public
//! reads show the replica's older state while a writer's own reads, right after the write,
//! come from the primary. A replica stopped mid-run moves every read to the primary, and
//! `/ready` and `/metrics` say so. Both subgraphs route their reads so: posts' pages and
//! counts, users' profiles, in `gantry serve` and in each `gantry subgraph`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Backend, Process, REGISTER, admin_url, eventually, free_port, fresh_database, start,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A streaming replica of the test server, stopped (its replication slot dropped and its
/// files removed) when dropped. The slot keeps the WAL the replica still needs: tests
/// that make replicas at once force checkpoints that would recycle it.
struct StreamingReplica {
    port: u16,
    data: PathBuf,
    primary: Primary,
    slot: String,
    _dir: TempDir,
}

/// Where the test server is.
struct Primary {
    host: String,
    port: String,
    user: String,
}

/// Replication slots are named `gantry_test_replica_<UUIDv7>`, so their age is in their name.
const SLOT_PREFIX: &str = "gantry_test_replica_";

impl Primary {
    fn from_admin_url() -> Self {
        let url = reqwest::Url::parse(&admin_url()).expect("the test server's URL");
        Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(5432).to_string(),
            user: match url.username() {
                "" => "postgres".to_owned(),
                user => user.to_owned(),
            },
        }
    }

    /// Runs `sql` with psql, returning what it printed.
    fn psql(&self, sql: &str) -> String {
        let mut psql = pg_command("psql");
        psql.args(["-h", &self.host, "-p", &self.port, "-U", &self.user])
            .args(["-d", "postgres", "-Atc", sql]);
        psql.output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Drops `slot` once the primary has seen its user go (waits at most 10 s).
    fn drop_slot(&self, slot: &str) {
        let drop_slot = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}' AND NOT active"
        );
        let exists = format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}'");
        for _ in 0..100 {
            self.psql(&drop_slot);
            if self.psql(&exists).trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Drops the slots of replicas that earlier runs left behind (killed before their
    /// drop ran), so they do not hold WAL on the test server for ever.
    fn sweep_stale_slots(&self) {
        let slots = self.psql(&format!(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '{SLOT_PREFIX}%' AND NOT active"
        ));
        for slot in slots.lines() {
            let stale = uuid::Uuid::parse_str(slot.trim_start_matches(SLOT_PREFIX))
                .ok()
                .and_then(|id| id.get_timestamp())
                .is_some_and(|ts| {
                    let (secs, _) = ts.to_unix();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    now.saturating_sub(secs) > 600
                });
            if stale {
                self.psql(&format!("SELECT pg_drop_replication_slot('{slot}')"));
            }
        }
    }
}

/// PostgreSQL refuses to run as root: as root, its tools run as `postgres`.
fn pg_command(tool: &str) -> std::process::Command {
    let binary = format!("{PG_BIN}/{tool}");
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut command = if root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--", &binary]);
        command
    } else {
        std::process::Command::new(binary)
    };
    command.stdin(Stdio::null());
    command
}

fn run_pg(mut command: std::process::Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl StreamingReplica {
    async fn start() -> Self {
        let primary = Primary::from_admin_url();
        primary.sweep_stale_slots();
        let dir = tempfile::Builder::new()
            .prefix("gantry-replica-")
            .tempdir()
            .expect("tempdir");
        let chown = std::process::Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        // Not root: the folder is already ours, and chown fails harmlessly.
        let _ = chown;
        let data = dir.path().join("data");
        let port = free_port();
        // A base backup shares the server with other tests, whose database drops can end
        // its stream: it is tried again (three times at most), each time with a new slot.
        let mut attempts = 0;
        let slot = loop {
            attempts += 1;
            let slot = format!("{SLOT_PREFIX}{}", uuid::Uuid::now_v7().simple());
            let mut backup = pg_command("pg_basebackup");
            backup
                .args(["-h", &primary.host, "-p", &primary.port])
                .args(["-U", &primary.user, "-D"])
                .arg(&data)
                .args(["-R", "-X", "stream", "-c", "fast", "-C", "-S", &slot]);
            let output = backup.output().expect("pg_basebackup runs");
            if output.status.success() {
                break slot;
            }
            primary.drop_slot(&slot);
            let _ = std::fs::remove_dir_all(&data);
            assert!(
                attempts < 3,
                "pg_basebackup from the test server (is `host replication` allowed in \
                 pg_hba.conf? scripts/test adds it): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        // Debian keeps the configuration in /etc: the copy needs its own.
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.path().display()
        );
        std::fs::write(data.join("postgresql.conf"), conf).expect("postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let mut start = pg_command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "30", "start"]);
        run_pg(start, "starting the replica");
        Self {
            port,
            data,
            primary,
            slot,
            _dir: dir,
        }
    }

    /// The replica of `database` (a test database URL on the test server).
    fn url_of(&self, database: &str) -> String {
        let name = database.rsplit('/').next().unwrap_or_default();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    async fn connect(&self, database: &str) -> DatabaseConnection {
        Database::connect(self.url_of(database))
            .await
            .expect("the replica answers")
    }

    fn stop(&self) {
        let mut stop = pg_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        let _ = stop.output();
    }
}

impl Drop for StreamingReplica {
    fn drop(&mut self) {
        self.stop();
        self.primary.drop_slot(&self.slot);
    }
}

async fn sql(db: &DatabaseConnection, text: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), text))
        .await
        .unwrap_or_else(|err| panic!("{text}: {err}"));
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

async fn register(process: &Process, username: &str) -> String {
    let input = json!({ "input": {
        "username": username,
        "email": format!("{username}@example.com"),
        "password": "correct horse battery",
        "displayName": username,
    }});
    let response = graphql(process, REGISTER, input, None).await;
    response["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("register: {response}"))
        .to_owned()
}

async fn create_post(process: &Process, token: &str, body: &str) {
    let response = graphql(
        process,
        "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
        json!({ "b": body }),
        Some(token),
    )
    .await;
    assert!(
        response["data"]["createPost"]["id"].is_string(),
        "createPost: {response}"
    );
}

/// The newest post's body, as `token` (or an anonymous client) reads it.
async fn newest_post(process: &Process, token: Option<&str>) -> Option<String> {
    let response = graphql(
        process,
        "{ latestPosts(first: 1) { edges { node { body } } } }",
        json!({}),
        token,
    )
    .await;
    assert!(response["errors"].is_null(), "latestPosts: {response}");
    response["data"]["latestPosts"]["edges"][0]["node"]["body"]
        .as_str()
        .map(str::to_owned)
}

/// Reads served by the replica, as `/metrics` counts them.
const REPLICA_READS: &str = "gantry_database_reads_total{pool=\"replica\",reason=\"lag_tolerant\"}";

/// The viewer's own profile (`me`): `{ id username bio }`.
async fn own_profile(process: &Process, token: &str) -> Value {
    let response = graphql(
        process,
        "{ me { id username bio } }",
        json!({}),
        Some(token),
    )
    .await;
    assert!(response["errors"].is_null(), "me: {response}");
    response["data"]["me"].clone()
}

/// The profile of `id` as `token` (or an anonymous client) reads it: `{ username bio }`,
/// or null.
async fn profile(process: &Process, id: &str, token: Option<&str>) -> Value {
    let response = graphql(
        process,
        "query($id: ID!) { user(id: $id) { username bio } }",
        json!({ "id": id }),
        token,
    )
    .await;
    assert!(response["errors"].is_null(), "user: {response}");
    response["data"]["user"].clone()
}

async fn update_bio(process: &Process, token: &str, bio: &str) {
    let response = graphql(
        process,
        "mutation($bio: String!) { updateProfile(input: { bio: $bio }) { bio } }",
        json!({ "bio": bio }),
        Some(token),
    )
    .await;
    assert_eq!(response["data"]["updateProfile"]["bio"], bio, "{response}");
}

async fn ready(process: &Process) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}/ready", process.address))
        .await
        .expect("/ready answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("/ready json"))
}

async fn metric(process: &Process, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", process.address))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics text");
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn replica_in_use(process: &Process) {
    eventually("the replica is in use", Duration::from_secs(30), || async {
        let (_, body) = ready(process).await;
        (body["checks"]["database_replica"]["status"] == "ok").then_some(())
    })
    .await;
}

/// `gantry serve` over a fresh database and its replica; `max_lag_ms` bounds the lag the
/// replica may have before it is skipped.
async fn serve_with_replica(
    replica: &StreamingReplica,
    data_dir: &TempDir,
    database: &str,
    max_lag_ms: &str,
) -> Process {
    serve_checking_every(replica, data_dir, database, max_lag_ms, "100").await
}

async fn serve_checking_every(
    replica: &StreamingReplica,
    data_dir: &TempDir,
    database: &str,
    max_lag_ms: &str,
    check_ms: &str,
) -> Process {
    let data = data_dir.path().display().to_string();
    let read_url = replica.url_of(database);
    start(
        &["serve"],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("DATABASE_URL", database),
            ("DATABASE_READ_URL", read_url.as_str()),
            ("GANTRY_DATABASE_READ_MAX_LAG_MS", max_lag_ms),
            ("GANTRY_DATABASE_READ_CHECK_MS", check_ms),
            // Every read reaches the subgraphs, so what they read from shows.
            ("GANTRY_RESPONSE_CACHE", "false"),
        ],
    )
    .await
}

#[tokio::test]
async fn while_the_replica_lags_public_reads_lag_but_a_writer_reads_their_own_write_at_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let serve = serve_with_replica(&replica, &data_dir, &database, "600000").await;
    replica_in_use(&serve).await;
    let alice = register(&serve, "alice").await;
    let bob = register(&serve, "bob").await;
    create_post(&serve, &alice, "before the pause").await;
    eventually(
        "the replica has the first post",
        Duration::from_secs(30),
        || async {
            (newest_post(&serve, None).await.as_deref() == Some("before the pause")).then_some(())
        },
    )
    .await;

    let standby = replica.connect(&database).await;
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    create_post(&serve, &alice, "while the replica is paused").await;

    // The writer's read, right after the write, sees it: it came from the primary.
    assert_eq!(
        newest_post(&serve, Some(&alice)).await.as_deref(),
        Some("while the replica is paused")
    );
    // Everyone else reads the replica, which has not replayed the write.
    assert_eq!(
        newest_post(&serve, None).await.as_deref(),
        Some("before the pause")
    );
    // So do other signed-in viewers, once their own registration is no longer recent.
    eventually(
        "bob's reads go to the replica",
        Duration::from_secs(30),
        || async {
            (newest_post(&serve, Some(&bob)).await.as_deref() == Some("before the pause"))
                .then_some(())
        },
    )
    .await;
    let replica_reads = metric(&serve, REPLICA_READS).await;
    assert!(replica_reads.is_some_and(|n| n > 0.0), "{replica_reads:?}");

    // The same for a profile, in the users subgraph of the same process.
    let alice_id = own_profile(&serve, &alice).await["id"]
        .as_str()
        .map(str::to_owned)
        .expect("alice's id");
    update_bio(&serve, &alice, "changed while the replica is paused").await;
    assert_eq!(
        own_profile(&serve, &alice).await["bio"],
        "changed while the replica is paused"
    );
    assert_eq!(profile(&serve, &alice_id, Some(&bob)).await["bio"], "");

    sql(&standby, "SELECT pg_wal_replay_resume()").await;
    eventually(
        "the replica replays the write",
        Duration::from_secs(30),
        || async {
            (newest_post(&serve, None).await.as_deref() == Some("while the replica is paused"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_replica_that_lags_past_its_bound_is_skipped_and_ready_says_so() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let serve = serve_with_replica(&replica, &data_dir, &database, "200").await;
    let alice = register(&serve, "alice").await;
    create_post(&serve, &alice, "first").await;
    replica_in_use(&serve).await;

    let standby = replica.connect(&database).await;
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    create_post(&serve, &alice, "written while the replica lags").await;

    let (status, body) = eventually(
        "the lagging replica is skipped",
        Duration::from_secs(30),
        || async {
            let (status, body) = ready(&serve).await;
            (body["checks"]["database_replica"]["status"] == "degraded").then_some((status, body))
        },
    )
    .await;
    assert_eq!(
        status, 200,
        "a lagging replica does not make the server unready"
    );
    let reason = body["checks"]["database_replica"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.starts_with("lagging"), "{body}");
    // Public reads now come from the primary, so they are current.
    assert_eq!(
        newest_post(&serve, None).await.as_deref(),
        Some("written while the replica lags")
    );
    sql(&standby, "SELECT pg_wal_replay_resume()").await;
}

#[tokio::test]
async fn when_the_replica_stops_reads_keep_working_from_the_primary_and_ready_says_degraded() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let serve = serve_with_replica(&replica, &data_dir, &database, "600000").await;
    replica_in_use(&serve).await;
    assert_eq!(
        metric(&serve, "gantry_database_replica_up").await,
        Some(1.0)
    );
    let alice = register(&serve, "alice").await;

    replica.stop();
    let (status, body) = eventually(
        "the stopped replica is skipped",
        Duration::from_secs(30),
        || async {
            let (status, body) = ready(&serve).await;
            (body["checks"]["database_replica"]["status"] == "degraded").then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(
        metric(&serve, "gantry_database_replica_up").await,
        Some(0.0)
    );
    serve.wait_for_log("read replica skipped").await;

    create_post(&serve, &alice, "after the replica stopped").await;
    assert_eq!(
        newest_post(&serve, None).await.as_deref(),
        Some("after the replica stopped")
    );
}

/// Two replicas of the posts subgraph, one Redis: a write through one, and the writer's
/// read through the other at once, while the replica has not replayed the write.
#[tokio::test]
async fn a_writers_read_through_another_posts_process_sees_the_write_through_redis() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let data = data_dir.path().display().to_string();
    let read_url = replica.url_of(&database);
    let redis =
        std::env::var("GANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test-{}:", uuid::Uuid::now_v7().simple());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("DATABASE_URL", database.as_str()),
        ("DATABASE_READ_URL", read_url.as_str()),
        ("GANTRY_DATABASE_READ_MAX_LAG_MS", "600000"),
        ("GANTRY_DATABASE_READ_CHECK_MS", "100"),
        ("REDIS_URL", redis.as_str()),
        ("GANTRY_REDIS_PREFIX", prefix.as_str()),
        ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
    ];
    let users = start(&["subgraph", "users"], &env).await;
    let posts_a = start(&["subgraph", "posts"], &env).await;
    let posts_b = start(&["subgraph", "posts"], &env).await;
    replica_in_use(&posts_a).await;
    replica_in_use(&posts_b).await;
    let alice = register(&users, "alice").await;
    create_post(&posts_a, &alice, "before the pause").await;
    eventually(
        "the replica has the first post",
        Duration::from_secs(30),
        || async {
            (newest_post(&posts_b, None).await.as_deref() == Some("before the pause")).then_some(())
        },
    )
    .await;

    let standby = replica.connect(&database).await;
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    create_post(&posts_a, &alice, "written through one process").await;

    assert_eq!(
        newest_post(&posts_b, Some(&alice)).await.as_deref(),
        Some("written through one process")
    );
    assert_eq!(
        newest_post(&posts_b, None).await.as_deref(),
        Some("before the pause")
    );
    sql(&standby, "SELECT pg_wal_replay_resume()").await;
}

/// The replica dies between two checks (one check only, then none for ten minutes): the
/// reads sent to it fail and are answered by the primary, so no request fails.
#[tokio::test]
async fn reads_the_stopped_replica_fails_before_the_next_check_are_answered_by_the_primary() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let serve = serve_checking_every(&replica, &data_dir, &database, "600000", "600000").await;
    replica_in_use(&serve).await;
    let alice = register(&serve, "alice").await;
    create_post(&serve, &alice, "written before the replica stopped").await;

    replica.stop();
    let response = graphql(
        &serve,
        "{ latestPosts(first: 1) { edges { node { body likeCount commentCount } } } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(
        response,
        json!({ "data": { "latestPosts": { "edges": [{ "node": {
            "body": "written before the replica stopped", "likeCount": 0, "commentCount": 0
        } }] } } })
    );
    let fallbacks = metric(&serve, "gantry_database_replica_fallbacks_total").await;
    assert!(fallbacks.is_some_and(|n| n > 0.0), "{fallbacks:?}");
}

/// `gantry subgraph users` with `DATABASE_READ_URL`: profiles come from the replica, while
/// a writer's own read right after the write, a new account's first request and sign-in
/// come from the primary.
#[tokio::test]
async fn the_users_subgraph_reads_profiles_from_the_replica_and_a_writers_own_from_the_primary() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let replica = StreamingReplica::start().await;
    let data = data_dir.path().display().to_string();
    let read_url = replica.url_of(&database);
    let users = start(
        &["subgraph", "users"],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("DATABASE_URL", database.as_str()),
            ("DATABASE_READ_URL", read_url.as_str()),
            ("GANTRY_DATABASE_READ_MAX_LAG_MS", "600000"),
            ("GANTRY_DATABASE_READ_CHECK_MS", "100"),
        ],
    )
    .await;
    replica_in_use(&users).await;
    let alice = register(&users, "alice").await;
    let bob = register(&users, "bob").await;
    let alice_id = own_profile(&users, &alice).await["id"]
        .as_str()
        .map(str::to_owned)
        .expect("alice's id");
    eventually(
        "the replica has alice's account",
        Duration::from_secs(30),
        || async { (!profile(&users, &alice_id, None).await.is_null()).then_some(()) },
    )
    .await;

    let standby = replica.connect(&database).await;
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    update_bio(&users, &alice, "written while the replica is paused").await;

    // The writer's own read, right after the write, sees it: it came from the primary.
    assert_eq!(
        own_profile(&users, &alice).await["bio"],
        "written while the replica is paused"
    );
    assert_eq!(
        profile(&users, &alice_id, Some(&alice)).await["bio"],
        "written while the replica is paused"
    );
    // Everyone else reads the replica, which has not replayed the write.
    assert_eq!(
        profile(&users, &alice_id, None).await,
        json!({ "username": "alice", "bio": "" })
    );
    eventually(
        "bob's reads go to the replica once his registration is no longer recent",
        Duration::from_secs(30),
        || async { (profile(&users, &alice_id, Some(&bob)).await["bio"] == "").then_some(()) },
    )
    .await;
    let by_name = graphql(
        &users,
        "{ userByUsername(username: \"alice\") { bio } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(
        by_name,
        json!({ "data": { "userByUsername": { "bio": "" } } })
    );

    // An account made while the replica lags: the replica does not know it, yet its first
    // request finds it, and it can sign in at once.
    let carol = register(&users, "carol").await;
    assert_eq!(own_profile(&users, &carol).await["username"], "carol");
    let unknown = graphql(
        &users,
        "{ userByUsername(username: \"carol\") { username } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(unknown, json!({ "data": { "userByUsername": null } }));
    let login = graphql(
        &users,
        "mutation { login(input: { login: \"carol\", password: \"correct horse battery\" }) { user { username } } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(
        login,
        json!({ "data": { "login": { "user": { "username": "carol" } } } })
    );
    let replica_reads = metric(&users, REPLICA_READS).await;
    assert!(replica_reads.is_some_and(|n| n > 0.0), "{replica_reads:?}");

    sql(&standby, "SELECT pg_wal_replay_resume()").await;
    eventually(
        "the replica replays the write",
        Duration::from_secs(30),
        || async {
            (profile(&users, &alice_id, None).await["bio"] == "written while the replica is paused")
                .then_some(())
        },
    )
    .await;
}
