//! The posts database is ready to be hash-distributed (the plan in `bench/README.md`): a
//! distributed PostgreSQL enforces a unique constraint only within one shard, so every
//! primary key and unique index of a distributed table must hold its distribution column.

use gantry_kit::db::DatabaseSettings;
use gantry_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, fresh_database};

/// Each distributed table of the posts database and the column it is distributed on.
const PLAN: &[(&str, &str)] = &[
    ("posts", "id"),
    ("comments", "post_id"),
    ("likes", "post_id"),
    ("follows", "follower_id"),
    ("known_accounts", "user_id"),
    ("timelines", "viewer_id"),
    ("timeline_heads", "viewer_id"),
    ("feed_pulled_authors", "author_id"),
];

#[tokio::test]
async fn every_unique_key_of_the_posts_tables_holds_the_planned_distribution_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database(Backend::Postgres, dir.path()).await;
    let db = gantry_kit::db::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: None,
    })
    .await
    .expect("connect");
    Migrator::up(&db, None).await.expect("migrate");

    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT t.relname AS table_name, i.relname AS index_name, \
               ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) AS k(attnum) \
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS columns \
             FROM pg_index ix \
             JOIN pg_class t ON t.oid = ix.indrelid \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE ix.indisunique AND n.nspname = 'public'",
        ))
        .await
        .expect("unique indexes");
    let mut checked = Vec::new();
    for row in rows {
        let table: String = row.try_get("", "table_name").expect("table");
        let index: String = row.try_get("", "index_name").expect("index");
        let columns: Vec<String> = row.try_get("", "columns").expect("columns");
        let Some((_, column)) = PLAN.iter().find(|(planned, _)| *planned == table) else {
            continue;
        };
        assert!(
            columns.iter().any(|c| c == column),
            "{table}.{index} ({}) must hold the distribution column {column}",
            columns.join(", ")
        );
        checked.push(table);
    }
    checked.sort_unstable();
    checked.dedup();
    let mut planned: Vec<&str> = PLAN.iter().map(|(table, _)| *table).collect();
    planned.sort_unstable();
    assert_eq!(checked, planned, "every planned table has a primary key");
}
