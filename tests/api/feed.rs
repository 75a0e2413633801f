//! The fan-out-on-read feed (the reference the hybrid feed is tested against, in
//! `timelines`) and per-parent pages against a plain model of what they must return: on
//! PostgreSQL that feed is read one of two ways depending on how many accounts the viewer
//! follows, and per-parent pages with a `LATERAL` top-N; every way must give the same pages
//! as sorting the matching rows by hand. A seeded database comes with the statistics
//! those plans depend on.

use std::collections::HashSet;

use chrono::Utc;
use gantry::seed::{Progress, SeedOptions, seed};
use gantry_entities::{follow, post};
use gantry_kit::Viewer;
use gantry_kit::db::DatabaseSettings;
use gantry_migrations::{Migrator, MigratorTrait};
use gantry_posts::loaders::POSTS_BY;
use gantry_posts::pages::pages_per_parent;
use gantry_posts::service::{FEED_MERGE_MAX_FOLLOWEES, PostsService};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use uuid::Uuid;

use crate::helpers::{Backend, TestDatabase, fresh_database};

crate::on_both_backends!(
    a_feed_pages_through_every_followed_post_newest_first_however_many_are_followed,
    per_parent_pages_hold_each_parents_newest_rows_after_the_cursor,
    a_seeded_database_has_planner_statistics,
);

/// Any PHC string: seeded users are never signed in here.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5Vb5mGMCH7hcY2LwDJXD9Cm0BBfm2sn9KnMBYEJZ5p4";

struct Data {
    db: DatabaseConnection,
    _dir: Place,
    /// Every post, as `(id, author)`.
    posts: Vec<(Uuid, Uuid)>,
}

/// Where a test's database lives: the folder (for SQLite) and the database, dropped
/// together.
type Place = (tempfile::TempDir, TestDatabase);

/// A fresh, migrated database and the place it lives in.
async fn migrated(backend: Backend) -> (Place, DatabaseConnection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database(backend, dir.path()).await;
    let db = gantry_kit::db::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: None,
    })
    .await
    .expect("connect");
    Migrator::up(&db, None).await.expect("migrate");
    ((dir, url), db)
}

/// `authors` accounts, each with `per_author` posts written in turns, so every author's
/// posts are spread over the whole timeline; some have none at all.
async fn seeded(backend: Backend, authors: &[Uuid], per_author: usize) -> Data {
    let (dir, db) = migrated(backend).await;
    let mut posts = Vec::new();
    for round in 0..per_author {
        for (i, author) in authors.iter().enumerate() {
            // Every third author stops posting after the first round: rare posters are
            // the case where walking the whole timeline reads far back.
            if round > 0 && i % 3 == 0 {
                continue;
            }
            posts.push((Uuid::now_v7(), *author));
        }
    }
    post::Entity::insert_many(posts.iter().map(|(id, author)| post::ActiveModel {
        id: sea_orm::Set(*id),
        author_id: sea_orm::Set(*author),
        body: sea_orm::Set(format!("post {id}")),
        created_at: sea_orm::Set(Utc::now()),
        edited_at: sea_orm::Set(None),
    }))
    .exec(&db)
    .await
    .expect("insert posts");
    Data {
        db,
        _dir: dir,
        posts,
    }
}

async fn follow_all(db: &DatabaseConnection, follower: Uuid, followees: &[Uuid]) {
    if followees.is_empty() {
        return;
    }
    follow::Entity::insert_many(followees.iter().map(|followee| follow::ActiveModel {
        id: sea_orm::Set(Uuid::now_v7()),
        follower_id: sea_orm::Set(follower),
        followee_id: sea_orm::Set(*followee),
        created_at: sea_orm::Set(Utc::now()),
    }))
    .exec(db)
    .await
    .expect("insert follows");
}

