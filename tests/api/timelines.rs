//! The hybrid feed (timelines fanned out on write, the most-followed authors read at feed
//! time) against the fan-out-on-read feed it replaces, on a database filled by the seed
//! command (its skewed follow graph): every viewer's pages must be the same, before and
//! after follows, unfollows, new and deleted posts, an author passing the fan-out limit,
//! trimmed timelines and a deleted account. Small limits (a fan-out limit of a few dozen
//! followers, timelines of a few dozen entries) put every path in reach of a small seed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use gantry::seed::{Progress, SeedOptions, seed};
use gantry_entities::{feed_pulled_author, follow, outbox_event, timeline_head, user};
use gantry_kit::Viewer;
use gantry_kit::db::DatabaseSettings;
use gantry_kit::invalidation::Invalidations;
use gantry_kit::reads::ReadFrom;
use gantry_migrations::{Migrator, MigratorTrait, rebuild_timelines};
use gantry_posts::AccountDeletionConsumer;
use gantry_posts::service::PostsService;
use gantry_posts::timelines::FeedSettings;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::helpers::{Backend, TestDatabase, fresh_database};

crate::on_both_backends!(
    the_hybrid_feed_equals_the_fan_out_on_read_feed_for_every_seeded_viewer,
    the_hybrid_feed_stays_equal_through_follows_posts_unfollows_and_deletions,
);

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5Vb5mGMCH7hcY2LwDJXD9Cm0BBfm2sn9KnMBYEJZ5p4";

const PAGE: u64 = 12;
const PAGES: usize = 6;

struct Seeded {
    db: DatabaseConnection,
    _place: (tempfile::TempDir, TestDatabase),
    service: PostsService,
    users: Vec<Uuid>,
}

/// A migrated database seeded with `users` accounts, its timelines rebuilt under `feed`.
async fn seeded(backend: Backend, users: u32, feed: FeedSettings) -> Seeded {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database(backend, dir.path()).await;
    let db = gantry_kit::db::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: None,
    })
    .await
    .expect("connect");
    Migrator::up(&db, None).await.expect("migrate");
    let options = SeedOptions {
        users,
        posts_per_user: 6,
        seed: 23,
    };
    seed(&db, options, HASH.to_owned(), Progress::hidden())
        .await
        .expect("seeded");
    rebuild_timelines(&db, feed.fanout_max_followers, feed.timeline_cap)
        .await
        .expect("timelines rebuilt");
    let users = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .select_only()
        .column(user::Column::Id)
        .into_tuple()
        .all(&db)
        .await
        .expect("users");
    Seeded {
        service: PostsService::new(db.clone()).with_feed(feed),
        db,
        _place: (dir, url),
        users,
    }
}

fn viewer(user_id: Uuid) -> Viewer {
    Viewer {
        user_id,
        session_id: Uuid::now_v7(),
    }
}

/// Walks up to [`PAGES`] pages of both feeds for each of `viewers` and asserts they match
/// page by page (items and whether more follow).
async fn assert_same_feeds(service: &PostsService, viewers: &[Uuid], when: &str) {
    for &user_id in viewers {
        let mut after = None;
        for page_number in 0..PAGES {
            let hybrid = service
                .feed(ReadFrom::Primary, viewer(user_id), PAGE, after)
                .await
                .expect("hybrid page");
            let reference = service
                .feed_fanout_on_read(viewer(user_id), PAGE, after)
                .await
                .expect("reference page");
            let ids = |page: &gantry_posts::pages::Page<gantry_entities::post::Model>| {
                page.items.iter().map(|p| p.id).collect::<Vec<_>>()
            };
            assert_eq!(
                ids(&hybrid),
                ids(&reference),
                "{when}: viewer {user_id}, page {page_number}"
            );
            assert_eq!(
                hybrid.has_next, reference.has_next,
                "{when}: viewer {user_id}, page {page_number}"
            );
            if !hybrid.has_next {
                break;
            }
            after = hybrid.items.last().map(|p| p.id);
        }
    }
}

/// Users by how many accounts they follow, most first.
async fn by_following(db: &DatabaseConnection) -> Vec<Uuid> {
    let rows: Vec<(Uuid, Uuid)> = follow::Entity::find()
        .select_only()
        .column(follow::Column::FollowerId)
        .column(follow::Column::FolloweeId)
        .into_tuple()
        .all(db)
        .await
        .expect("follows");
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for (follower, _) in rows {
        *counts.entry(follower).or_default() += 1;
    }
    let mut users: Vec<(Uuid, usize)> = counts.into_iter().collect();
    users.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    users.into_iter().map(|(id, _)| id).collect()
}

async fn pulled_authors(db: &DatabaseConnection) -> Vec<Uuid> {
    feed_pulled_author::Entity::find()
        .select_only()
        .column(feed_pulled_author::Column::AuthorId)
        .into_tuple()
        .all(db)
        .await
        .expect("marked authors")
}

async fn trimmed_timelines(db: &DatabaseConnection) -> u64 {
    timeline_head::Entity::find()
        .filter(timeline_head::Column::Horizon.is_not_null())
        .count(db)
        .await
        .expect("heads")
}

