//! `TestApp`: a real app on port 0 with its own data dir and database, and request helpers
//! so each test reads Arrange / Act / Assert.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry::cli::{Cli, CommonArgs, RedisArgs, SubgraphName};
use gantry::commands::BackgroundTasks;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Where a test's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server that test databases are created on.
pub fn admin_url() -> String {
    std::env::var("GANTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Test databases are named `gantry_test_<UUIDv7>`, so their age is in their name.
const TEST_DATABASE_PREFIX: &str = "gantry_test_";

/// One test's database, dropped (PostgreSQL) when the last clone of it is dropped, also
/// when the test fails. Derefs to its URL.
#[derive(Clone)]
pub struct TestDatabase(Arc<DatabaseGuard>);

struct DatabaseGuard {
    url: String,
    /// The PostgreSQL database to drop; `None` for SQLite (its file is in the data dir).
    postgres: Option<String>,
}

impl std::ops::Deref for TestDatabase {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0.url
    }
}

impl std::fmt::Display for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.url)
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let Some(name) = self.postgres.take() else {
            return;
        };
        // This runs inside the test's runtime, which cannot wait for a future here: a
        // thread with a runtime of its own drops the database (closing what still uses it).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(admin_url()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop a test database; a later run sweeps it");
        }
    }
}

/// Test databases older than this are left over from runs that were killed; a run drops
/// them once, at its first database (ones in use are skipped).
const STALE_AFTER: Duration = Duration::from_secs(3600);

async fn sweep_stale_databases(admin: &sea_orm::DatabaseConnection) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let Ok(rows) = admin
                .query_all_raw(sea_orm::Statement::from_string(
                    admin.get_database_backend(),
                    format!(
                        "SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DATABASE_PREFIX}%'"
                    ),
                ))
                .await
            else {
                return;
            };
            let now = std::time::SystemTime::now();
            for row in rows {
                let Ok(name) = row.try_get::<String>("", "datname") else {
                    continue;
                };
                let created = name
                    .strip_prefix(TEST_DATABASE_PREFIX)
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    .and_then(|id| id.get_timestamp())
                    .map(|ts| {
                        let (secs, nanos) = ts.to_unix();
                        std::time::UNIX_EPOCH + Duration::new(secs, nanos)
                    });
                let stale = created
                    .and_then(|at| now.duration_since(at).ok())
                    .is_some_and(|age| age > STALE_AFTER);
                if stale {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                        .await;
                }
            }
        })
        .await;
}

/// A fresh, empty database for one test.
pub async fn fresh_database(backend: Backend, data_dir: &std::path::Path) -> TestDatabase {
    match backend {
        Backend::Sqlite => TestDatabase(Arc::new(DatabaseGuard {
            url: format!("sqlite://{}?mode=rwc", data_dir.join("test.db").display()),
            postgres: None,
        })),
        Backend::Postgres => {
            let admin_url = admin_url();
            let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::now_v7().simple());
            let admin = Database::connect(&admin_url)
                .await
                .expect("PostgreSQL is reachable");
            sweep_stale_databases(&admin).await;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            TestDatabase(Arc::new(DatabaseGuard {
                url: format!("{base}/{name}"),
                postgres: Some(name),
            }))
        }
    }
}

