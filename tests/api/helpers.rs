//! `TestApp`: a real app on port 0 with its own data dir and database, and request helpers
//! so each test reads Arrange / Act / Assert.

use std::net::SocketAddr;

use clap::Parser;
use gantry::cli::{Cli, CommonArgs, SubgraphName};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tempfile::TempDir;
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
    pub data_dir: TempDir,
    pub database_url: String,
    client: reqwest::Client,
    /// Dropping it (with the app) stops the server.
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// The users subgraph on a fresh database.
    pub async fn users(backend: Backend) -> Self {
        Self::users_with(backend, &[]).await
    }

    pub async fn users_with(backend: Backend, extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, data_dir.path()).await;
        Self::start_users(data_dir, database_url, extra).await
    }

    /// The users subgraph over an existing data dir and database.
    pub async fn start_users(data_dir: TempDir, database_url: String, extra: &[&str]) -> Self {
        let common = settings(data_dir.path(), &database_url, extra);
        let app = gantry::commands::subgraph::build(&common, SubgraphName::Users)
            .await
            .expect("the users subgraph starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(gantry_kit::server::serve(
            listener,
            app,
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

    /// Stops the server, waits for it, and hands back its data dir and database.
    pub async fn stop(mut self) -> (TempDir, String) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
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
