//! Opening the database. SQLite in the data dir is the default (one file, WAL journal so
//! readers never wait for the writer); PostgreSQL is one `DATABASE_URL` away.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`. Default: `gantry.db` in the data dir.
    pub url: String,
    /// Pool size. Default: 10 for PostgreSQL, 5 for SQLite.
    pub max_connections: Option<u32>,
}

impl DatabaseSettings {
    /// `DATABASE_URL` when given, else the SQLite file in `data_dir`.
    pub fn from_url_or_data_dir(url: Option<String>, data_dir: &Path) -> Self {
        let url = url.unwrap_or_else(|| sqlite_url(&data_dir.join("gantry.db")));
        Self {
            url,
            max_connections: None,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The same database, opened for reading only: SQLite's `mode=ro` creates neither the
    /// file nor its folder (for commands that only look, like `gantry migrate status`).
    pub fn read_only(&self) -> Self {
        let url = match self.url.split_once('?') {
            Some((path, query)) if self.is_sqlite() => {
                let params: Vec<&str> = query
                    .split('&')
                    .filter(|p| !p.starts_with("mode=") && !p.is_empty())
                    .chain(["mode=ro"])
                    .collect();
                format!("{path}?{}", params.join("&"))
            }
            None if self.is_sqlite() => format!("{}?mode=ro", self.url),
            _ => self.url.clone(),
        };
        Self {
            url,
            max_connections: self.max_connections,
        }
    }

    fn is_read_only(&self) -> bool {
        self.is_sqlite() && self.url.contains("mode=ro")
    }

    /// The SQLite file, when this is one (not in memory).
    pub fn sqlite_file(&self) -> Option<&Path> {
        if self.is_sqlite() {
            sqlite_path(&self.url)
        } else {
            None
        }
    }
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Statements sent by every connection [`connect`] opened in this process.
static STATEMENTS_EXECUTED: AtomicU64 = AtomicU64::new(0);

/// SQL statements this process has sent, for `/metrics` (`gantry_sql_statements_total`):
/// their growth per request shows whether DataLoader batching holds under load.
pub fn statements_executed() -> u64 {
    STATEMENTS_EXECUTED.load(Ordering::Relaxed)
}

/// Why the database could not be opened, worded so an operator can act on it: the
/// driver's own errors repeat themselves, keep PostgreSQL's source line numbers, and turn a
/// refused connection into "pool timed out".
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the database at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the database at {url} refused the connection: {message}")]
    Refused { url: String, message: String },
    #[error(
        "cannot open the SQLite file {path} (SQLite code 14): the folder {folder} must exist \
         and be writable by this process, for the file and its -wal and -shm journals"
    )]
    SqliteCannotOpen { path: String, folder: String },
    #[error(
        "the SQLite file {path} is read-only to this process (SQLite code 8): the file, its \
         -wal and -shm journals and the folder {folder} must be writable by it"
    )]
    SqliteReadOnly { path: String, folder: String },
    #[error("cannot create the database folder {folder}: {cause}")]
    Folder { folder: String, cause: String },
    #[error("connecting to the database at {url}: {message}")]
    Other { url: String, message: String },
}

/// How long opening the pool may take before the connection counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects with a bounded pool and, for SQLite, creates the file's folder and switches
/// the journal to WAL. Every statement sent counts in [`statements_executed`].
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, ConnectError> {
    if settings.is_sqlite()
        && !settings.is_read_only()
        && let Some(path) = sqlite_path(&settings.url)
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|err| ConnectError::Folder {
            folder: dir.display().to_string(),
            cause: err.to_string(),
        })?;
    }
    let mut options = pool_options(settings);
    options.min_connections(1);
    // Several processes opening one fresh SQLite file at once (replicas migrating together)
    // race to switch its journal to WAL; SQLite answers the loser "database is locked"
    // without waiting on its busy handler, so that answer is retried until the deadline.
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    let mut db = loop {
        match Database::connect(options.clone()).await {
            Ok(db) => break db,
            Err(err)
                if settings.is_sqlite()
                    && sqlx_error(&err).and_then(primary_code) == Some(SQLITE_BUSY)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(err) => return Err(connect_error(settings, &err).await),
        }
    };
    db.set_metric_callback(|_| {
        STATEMENTS_EXECUTED.fetch_add(1, Ordering::Relaxed);
    });
    Ok(db)
}

