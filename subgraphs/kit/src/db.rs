//! Opening the database. SQLite in the data dir is the default (one file, WAL journal so
//! readers never wait for the writer); PostgreSQL is one `DATABASE_URL` away.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
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
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Statements sent by every connection [`connect`] opened in this process.
static STATEMENTS_EXECUTED: AtomicU64 = AtomicU64::new(0);

/// SQL statements this process has sent, for `/metrics`: their growth per request shows
/// whether DataLoader batching holds under load.
pub fn statements_executed() -> u64 {
    STATEMENTS_EXECUTED.load(Ordering::Relaxed)
}

/// [`statements_executed`] as the Prometheus counter `gantry_sql_statements_total`.
pub fn render_statements_metric() -> String {
    format!(
        "# HELP gantry_sql_statements_total SQL statements sent to the database by this process.\n\
         # TYPE gantry_sql_statements_total counter\ngantry_sql_statements_total {}\n",
        statements_executed()
    )
}

/// Connects with a bounded pool and, for SQLite, creates the file's folder and switches
/// the journal to WAL. Every statement sent counts in [`statements_executed`].
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    if settings.is_sqlite()
        && let Some(path) = sqlite_path(&settings.url)
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    let mut options = ConnectOptions::new(settings.url.clone());
    let default_pool = if settings.is_sqlite() { 5 } else { 10 };
    options
        .max_connections(settings.max_connections.unwrap_or(default_pool))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    let mut db = Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(&settings.url)))?;
    db.set_metric_callback(|_| {
        STATEMENTS_EXECUTED.fetch_add(1, Ordering::Relaxed);
    });
    Ok(db)
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

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

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
        assert!(render_statements_metric().contains("\ngantry_sql_statements_total "));
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
