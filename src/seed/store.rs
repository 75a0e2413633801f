//! Writing a [`Plan`]: multi-row `INSERT … ON CONFLICT DO NOTHING` statements, a
//! transaction per chunk, and the count of rows each statement really inserted.
//!
//! Building the SQL and binding the values costs about as much CPU as the database spends
//! inserting, so statements are built on a blocking thread while earlier chunks execute
//! (and, on PostgreSQL, two connections execute at once).

use std::ops::Range;
use std::sync::Arc;

use gantry_entities::{comment, follow, like, post, user};
use indicatif::ProgressBar;
use sea_orm::sea_query::{Expr, IntoIden, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::SeedError;
use super::plan::{self, Plan};
use super::timeline::Anchor;

/// Bound parameters per statement: under SQLite's 32,766 (and PostgreSQL's 65,535).
const MAX_PARAMS: usize = 30_000;
/// Rows per statement at most, whatever the column count.
const MAX_STATEMENT_ROWS: usize = 2_000;
/// Rows per transaction: big enough to amortise the commit, small enough that a failure
/// loses little and the progress bar moves.
const TRANSACTION_ROWS: usize = 10_000;
/// Chunks built ahead of the writers.
const QUEUE_DEPTH: usize = 4;

/// One table's share of a seed run, in the order they are written (likes and comments
/// need their posts to exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Users,
    Follows,
    Posts,
    Comments,
    Likes,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Users,
        Phase::Follows,
        Phase::Posts,
        Phase::Comments,
        Phase::Likes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Users => "users",
            Phase::Follows => "follows",
            Phase::Posts => "posts",
            Phase::Comments => "comments",
            Phase::Likes => "likes",
        }
    }

    pub fn planned(self, plan: &Plan) -> usize {
        match self {
            Phase::Users => plan.users.len(),
            Phase::Follows => plan.follows.len(),
            Phase::Posts => plan.posts.len(),
            Phase::Comments => plan.comments.len(),
            Phase::Likes => plan.likes.len(),
        }
    }

    fn columns(self) -> usize {
        match self {
            Phase::Users => 8,
            Phase::Comments => 5,
            Phase::Follows | Phase::Posts => 4,
            Phase::Likes => 3,
        }
    }

    fn statement_rows(self) -> usize {
        (MAX_PARAMS / self.columns()).min(MAX_STATEMENT_ROWS)
    }
}

/// What the rows are written with, besides the plan.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub seed: u64,
    pub anchor: Anchor,
    /// The one PHC string every seeded user signs in with.
    pub password_hash: String,
}

/// Writes one phase's rows and returns how many were inserted (not counting rows that
/// were already there).
pub async fn write_phase(
    db: &DatabaseConnection,
    plan: Arc<Plan>,
    context: Arc<WriteContext>,
    phase: Phase,
    bar: ProgressBar,
) -> Result<u64, SeedError> {
    let backend = db.get_database_backend();
    let writers = match backend {
        DbBackend::Postgres => 2,
        _ => 1,
    };
    let (sender, receiver) = mpsc::channel::<Chunk>(QUEUE_DEPTH);

    let builder = tokio::task::spawn_blocking(move || -> Result<(), SeedError> {
        let total = phase.planned(&plan);
        let mut start = 0;
        while start < total {
            let end = (start + TRANSACTION_ROWS).min(total);
            let mut statements = Vec::new();
            let mut first = start;
            while first < end {
                let last = (first + phase.statement_rows()).min(end);
                let insert = insert_statement(phase, &plan, &context, first..last)?;
                statements.push(backend.build(&insert));
                first = last;
            }
            let chunk = Chunk {
                statements,
                rows: (end - start) as u64,
            };
            if sender.blocking_send(chunk).is_err() {
                // A writer failed and dropped the queue; its error is the one to report.
                return Ok(());
            }
            start = end;
        }
        Ok(())
    });

    let receiver = Arc::new(Mutex::new(receiver));
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        let (db, receiver, bar) = (db.clone(), receiver.clone(), bar.clone());
        tasks.spawn(async move {
            let mut inserted = 0;
            loop {
                let next = receiver.lock().await.recv().await;
                let Some(chunk) = next else {
                    return Ok::<u64, SeedError>(inserted);
                };
                inserted += write_chunk(&db, chunk.statements).await?;
                bar.inc(chunk.rows);
            }
        });
    }

    let mut inserted = 0;
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(SeedError::from).and_then(|written| written) {
            Ok(rows) => inserted += rows,
            Err(err) => {
                // Stop the builder and the other writers; keep the first error.
                receiver.lock().await.close();
                failure.get_or_insert(err);
            }
        }
    }
    builder.await??;
    match failure {
        Some(err) => Err(err),
        None => Ok(inserted),
    }
}

struct Chunk {
    statements: Vec<Statement>,
    rows: u64,
}