/// How long a read waits for a replica connection before failing: a replica that went
/// away holds reads up only this long before the lag check moves them to the primary.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a read replica's pool without waiting for it: a replica that is down at start
/// does not stop the start (reads go to the primary until it answers, see
/// [`crate::reads`]). Only a URL the driver cannot parse fails.
pub async fn connect_replica(
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, ConnectError> {
    let mut options = pool_options(settings);
    options
        .min_connections(0)
        .connect_lazy(true)
        .connect_timeout(REPLICA_ACQUIRE_TIMEOUT)
        .acquire_timeout(REPLICA_ACQUIRE_TIMEOUT);
    let mut db = Database::connect(options)
        .await
        .map_err(|err| ConnectError::Other {
            url: redact(&settings.url),
            message: describe(&err),
        })?;
    db.set_metric_callback(|_| {
        STATEMENTS_EXECUTED.fetch_add(1, Ordering::Relaxed);
    });
    Ok(db)
}

fn pool_options(settings: &DatabaseSettings) -> ConnectOptions {
    let mut options = ConnectOptions::new(settings.url.clone());
    let default_pool = if settings.is_sqlite() { 5 } else { 10 };
    options
        .max_connections(settings.max_connections.unwrap_or(default_pool))
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    options
}

/// Says why [`connect`] failed. The pool reports a server that refuses connections as
/// "pool timed out" (it retries them until its deadline), so that case opens one
/// connection by hand to learn the real cause.
async fn connect_error(settings: &DatabaseSettings, err: &DbErr) -> ConnectError {
    let url = redact(&settings.url);
    let Some(sqlx_error) = sqlx_error(err) else {
        return ConnectError::Other {
            url,
            message: describe(err),
        };
    };
    if let Some(path) = sqlite_path(&settings.url) {
        let folder = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (path, folder) = (path.display().to_string(), folder.display().to_string());
        match primary_code(sqlx_error) {
            Some(SQLITE_CANTOPEN) => return ConnectError::SqliteCannotOpen { path, folder },
            Some(SQLITE_READONLY) => return ConnectError::SqliteReadOnly { path, folder },
            _ => {}
        }
    }
    let sqlx_error = match sqlx_error {
        sea_orm::sqlx::Error::PoolTimedOut if !settings.is_sqlite() => {
            match probe_postgres(&settings.url).await {
                Some(probed) => probed,
                None => {
                    return ConnectError::Unreachable {
                        url,
                        cause: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                    };
                }
            }
        }
        _ => return classify(url, sqlx_error),
    };
    classify(url, &sqlx_error)
}

fn classify(url: String, err: &sea_orm::sqlx::Error) -> ConnectError {
    match err {
        sea_orm::sqlx::Error::Io(io) => ConnectError::Unreachable {
            url,
            cause: io_cause(io),
        },
        sea_orm::sqlx::Error::Database(db_error) => ConnectError::Refused {
            url,
            message: db_error.message().to_owned(),
        },
        sea_orm::sqlx::Error::Tls(cause) => ConnectError::Unreachable {
            url,
            cause: format!("TLS: {cause}"),
        },
        other => ConnectError::Other {
            url,
            message: sqlx_message(other),
        },
    }
}

fn io_cause(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running and listening on that host and port?)"
                .to_owned()
        }
        std::io::ErrorKind::TimedOut => "the connection timed out".to_owned(),
        _ => io.to_string(),
    }
}

/// One connection opened by hand, for its error: `None` when it succeeds or times out.
async fn probe_postgres(url: &str) -> Option<sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Connection;
    let attempt = sea_orm::sqlx::PgConnection::connect(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Err(err)) => Some(err),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            None
        }
        Err(_) => None,
    }
}

fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

fn sqlx_message(err: &sea_orm::sqlx::Error) -> String {
    match err {
        sea_orm::sqlx::Error::Database(db_error) => db_error.message().to_owned(),
        sea_orm::sqlx::Error::Io(io) => io_cause(io),
        other => other.to_string(),
    }
}

/// A database error in one line: the server's message without the driver's prefixes
/// repeated and without PostgreSQL's source line number.
pub fn describe(err: &DbErr) -> String {
    match sqlx_error(err) {
        Some(sqlx_error) => sqlx_message(sqlx_error),
        None => err.to_string(),
    }
}