async fn a_feed_pages_through_every_followed_post_newest_first_however_many_are_followed(
    backend: Backend,
) {
    let merge_max = FEED_MERGE_MAX_FOLLOWEES as usize;
    let authors: Vec<Uuid> = (0..merge_max + 19).map(|_| Uuid::now_v7()).collect();
    let data = seeded(backend, &authors, 4).await;
    let service = PostsService::new(data.db.clone());

    // Each viewer follows the first `n` authors; the viewer is author `n` (so their own
    // posts count too), except for the last, who has written nothing.
    for n in [0, 1, 7, merge_max, merge_max + 1, merge_max + 19] {
        let me = authors.get(n).copied().unwrap_or_else(Uuid::now_v7);
        follow_all(&data.db, me, &authors[..n]).await;
        let wanted: HashSet<Uuid> = authors[..n].iter().copied().chain([me]).collect();
        let mut expected: Vec<Uuid> = data
            .posts
            .iter()
            .filter(|(_, author)| wanted.contains(author))
            .map(|(id, _)| *id)
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));

        let viewer = Viewer {
            user_id: me,
            session_id: Uuid::now_v7(),
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = service
                .feed_fanout_on_read(viewer, 9, after)
                .await
                .expect("feed page");
            assert!(page.items.len() <= 9);
            seen.extend(page.items.iter().map(|p| p.id));
            if !page.has_next {
                break;
            }
            assert_eq!(page.items.len(), 9, "a page before the last is full");
            assert!(
                seen.len() < expected.len(),
                "following {n}: pages never repeat"
            );
            after = page.items.last().map(|p| p.id);
        }
        assert_eq!(
            seen, expected,
            "following {n}: every post once, newest first"
        );
    }
}

async fn per_parent_pages_hold_each_parents_newest_rows_after_the_cursor(backend: Backend) {
    let authors: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let data = seeded(backend, &authors, 5).await;
    let nobody = Uuid::now_v7();
    let parents: Vec<Uuid> = authors.iter().copied().chain([nobody]).collect();
    // A cursor in the middle of the timeline.
    let mut all: Vec<Uuid> = data.posts.iter().map(|(id, _)| *id).collect();
    all.sort_unstable();
    let cursor = all[all.len() / 2];

    for after in [None, Some(cursor)] {
        let pages = pages_per_parent(&data.db, &POSTS_BY, &parents, 2, after)
            .await
            .expect("pages");
        assert_eq!(pages.len(), parents.len(), "a page for every parent");
        for parent in &parents {
            let mut theirs: Vec<Uuid> = data
                .posts
                .iter()
                .filter(|(id, author)| author == parent && after.is_none_or(|a| *id < a))
                .map(|(id, _)| *id)
                .collect();
            theirs.sort_unstable_by(|a, b| b.cmp(a));
            let page = &pages[parent];
            let got: Vec<Uuid> = page.items.iter().map(|p| p.id).collect();
            assert_eq!(got, theirs.iter().take(2).copied().collect::<Vec<_>>());
            assert_eq!(page.has_next, theirs.len() > 2, "after {after:?}");
            assert!(page.items.iter().all(|p| p.author_id == *parent));
        }
    }
}

async fn a_seeded_database_has_planner_statistics(backend: Backend) {
    let (_dir, db) = migrated(backend).await;
    let options = SeedOptions {
        users: 30,
        posts_per_user: 2,
        seed: 11,
    };
    seed(&db, options, HASH.to_owned(), Progress::hidden())
        .await
        .expect("seeded");

    // What the planner knows of `likes`, the table whose counts a feed reads.
    let sql = match backend {
        Backend::Postgres => {
            // -1 until the table is first analyzed or vacuumed.
            "SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'likes' AND reltuples > 0"
        }
        Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_stat1 WHERE tbl = 'likes'",
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("queried")
        .expect("a row");
    let analyzed: i64 = row.try_get("", "n").expect("a count");
    assert!(analyzed > 0, "likes was analyzed after seeding");
}