/// Settings for a test app: defaults plus `extra` flags.
pub fn settings(data_dir: &std::path::Path, database_url: &str, extra: &[&str]) -> CommonArgs {
    let mut args = vec![
        "gantry".to_owned(),
        "serve".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--database-url".to_owned(),
        database_url.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    match Cli::try_parse_from(args)
        .expect("valid test settings")
        .command
    {
        gantry::cli::Command::Serve(serve) => serve.common,
        _ => unreachable!("parsed as serve"),
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub data_dir: Arc<TempDir>,
    pub database_url: TestDatabase,
    client: reqwest::Client,
    /// Dropping it (with the app) stops the server.
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    tasks: Option<BackgroundTasks>,
}

impl TestApp {
    /// The users subgraph on a fresh database.
    pub async fn users(backend: Backend) -> Self {
        Self::users_with(backend, &[]).await
    }

    pub async fn users_with(backend: Backend, extra: &[&str]) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let database_url = fresh_database(backend, data_dir.path()).await;
        Self::start(SubgraphName::Users, data_dir, database_url, extra).await
    }

    /// The users subgraph over an existing data dir and database.
    pub async fn start_users(
        data_dir: Arc<TempDir>,
        database_url: TestDatabase,
        extra: &[&str],
    ) -> Self {
        Self::start(SubgraphName::Users, data_dir, database_url, extra).await
    }

    /// A subgraph, as `gantry subgraph NAME` builds it, over a data dir and database.
    pub async fn start(
        name: SubgraphName,
        data_dir: Arc<TempDir>,
        database_url: TestDatabase,
        extra: &[&str],
    ) -> Self {
        let mut flags = vec!["--outbox-poll-ms", "50"];
        flags.extend_from_slice(extra);
        let common = settings(data_dir.path(), &database_url, &flags);
        let args = gantry::cli::SubgraphArgs {
            name,
            listen: None,
            common: common.clone(),
            redis: RedisArgs::default(),
            events: Default::default(),
        };
        let app = gantry::commands::subgraph::build(&common, &args)
            .await
            .expect("the subgraph starts");
        Self::serve(app.router, Some(app.tasks), data_dir, database_url).await
    }

    /// Serves `router` on port 0.
    pub async fn serve(
        router: axum::Router,
        tasks: Option<BackgroundTasks>,
        data_dir: Arc<TempDir>,
        database_url: TestDatabase,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(gantry_kit::server::serve(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            &gantry_kit::server::ServerLimits {
                shutdown_grace: std::time::Duration::from_secs(5),
                ..Default::default()
            },
            None,
        ));
        Self {
            address,
            data_dir,
            database_url,
            client: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// POSTs an operation and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        response.json().await.expect("a JSON response")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON response"))
    }

    /// Registers `username` (password `correct horse battery`) and returns the payload.
    pub async fn register(&self, username: &str) -> Value {
        let response = self
            .graphql(
                REGISTER,
                json!({ "input": {
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": "correct horse battery",
                    "displayName": username.to_uppercase(),
                }}),
                None,
            )
            .await;
        assert_eq!(
            response["errors"],
            Value::Null,
            "register {username}: {response}"
        );
        response["data"]["register"].clone()
    }

    pub async fn login(&self, login: &str, password: &str) -> Value {
        self.graphql(
            LOGIN,
            json!({ "input": { "login": login, "password": password } }),
            None,
        )
        .await
    }

    /// Stops the server and its background tasks, waits for them, and hands back its data
    /// dir and database.
    pub async fn stop(mut self) -> (Arc<TempDir>, TestDatabase) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(tasks) = self.tasks.take() {
            tasks.stop().await;
        }
        (self.data_dir, self.database_url)
    }
}

pub const REGISTER: &str = "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken expiresIn user { id username displayName email } } }";
pub const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { accessToken refreshToken expiresIn user { id username displayName email } } }";
pub const REFRESH: &str = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken expiresIn user { id username } } }";

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// Runs each listed test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// The users and posts subgraphs side by side, as separate servers over one database and
/// one data dir (so they share the signing key), as in the three-process shape.
pub struct Stack {
    pub users: TestApp,
    pub posts: TestApp,
}

impl Stack {
    pub async fn new(backend: Backend) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let database_url = fresh_database(backend, data_dir.path()).await;
        let users = TestApp::start(
            SubgraphName::Users,
            data_dir.clone(),
            database_url.clone(),
            &[],
        )
        .await;
        let posts = TestApp::start(SubgraphName::Posts, data_dir, database_url, &[]).await;
        Self { users, posts }
    }

    /// Registers `username` and returns `(user id, access token)`.
    pub async fn user(&self, username: &str) -> (String, String) {
        let payload = self.users.register(username).await;
        (
            payload["user"]["id"].as_str().expect("id").to_owned(),
            payload["accessToken"].as_str().expect("token").to_owned(),
        )
    }

    /// Creates a post as `token` and returns its id.
    pub async fn post(&self, token: &str, body: &str) -> String {
        let response = self
            .posts
            .graphql(
                "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
                json!({ "b": body }),
                Some(token),
            )
            .await;
        response["data"]["createPost"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createPost: {response}"))
            .to_owned()
    }
}