async fn write_chunk(
    db: &DatabaseConnection,
    statements: Vec<Statement>,
) -> Result<u64, SeedError> {
    let transaction = db.begin().await?;
    let mut inserted = 0;
    for statement in statements {
        inserted += transaction.execute_raw(statement).await?.rows_affected();
    }
    transaction.commit().await?;
    Ok(inserted)
}

/// `INSERT INTO table (…) VALUES (…), (…) ON CONFLICT DO NOTHING` for `rows` of the
/// phase. No conflict target: a rerun collides on ids, and a seeded username or email that
/// somebody already took is skipped too, instead of failing the run.
fn insert_statement(
    phase: Phase,
    plan: &Plan,
    context: &WriteContext,
    rows: Range<usize>,
) -> Result<sea_orm::sea_query::InsertStatement, SeedError> {
    let mut insert = Query::insert();
    insert.on_conflict(OnConflict::new().do_nothing().to_owned());
    let anchor = context.anchor;
    let user_id = |index: u32| {
        let user = &plan.users[index as usize];
        anchor.id(user.created, &user.id)
    };
    let post_id = |index: u32| {
        let post = &plan.posts[index as usize];
        anchor.id(post.at, &post.id)
    };
    match phase {
        Phase::Users => {
            insert.into_table(user::Entity.into_iden()).columns([
                user::Column::Id,
                user::Column::Username,
                user::Column::Email,
                user::Column::DisplayName,
                user::Column::Bio,
                user::Column::PasswordHash,
                user::Column::CreatedAt,
                user::Column::UpdatedAt,
            ]);
            for index in rows {
                let row = &plan.users[index];
                let created_at = anchor.at(row.created);
                insert.values([
                    Expr::val(anchor.id(row.created, &row.id)),
                    Expr::val(plan::username(context.seed, index)),
                    Expr::val(plan::email(context.seed, index)),
                    Expr::val(row.display_name.as_str()),
                    Expr::val(row.bio.as_str()),
                    Expr::val(context.password_hash.as_str()),
                    Expr::val(created_at),
                    Expr::val(created_at),
                ])?;
            }
        }
        Phase::Follows => {
            insert.into_table(follow::Entity.into_iden()).columns([
                follow::Column::Id,
                follow::Column::FollowerId,
                follow::Column::FolloweeId,
                follow::Column::CreatedAt,
            ]);
            for row in &plan.follows[rows] {
                insert.values([
                    Expr::val(anchor.id(row.at, &row.id)),
                    Expr::val(user_id(row.follower)),
                    Expr::val(user_id(row.followee)),
                    Expr::val(anchor.at(row.at)),
                ])?;
            }
        }
        Phase::Posts => {
            insert.into_table(post::Entity.into_iden()).columns([
                post::Column::Id,
                post::Column::AuthorId,
                post::Column::Body,
                post::Column::CreatedAt,
            ]);
            for row in &plan.posts[rows] {
                insert.values([
                    Expr::val(anchor.id(row.at, &row.id)),
                    Expr::val(user_id(row.author)),
                    Expr::val(row.body.as_str()),
                    Expr::val(anchor.at(row.at)),
                ])?;
            }
        }
        Phase::Comments => {
            insert.into_table(comment::Entity.into_iden()).columns([
                comment::Column::Id,
                comment::Column::PostId,
                comment::Column::AuthorId,
                comment::Column::Body,
                comment::Column::CreatedAt,
            ]);
            for row in &plan.comments[rows] {
                insert.values([
                    Expr::val(anchor.id(row.at, &row.id)),
                    Expr::val(post_id(row.post)),
                    Expr::val(user_id(row.author)),
                    Expr::val(row.body.as_str()),
                    Expr::val(anchor.at(row.at)),
                ])?;
            }
        }
        Phase::Likes => {
            insert.into_table(like::Entity.into_iden()).columns([
                like::Column::PostId,
                like::Column::UserId,
                like::Column::CreatedAt,
            ]);
            for row in &plan.likes[rows] {
                insert.values([
                    Expr::val(post_id(row.post)),
                    Expr::val(user_id(row.user)),
                    Expr::val(anchor.at(row.at)),
                ])?;
            }
        }
    }
    Ok(insert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::plan::SeedOptions;

    #[test]
    fn a_statement_skips_any_conflicting_row() {
        let plan = Plan::generate(&SeedOptions {
            users: 3,
            posts_per_user: 1,
            seed: 1,
        });
        let context = WriteContext {
            seed: 1,
            anchor: Anchor::from_millis(1_780_000_000_000),
            password_hash: "$argon2id$stub".to_owned(),
        };
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let insert = insert_statement(Phase::Users, &plan, &context, 0..3).expect("built");
            let sql = backend
                .build(&insert)
                .sql
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(sql.starts_with(r#"INSERT INTO "users" ("id", "username", "email","#));
            assert!(sql.ends_with(") ON CONFLICT DO NOTHING"), "{sql}");
        }
    }

    #[test]
    fn every_statement_stays_under_the_bind_parameter_limits() {
        for phase in Phase::ALL {
            assert!(phase.statement_rows() * phase.columns() <= 32_766);
        }
    }
}
