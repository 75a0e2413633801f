//! `gantry seed`: realistic data for demos and benchmarks — a skewed follow graph with a
//! few very popular accounts and a long tail, posts spread over the last 90 days, and
//! comments and likes that gather on popular authors' posts.
//!
//! A run is deterministic for its `--seed` and idempotent: usernames, emails, ids and
//! timestamps all come from the seed (timestamps relative to the first run's time, which
//! later runs read back from the seed's first user), and every insert is
//! `ON CONFLICT DO NOTHING`, so running the same command again inserts nothing and reports
//! zeros. Every seeded user gets the same password hash: Argon2id at OWASP's parameters
//! costs ~20 ms of CPU per hash, which would be minutes for 10,000 users, so the command
//! hashes the password once.
//!
//! # Layout
//! - [`plan`] — the generator: every row of a run, decided from the seed without a database.
//! - [`text`] — names, bios and bodies from built-in word lists.
//! - [`timeline`] — the anchor instant, offsets before it, and UUIDv7 ids that match them.
//! - [`store`] — batched, transactional, conflict-skipping inserts, counting what landed.

pub mod plan;
pub mod store;
pub mod text;
pub mod timeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_entities::user;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    TransactionTrait,
};

pub use plan::{Plan, SeedOptions};
use store::{Phase, WriteContext};
use timeline::Anchor;

/// The users subgraph's longest username.
const MAX_USERNAME_CHARS: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "seeded usernames would be longer than 30 characters ({0}); use a smaller --seed or fewer --users"
    )]
    UsernameTooLong(String),
    #[error("writing seed data")]
    Database(#[from] sea_orm::DbErr),
    #[error("building an insert statement")]
    Statement(#[from] sea_orm::sea_query::error::Error),
    #[error("a seeding task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Rows really inserted per table: rows that were already there are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    pub users: u64,
    pub follows: u64,
    pub posts: u64,
    pub comments: u64,
    pub likes: u64,
}

impl Inserted {
    fn total(&self) -> u64 {
        self.users + self.follows + self.posts + self.comments + self.likes
    }

    fn record(&mut self, phase: Phase, rows: u64) {
        match phase {
            Phase::Users => self.users = rows,
            Phase::Follows => self.follows = rows,
            Phase::Posts => self.posts = rows,
            Phase::Comments => self.comments = rows,
            Phase::Likes => self.likes = rows,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub inserted: Inserted,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Inserted {
            users,
            follows,
            posts,
            comments,
            likes,
        } = self.inserted;
        write!(
            f,
            "created {users} users, {posts} posts, {comments} comments, {likes} likes, \
             {follows} follows in {:.1} s",
            self.elapsed.as_secs_f64()
        )
    }
}

/// Progress bars on stderr, one per table, or none (`--quiet`, tests).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    pub fn stderr() -> Self {
        Self { visible: true }
    }

    pub fn hidden() -> Self {
        Self { visible: false }
    }

    fn bar(self, phase: Phase, len: usize) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:32}] {human_pos:>9}/{human_len:<9} {rows_per_sec:>12} {elapsed:>4}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rows_per_sec",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0} rows/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(phase.name())
    }
}

/// Plans the run for `options` and writes it. `password_hash` is the PHC string every
/// seeded user gets.
#[tracing::instrument(skip(db, password_hash, progress))]
pub async fn seed(
    db: &DatabaseConnection,
    options: SeedOptions,
    password_hash: String,
    progress: Progress,
) -> Result<Summary, SeedError> {
    let started = Instant::now();
    let longest = options.longest_username();
    if longest.chars().count() > MAX_USERNAME_CHARS {
        return Err(SeedError::UsernameTooLong(longest));
    }
    let plan = Arc::new(tokio::task::spawn_blocking(move || Plan::generate(&options)).await?);
    let anchor = find_anchor(db, &options, &plan).await?;
    let context = Arc::new(WriteContext {
        seed: options.seed,
        anchor,
        password_hash,
    });

    let mut inserted = Inserted::default();
    for phase in Phase::ALL {
        let bar = progress.bar(phase, phase.planned(&plan));
        let rows =
            store::write_phase(db, plan.clone(), context.clone(), phase, bar.clone()).await?;
        bar.finish();
        inserted.record(phase, rows);
    }
    make_known_to_posts(db).await?;
    if inserted.total() > 0 {
        fill_timelines(db).await?;
        refresh_statistics(db).await?;
    }
    Ok(Summary {
        inserted,
        elapsed: started.elapsed(),
    })
}

