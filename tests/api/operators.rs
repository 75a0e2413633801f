//! What an operator meets starting and running the `gantry` binary: migrations that any
//! number of processes may run at once, errors that say what to fix (once, plainly),
//! `gantry migrate status` that creates nothing, and `/ready` that reports a SQLite file it
//! cannot write without logging an ERROR at every probe.

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::Value;

use crate::helpers::{
    Backend, free_port, fresh_database, open_folder, open_to_all, read_only, run, run_command,
    start_command, unprivileged,
};

/// How many migrations a fresh database gets.
fn migration_count() -> usize {
    use gantry_migrations::MigratorTrait;
    gantry_migrations::Migrator::migrations().len()
}

/// Every line of `gantry`'s stderr that mentions `needle`.
fn lines_with<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|line| line.contains(needle))
        .collect()
}

crate::on_both_backends!(
    any_number_of_processes_may_migrate_one_fresh_database_at_once,
    migrate_status_on_a_database_never_migrated_creates_nothing,
);

async fn any_number_of_processes_may_migrate_one_fresh_database_at_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(backend, dir.path()).await;
    let env = [("DATABASE_URL", url.as_str())];
    let runs = (0..4).map(|_| run(&["migrate", "up"], &env));

    let outputs = futures::future::join_all(runs).await;

    let mut applied = 0;
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        applied += stdout
            .trim()
            .strip_prefix("applied ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
    }
    assert_eq!(
        applied,
        migration_count(),
        "each migration is applied exactly once"
    );
    let status = run(&["migrate", "status"], &env).await;
    let status = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.lines().filter(|l| l.starts_with("Applied")).count(),
        migration_count(),
        "{status}"
    );
}

/// A fatal error is one plain line (stderr here is a pipe, not a terminal), names what
/// failed once, and says "connection refused" rather than the pool's "pool timed out".
#[tokio::test]
async fn a_database_that_refuses_connections_is_one_plain_error_that_says_so() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let output = run(
        &["serve"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("GANTRY_LOG_FORMAT", "text"),
        ],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\u{1b}'), "no colour codes: {stderr:?}");
    let errors = lines_with(&stderr, "error");
    assert_eq!(errors.len(), 1, "printed once: {stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    assert_eq!(
        errors[0].matches("connection refused").count(),
        1,
        "{stderr}"
    );
    assert!(errors[0].contains(&url), "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

/// The server's own words, once, without the driver's prefixes or PostgreSQL's source line.
#[tokio::test]
async fn a_missing_postgres_database_is_named_once_without_driver_noise() {
    let admin = crate::helpers::admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/gantry_missing_{}", uuid::Uuid::now_v7().simple());
    let output = run(
        &["migrate", "up"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("GANTRY_LOG_FORMAT", "text"),
        ],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
    assert!(!stderr.contains(" at line "), "{stderr}");
    assert!(!stderr.contains("error returned from database"), "{stderr}");
}

/// A data dir this process may not write: SQLite says only "unable to open database file"
/// (code 14); the error names the folder to fix.
#[tokio::test]
async fn a_sqlite_folder_that_cannot_be_written_is_named() {
    let dir = tempfile::tempdir().unwrap();
    open_folder(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    read_only(&data);
    let data_dir = data.display().to_string();

    let (command, _binary) = unprivileged(
        &["migrate", "up"],
        &[
            ("GANTRY_DATA_DIR", data_dir.as_str()),
            ("GANTRY_LOG_FORMAT", "text"),
        ],
    );
    let output = run_command(command).await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("code 14"), "{stderr}");
    assert!(
        stderr.contains(&format!("the folder {data_dir} must exist and be writable")),
        "{stderr}"
    );
    open_folder(&data);
}

async fn migrate_status_on_a_database_never_migrated_creates_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet");
    let data_dir = data.display().to_string();
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_database(backend, dir.path()).await),
    };
    let mut env = vec![("GANTRY_DATA_DIR", data_dir.as_str())];
    if let Some(url) = &database {
        env.push(("DATABASE_URL", url.as_str()));
    }

    let output = run(&["migrate", "status"], &env).await;

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("Pending")).count(),
        migration_count(),
        "{stdout}"
    );
    assert!(!data.exists(), "no data dir, no SQLite file");
    if let Some(url) = &database {
        let db = Database::connect(url.as_str()).await.unwrap();
        let table = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT to_regclass('seaql_migrations')::text AS t",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(table.try_get::<Option<String>>("", "t").unwrap(), None);
        db.close().await.ok();
    }
}

/// A SQLite file this process may not write (another user's, or `chmod 444`) opens
/// read-only without an error, and every write then fails: `/ready` says `503` with the database `read-only`, and probing it again and again
/// logs the change once as a warning, never an ERROR per probe.
#[tokio::test]
async fn ready_is_503_while_the_sqlite_file_cannot_be_written_and_logs_it_once() {
    let dir = tempfile::tempdir().unwrap();
    open_folder(dir.path());
    let data = dir.path().join("data");
    let data_dir = data.display().to_string();
    let migrated = run(
        &["migrate", "up"],
        &[("GANTRY_DATA_DIR", data_dir.as_str())],
    )
    .await;
    assert!(migrated.status.success(), "{migrated:?}");
    // The folder stays writable (SQLite keeps its journals there); the file is not.
    open_to_all(&data);
    read_only(&data.join("gantry.db"));
    let key_dir = tempfile::tempdir().unwrap();
    let pem = {
        gantry_kit::keys::SigningKey::load(&gantry_kit::keys::KeySettings {
            data_dir: key_dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        std::fs::read_to_string(key_dir.path().join(gantry_kit::keys::GENERATED_KEY_FILE)).unwrap()
    };

    let (mut command, _binary) = unprivileged(
        &["serve"],
        &[
            ("GANTRY_DATA_DIR", data_dir.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY", pem.as_str()),
        ],
    );
    command.args(["--listen", "127.0.0.1:0"]);
    let server = start_command(command).await;
    let ready_url = format!("http://{}/ready", server.address);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let response = reqwest::get(&ready_url).await.unwrap();
        answers.push((
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        ));
    }

    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["checks"]["database"]["status"], "read-only", "{body}");
    }
    let logs = server.logs.lock().unwrap().clone();
    let level = |line: &String| {
        serde_json::from_str::<Value>(line).map_or(Value::Null, |l| l["level"].clone())
    };
    assert!(
        !logs.iter().any(|line| level(line) == "ERROR"),
        "no ERROR for a 503 from /ready: {logs:#?}"
    );
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|line| level(line) == "WARN" && line.contains("not ready"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs:#?}");
}

/// A gateway waits for subgraphs that do not answer yet, says so in the log, and after
/// `GANTRY_STARTUP_WAIT_SECS` stops with an error naming the one that never answered.
#[tokio::test]
async fn a_gateway_waits_a_bounded_time_for_its_subgraphs_and_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let users = format!("users=http://127.0.0.1:{}/graphql", free_port());

    let output = run(
        &["gateway", "--subgraph", &users],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_STARTUP_WAIT_SECS", "1"),
            ("GANTRY_LOG_FORMAT", "text"),
        ],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("waiting for the subgraphs: subgraph `users` does not answer"),
        "{stderr}"
    );
    let errors = lines_with(&stderr, "error: ");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("subgraph `users` does not answer")
            && errors[0].contains("connection refused")
            && errors[0].contains("after waiting 1 s"),
        "{stderr}"
    );
}