async fn the_hybrid_feed_equals_the_fan_out_on_read_feed_for_every_seeded_viewer(backend: Backend) {
    let feed = FeedSettings {
        fanout_max_followers: 30,
        timeline_cap: 40,
        ..FeedSettings::default()
    };
    let data = seeded(backend, 250, feed).await;
    // Both halves of the hybrid, and timelines cut short, are in play.
    assert!(!pulled_authors(&data.db).await.is_empty());
    assert!(trimmed_timelines(&data.db).await > 0);

    assert_same_feeds(&data.service, &data.users, "after seeding").await;
}

async fn the_hybrid_feed_stays_equal_through_follows_posts_unfollows_and_deletions(
    backend: Backend,
) {
    let feed = FeedSettings {
        fanout_max_followers: 12,
        timeline_cap: 20,
        ..FeedSettings::default()
    };
    let data = seeded(backend, 120, feed).await;
    let service = &data.service;
    let heaviest = by_following(&data.db).await;
    let pulled = pulled_authors(&data.db).await;
    let watched: Vec<Uuid> = heaviest.iter().take(25).copied().collect();

    // A heavy reader with an ordinary author's post on their first page: unfollowing that
    // author, and a marked one, then following the marked one again.
    let mut picked = None;
    for &candidate in &heaviest {
        let first_page = service
            .feed(ReadFrom::Primary, viewer(candidate), PAGE, None)
            .await
            .expect("feed");
        if let Some(author) = first_page
            .items
            .iter()
            .map(|post| post.author_id)
            .find(|author| *author != candidate && !pulled.contains(author))
        {
            picked = Some((candidate, author));
            break;
        }
    }
    let (reader, ordinary) = picked.expect("a reader with an ordinary author's post first");
    let followed: Vec<Uuid> = follow::Entity::find()
        .select_only()
        .column(follow::Column::FolloweeId)
        .filter(follow::Column::FollowerId.eq(reader))
        .into_tuple()
        .all(&data.db)
        .await
        .expect("followees");
    let marked = followed.iter().find(|u| pulled.contains(u)).copied();
    for author in [ordinary].into_iter().chain(marked) {
        service
            .unfollow(viewer(reader), author)
            .await
            .expect("unfollowed");
    }
    assert_same_feeds(service, &[reader], "after unfollows").await;
    if let Some(marked) = marked {
        service
            .follow(viewer(reader), marked)
            .await
            .expect("followed again");
        assert_same_feeds(service, &[reader], "after following a marked author").await;
    }

    // An ordinary author the reader does not follow: followed, then posting more than a
    // timeline holds, so the reader's timeline is trimmed by new posts.
    let writer = *data
        .users
        .iter()
        .find(|u| **u != reader && !followed.contains(u) && !pulled.contains(u))
        .expect("an ordinary author the reader does not follow");
    service
        .follow(viewer(reader), writer)
        .await
        .expect("followed");
    assert_same_feeds(service, &watched, "after a follow").await;

    let mut written = Vec::new();
    for n in 0..30 {
        let post = service
            .create_post(viewer(writer), &format!("news {n}"))
            .await
            .expect("posted");
        written.push(post.id);
    }
    assert_same_feeds(service, &watched, "after many new posts").await;
    assert_same_feeds(service, &[reader, writer], "after many new posts").await;

    // Deleting the newest and an older post.
    service
        .delete_post(viewer(writer), written[29])
        .await
        .expect("deleted");
    service
        .delete_post(viewer(writer), written[3])
        .await
        .expect("deleted");
    assert_same_feeds(service, &watched, "after deleting posts").await;

    // The writer passes the fan-out limit: from their next post on they are read at feed
    // time, while their earlier posts stay in timelines.
    let newcomers: Vec<Uuid> = data
        .users
        .iter()
        .copied()
        .filter(|u| *u != writer)
        .take(feed.fanout_max_followers as usize + 2)
        .collect();
    for follower in &newcomers {
        service
            .follow(viewer(*follower), writer)
            .await
            .expect("followed");
    }
    service
        .create_post(viewer(writer), "now widely read")
        .await
        .expect("posted");
    assert!(pulled_authors(&data.db).await.contains(&writer));
    assert_same_feeds(service, &newcomers, "after the writer passed the limit").await;

    // The writer's account is deleted: the consumer removes their posts everywhere.
    outbox_event::Entity::insert(outbox_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        topic: Set(outbox_event::TOPIC_ACCOUNT_DELETED.to_owned()),
        payload: Set(format!(r#"{{"userId":"{writer}"}}"#)),
        created_at: Set(Utc::now()),
        published_at: Set(None),
    })
    .exec_without_returning(&data.db)
    .await
    .expect("event written");
    AccountDeletionConsumer::new(
        data.db.clone(),
        Duration::from_secs(1),
        None,
        Invalidations::default(),
    )
    .drain()
    .await
    .expect("consumed");
    assert_same_feeds(
        service,
        &data.users,
        "after the writer's account was deleted",
    )
    .await;
    let reader_feed = service
        .feed(ReadFrom::Primary, viewer(reader), 100, None)
        .await
        .expect("feed");
    assert!(reader_feed.items.iter().all(|p| p.author_id != writer));
}
