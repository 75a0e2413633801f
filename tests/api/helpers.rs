//! `TestApp`: a real app on port 0 with its own data dir and database, and request helpers
//! so each test reads Arrange / Act / Assert.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry::cli::{Cli, CommonArgs, SubgraphName};
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

/// A fresh, empty database for one test.
pub async fn fresh_database(backend: Backend, data_dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", data_dir.join("test.db").display()),
        Backend::Postgres => {
            let admin_url = std::env::var("GANTRY_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("gantry_test_{}", uuid::Uuid::now_v7().simple());
            let admin = Database::connect(&admin_url)
                .await
                .expect("PostgreSQL is reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            format!("{base}/{name}")
        }
    }
}

/// Settings for a test app: defaults plus `extra` flags.
pub fn settings(data_dir: &std::path::Path, database_url: &str, extra: &[&str]) -> CommonArgs {
    let mut args = vec![
        "gantry".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--database-url".to_owned(),
        database_url.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::try_parse_from(args)
        .expect("valid test settings")
        .common
}

pub struct TestApp {
    pub address: SocketAddr,
    pub data_dir: Arc<TempDir>,
    pub database_url: String,
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
    pub async fn start_users(data_dir: Arc<TempDir>, database_url: String, extra: &[&str]) -> Self {
        Self::start(SubgraphName::Users, data_dir, database_url, extra).await
    }

    /// A subgraph, as `gantry subgraph NAME` builds it, over a data dir and database.
    pub async fn start(
        name: SubgraphName,
        data_dir: Arc<TempDir>,
        database_url: String,
        extra: &[&str],
    ) -> Self {
        let mut flags = vec!["--outbox-poll-ms", "50"];
        flags.extend_from_slice(extra);
        let common = settings(data_dir.path(), &database_url, &flags);
        let args = gantry::cli::SubgraphArgs {
            name,
            listen: None,
            redis_url: None,
            redis_prefix: "gantry:".into(),
            redis_timeout_ms: 50,
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
        database_url: String,
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
            std::time::Duration::from_secs(5),
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
    pub async fn stop(mut self) -> (Arc<TempDir>, String) {
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

/// Starts `gantry ARGS` with `--listen 127.0.0.1:0` and waits for the address it logs.
pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("GANTRY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("gantry starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            logs.lock().unwrap().push(line.clone());
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && let Some(address) = log["fields"]["address"].as_str()
            {
                return address.to_owned();
            }
        }
        panic!(
            "gantry {args:?} exited before listening: {:#?}",
            logs.lock().unwrap()
        );
    })
    .await
    .unwrap_or_else(|_| panic!("gantry {args:?} did not start listening"));
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