/// Whether the database takes writes now. SQLite opens a file this process may not write
/// read-only, without an error, and then fails every write; so on SQLite this runs a write
/// that changes nothing (on the migrations table every database here has). A database
/// busy with another writer, or one that keeps this probe waiting for the write lock, is
/// being written, so it counts as writable. On PostgreSQL it is a ping.
pub async fn check_writable(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return db.ping().await;
    }
    let probe = sea_orm::Statement::from_string(
        sea_orm::DbBackend::Sqlite,
        "DELETE FROM seaql_migrations WHERE 0",
    );
    match tokio::time::timeout(WRITE_PROBE_WAIT, db.execute_raw(probe)).await {
        Err(_) | Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if sqlite_code(&err) == Some(SQLITE_BUSY) => Ok(()),
        Ok(Err(err)) => Err(err),
    }
}

/// How long [`check_writable`] waits for SQLite's write lock: less than a readiness
/// probe's usual timeout.
const WRITE_PROBE_WAIT: Duration = Duration::from_millis(500);

/// SQLite's primary result codes that [`connect`] and [`check_writable`] tell apart.
pub const SQLITE_BUSY: i32 = 5;
pub const SQLITE_READONLY: i32 = 8;
pub const SQLITE_CANTOPEN: i32 = 14;

/// The primary SQLite result code of `err` (extended codes carry it in their low byte).
pub fn sqlite_code(err: &DbErr) -> Option<i32> {
    primary_code(sqlx_error(err)?)
}

fn primary_code(err: &sea_orm::sqlx::Error) -> Option<i32> {
    match err {
        sea_orm::sqlx::Error::Database(db_error) => db_error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff),
        _ => None,
    }
}

fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Begins a transaction that writes. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes after another
/// connection has committed fails with `SQLITE_BUSY_SNAPSHOT` (517), which no busy timeout
/// waits out; an immediate one waits its turn (within the busy timeout) instead.
/// PostgreSQL ignores the mode.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

pub use crate::url::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[tokio::test]
    async fn every_statement_sent_is_counted_for_metrics() {
        use sea_orm::{ConnectionTrait, Statement};
        let db = connect(&DatabaseSettings {
            url: "sqlite::memory:".into(),
            max_connections: Some(1),
        })
        .await
        .unwrap();
        let before = statements_executed();
        let select = Statement::from_string(db.get_database_backend(), "SELECT 1");
        db.query_one_raw(select).await.unwrap();
        assert!(statements_executed() > before);
    }

    #[test]
    fn the_sqlite_path_is_read_from_the_url() {
        assert_eq!(
            sqlite_path("sqlite://data/gantry.db?mode=rwc"),
            Some(Path::new("data/gantry.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    /// Two writers on one SQLite file: one reads, another commits a write, then the first
    /// writes. Deferred, the first fails with `SQLITE_BUSY_SNAPSHOT`; `begin_write` makes the
    /// other wait for it, and both rows land.
    #[tokio::test]
    async fn a_write_transaction_that_reads_first_is_not_lost_to_another_writer() {
        use sea_orm::{ConnectionTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&DatabaseSettings {
            url: sqlite_url(&dir.path().join("w.db")),
            max_connections: Some(2),
        })
        .await
        .unwrap();
        let sql = |text: &str| Statement::from_string(db.get_database_backend(), text);
        db.execute_raw(sql("CREATE TABLE t (v INTEGER)"))
            .await
            .unwrap();

        let txn = begin_write(&db).await.unwrap();
        txn.query_one_raw(sql("SELECT COUNT(*) FROM t"))
            .await
            .unwrap();
        let other = {
            let (db, insert) = (db.clone(), sql("INSERT INTO t VALUES (2)"));
            tokio::spawn(async move { db.execute_raw(insert).await })
        };
        // Time for the other writer to commit, were it not made to wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        txn.execute_raw(sql("INSERT INTO t VALUES (1)"))
            .await
            .expect("the first writer's insert");
        txn.commit().await.expect("the first writer's commit");
        other.await.unwrap().expect("the other writer's insert");

        let rows = db
            .query_all_raw(sql("SELECT v FROM t ORDER BY v"))
            .await
            .unwrap();
        let values: Vec<i64> = rows
            .iter()
            .map(|row| row.try_get("", "v").unwrap())
            .collect();
        assert_eq!(values, [1, 2]);
    }
}