/// Seeded accounts skip the users subgraph, so no account-created event tells the posts
/// subgraph of them: they go into its `known_accounts` here (one statement; accounts it
/// already knows, and tombstones, stay as they are), or nobody could follow them.
async fn make_known_to_posts(db: &DatabaseConnection) -> Result<(), SeedError> {
    db.execute_unprepared(
        "INSERT INTO known_accounts (user_id) SELECT id FROM users WHERE true \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .await?;
    Ok(())
}

/// Seeded follows and posts skip the posts service, so nothing fanned them out: the home
/// feed's timelines are rebuilt from them (in one transaction, with the feed's default
/// settings; the author marks it stores keep the feed right under any other).
async fn fill_timelines(db: &DatabaseConnection) -> Result<(), SeedError> {
    tracing::info!("filling the home feed's timelines");
    let settings = gantry_posts::FeedSettings::default();
    let txn = db.begin().await?;
    gantry_migrations::rebuild_timelines(
        &txn,
        settings.fanout_max_followers,
        settings.timeline_cap,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Brings the planner's statistics up to date after a bulk load. Without them a fresh
/// PostgreSQL database plans `likes.post_id IN (…)` as a scan of every like (measured:
/// 139 ms per feed's like counts on 500,000 likes, 1.8 ms after `ANALYZE`) until
/// autovacuum comes around; `VACUUM` also marks the new pages all-visible, so counts are
/// answered from the index alone (the 20 most-liked posts' 12,223 likes: 10.8 ms → 3.8 ms).
/// SQLite's planner reads its statistics from `sqlite_stat1`, which `ANALYZE` fills.
async fn refresh_statistics(db: &DatabaseConnection) -> Result<(), SeedError> {
    tracing::info!("refreshing the query planner's statistics");
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => "VACUUM ANALYZE",
        _ => "ANALYZE",
    };
    db.execute_unprepared(statement).await?;
    Ok(())
}

/// The first run for a seed anchors its timeline at the current time; a later run finds
/// the seed's first user and puts the anchor back where that run had it, so it plans the
/// very same timestamps and ids (and inserts nothing new).
async fn find_anchor(
    db: &DatabaseConnection,
    options: &SeedOptions,
    plan: &Plan,
) -> Result<Anchor, SeedError> {
    let Some(first) = plan.users.first() else {
        return Ok(Anchor::now());
    };
    let existing = user::Entity::find()
        .filter(user::Column::Username.eq(plan::username(options.seed, 0)))
        .one(db)
        .await?;
    match existing {
        Some(row) if row.email == plan::email(options.seed, 0) => {
            let anchor = Anchor::recover(row.created_at, first.created);
            if anchor.id(first.created, &first.id) != row.id {
                tracing::warn!(
                    "the seed's first user was written by a different generator; \
                     this run may add rows next to the earlier ones"
                );
            }
            Ok(anchor)
        }
        _ => Ok(Anchor::now()),
    }
}

#[cfg(test)]
mod tests {
    use gantry_entities::{comment, follow, like, post};
    use gantry_kit::db::DatabaseSettings;
    use gantry_migrations::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, PaginatorTrait, Set};

    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5Vb5mGMCH7hcY2LwDJXD9Cm0BBfm2sn9KnMBYEJZ5p4";

    async fn fresh_sqlite(dir: &tempfile::TempDir) -> DatabaseConnection {
        let settings = DatabaseSettings::from_url_or_data_dir(None, dir.path());
        let db = gantry_kit::db::connect(&settings).await.expect("connected");
        Migrator::up(&db, None).await.expect("migrated");
        db
    }

    async fn counts(db: &DatabaseConnection) -> Inserted {
        Inserted {
            users: user::Entity::find().count(db).await.expect("counted"),
            follows: follow::Entity::find().count(db).await.expect("counted"),
            posts: post::Entity::find().count(db).await.expect("counted"),
            comments: comment::Entity::find().count(db).await.expect("counted"),
            likes: like::Entity::find().count(db).await.expect("counted"),
        }
    }

    #[tokio::test]
    async fn seeding_the_same_seed_twice_inserts_nothing_the_second_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fresh_sqlite(&dir).await;
        let options = SeedOptions {
            users: 80,
            posts_per_user: 3,
            seed: 7,
        };

        let first = seed(&db, options, HASH.to_owned(), Progress::hidden())
            .await
            .expect("seeded");
        let plan = Plan::generate(&options);
        let planned = Inserted {
            users: plan.users.len() as u64,
            follows: plan.follows.len() as u64,
            posts: plan.posts.len() as u64,
            comments: plan.comments.len() as u64,
            likes: plan.likes.len() as u64,
        };
        assert_eq!(first.inserted, planned);
        assert_eq!(counts(&db).await, first.inserted);

        let second = seed(&db, options, HASH.to_owned(), Progress::hidden())
            .await
            .expect("seeded again");
        assert_eq!(second.inserted, Inserted::default());
        assert_eq!(counts(&db).await, first.inserted);
        assert!(
            second
                .to_string()
                .starts_with("created 0 users, 0 posts, 0 comments, 0 likes, 0 follows in ")
        );
    }

    #[tokio::test]
    async fn seeded_ids_carry_their_rows_creation_time_and_users_share_the_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fresh_sqlite(&dir).await;
        let options = SeedOptions {
            users: 20,
            posts_per_user: 2,
            seed: 3,
        };
        seed(&db, options, HASH.to_owned(), Progress::hidden())
            .await
            .expect("seeded");

        let login = user::Entity::find()
            .filter(user::Column::Username.eq("s3_u0"))
            .one(&db)
            .await
            .expect("queried")
            .expect("the login hint's user exists");
        assert_eq!(login.email, "s3_u0@seed.gantry.test");
        assert_eq!(login.password_hash, HASH);
        for post in post::Entity::find().all(&db).await.expect("listed") {
            let (secs, nanos) = post.id.get_timestamp().expect("v7").to_unix();
            let id_millis = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
            assert_eq!(id_millis, post.created_at.timestamp_millis());
            assert_eq!(post.created_at.timestamp_subsec_nanos() % 1_000_000, 0);
        }
    }

    #[tokio::test]
    async fn a_seeded_username_taken_by_a_real_account_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fresh_sqlite(&dir).await;
        let now = chrono::Utc::now();
        user::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            username: Set("s5_u2".to_owned()),
            email: Set("someone@example.com".to_owned()),
            display_name: Set("Someone".to_owned()),
            bio: Set(String::new()),
            password_hash: Set(HASH.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&db)
        .await
        .expect("inserted");

        let options = SeedOptions {
            users: 10,
            posts_per_user: 1,
            seed: 5,
        };
        let summary = seed(&db, options, HASH.to_owned(), Progress::hidden())
            .await
            .expect("seeded");
        assert_eq!(summary.inserted.users, 9);
    }
}