/// A `gantry` process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub address: String,
    /// Every log line so far.
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Waits (at most 20 s) for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        for _ in 0..200 {
            if self
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains(needle))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no log line containing {needle:?}: {:#?}",
            self.logs.lock().unwrap()
        );
    }

    /// Sends a Unix signal (`HUP`, `TERM`) to the process.
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
}

/// `gantry` with the environment every test starts it in: JSON logs at `info`, no
/// `DATABASE_URL` from the caller's environment, and `env` on top.
pub fn gantry(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(args)
        .env("GANTRY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_READ_URL")
        .env_remove("REDIS_URL")
        .env_remove("GANTRY_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs `gantry ARGS` to its end (a one-shot command, or a server that must refuse to
/// start) and returns what it printed, within a minute.
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    run_command(gantry(args, env)).await
}

pub async fn run_command(mut command: Command) -> std::process::Output {
    let output = command.output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("gantry ended within a minute")
        .expect("gantry runs")
}

/// Starts `gantry ARGS` with `--listen 127.0.0.1:0` and waits for the address it logs.
pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
    start_listening(args, env, "127.0.0.1:0").await
}

/// [`start`], with the process's open-file limit lowered to `files` when given.
pub async fn start_with_file_limit(
    files: Option<u64>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let Some(files) = files else {
        return start(args, env).await;
    };
    let plain = gantry(args, env);
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_gantry"))
        .args(plain.as_std().get_args())
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in plain.as_std().get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    start_command(shell).await
}

/// A port nothing listens on now, for a process that must be told its address before
/// it starts (or a server that is not there).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `gantry ARGS --listen LISTEN` and waits (at most two minutes) for the address it
/// logs.
pub async fn start_listening(args: &[&str], env: &[(&str, &str)], listen: &str) -> Process {
    let mut command = gantry(args, env);
    command.args(["--listen", listen]);
    start_command(command).await
}

/// Spawns a `gantry` server command and waits (at most two minutes) for the address it
/// logs.
pub async fn start_command(mut command: Command) -> Process {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("gantry starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let address = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            logs.lock().unwrap().push(line.clone());
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && let Some(address) = log["fields"]["address"].as_str()
            {
                return address.to_owned();
            }
        }
        panic!(
            "gantry {command:?} exited before listening: {:#?}",
            logs.lock().unwrap()
        );
    })
    .await
    .unwrap_or_else(|_| panic!("gantry {command:?} did not start listening"));
    // Keep draining the log so the process never blocks on a full pipe.
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Process {
        child,
        address,
        logs,
    }
}

/// `gantry ARGS` as a user that may not write what the test's own user created, as an
/// operator's service account meets files another user owns. The tests may run as root,
/// which may write anything, so then it runs as `nobody` (uid 65534), from a copy of the
/// binary that `nobody` can reach. Keep the returned folder while it runs.
pub fn unprivileged(args: &[&str], env: &[(&str, &str)]) -> (Command, Option<TempDir>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return (gantry(args, env), None);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("gantry");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), &binary).expect("copy gantry");
    let mut command = gantry(args, env);
    let mut unprivileged = Command::new(&binary);
    unprivileged.args(command.as_std().get_args());
    for (key, value) in command.as_std().get_envs() {
        match value {
            Some(value) => unprivileged.env(key, value),
            None => unprivileged.env_remove(key),
        };
    }
    command = unprivileged;
    command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .uid(65534)
        .gid(65534);
    (command, Some(dir))
}

/// Makes `path` (a folder or file) readable and, for a folder, enterable by everyone, and
/// writable by no one but root.
pub fn read_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o555 } else { 0o444 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes a folder everyone may enter and write.
pub fn open_to_all(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// Makes a folder everyone may enter and its owner may write (a tempdir is `0700`).
pub fn open_folder(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A throwaway `redis-server` on `port`, without persistence, stopped when dropped.
pub async fn redis_server(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)");
    let answers = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answers)
        .await
        .unwrap_or_else(|_| panic!("redis-server did not start on port {port}"));
    child
}

/// Polls `check` every 100 ms until it gives a value, for at most `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(within, poll)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {within:?}"))
}
