//! A database per subgraph: `gantry subgraph users` and `gantry subgraph posts` on two
//! PostgreSQL databases, each with only its own tables, and account events carried
//! between them by Redis Streams (`GANTRY_EVENTS=redis`). An account deletion cleans the
//! posts database, also when the posts subgraph was down as it happened; an event the
//! posts subgraph cannot read lands in the dead-letter stream after its deliveries; and
//! the consumer's lag and counters are on `/metrics`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::{Backend, Process, REGISTER, TestDatabase, eventually, fresh_database, start};

/// Two databases, one Redis prefix, a shared data dir (for the signing key), and the
/// environment each subgraph starts with.
struct Split {
    _data_dir: tempfile::TempDir,
    users_db: TestDatabase,
    posts_db: TestDatabase,
    data: String,
    redis: String,
    prefix: String,
}

impl Split {
    async fn new() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let users_db = fresh_database(Backend::Postgres, data_dir.path()).await;
        let posts_db = fresh_database(Backend::Postgres, data_dir.path()).await;
        Self {
            data: data_dir.path().display().to_string(),
            _data_dir: data_dir,
            users_db,
            posts_db,
            redis: std::env::var("GANTRY_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!("test-{}:", uuid::Uuid::now_v7().simple()),
        }
    }

    fn env<'a>(
        &'a self,
        database: &'a str,
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("GANTRY_DATA_DIR", self.data.as_str()),
            ("DATABASE_URL", database),
            ("REDIS_URL", self.redis.as_str()),
            ("GANTRY_REDIS_PREFIX", self.prefix.as_str()),
            ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
            ("GANTRY_EVENTS", "redis"),
            ("GANTRY_OUTBOX_POLL_MS", "200"),
        ];
        env.extend_from_slice(extra);
        env
    }

    async fn users(&self) -> Process {
        start(&["subgraph", "users"], &self.env(&self.users_db, &[])).await
    }

    async fn posts(&self, users: &Process, extra: &[(&str, &str)]) -> Process {
        let users_url = format!("http://{}/graphql", users.address);
        let mut env = self.env(&self.posts_db, extra);
        env.push(("GANTRY_USERS_URL", users_url.as_str()));
        start(&["subgraph", "posts"], &env).await
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn stream(&self) -> String {
        format!("{}events:users", self.prefix)
    }
}

async fn graphql(process: &Process, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", process.address))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// Registers `name` with the users subgraph; its id and access token.
async fn register(users: &Process, name: &str) -> (String, String) {
    let body = graphql(
        users,
        REGISTER,
        json!({ "input": {
            "username": name,
            "email": format!("{name}@example.com"),
            "password": "correct horse battery",
            "displayName": name,
        }}),
        None,
    )
    .await;
    assert_eq!(body["errors"], Value::Null, "register {name}: {body}");
    let payload = &body["data"]["register"];
    (
        payload["user"]["id"].as_str().unwrap().to_owned(),
        payload["accessToken"].as_str().unwrap().to_owned(),
    )
}

/// `follower` follows `followee` through the posts subgraph, once the account-created
/// event has told it that `followee` exists.
async fn follow(posts: &Process, token: &str, followee: &str) {
    eventually(
        "the followee is known to the posts subgraph",
        Duration::from_secs(20),
        || async {
            let body = graphql(
                posts,
                "mutation($id: ID!) { follow(userId: $id) { id } }",
                json!({ "id": followee }),
                Some(token),
            )
            .await;
            (body["errors"] == Value::Null).then_some(())
        },
    )
    .await;
}

async fn create_post(posts: &Process, token: &str, body: &str) -> String {
    let response = graphql(
        posts,
        "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
        json!({ "b": body }),
        Some(token),
    )
    .await;
    assert_eq!(response["errors"], Value::Null, "{response}");
    response["data"]["createPost"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn delete_account(users: &Process, token: &str) {
    let body = graphql(
        users,
        "mutation($p: String!) { deleteAccount(password: $p) }",
        json!({ "p": "correct horse battery" }),
        Some(token),
    )
    .await;
    assert_eq!(body["data"]["deleteAccount"], true, "{body}");
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
}

/// Rows in the posts database that belong to `user` (posts, comments, likes, follows).
async fn rows_of(db: &DatabaseConnection, user: &str) -> i64 {
    count(
        db,
        &format!(
            "SELECT (SELECT COUNT(*) FROM posts WHERE author_id = '{user}') \
             + (SELECT COUNT(*) FROM comments WHERE author_id = '{user}') \
             + (SELECT COUNT(*) FROM likes WHERE user_id = '{user}') \
             + (SELECT COUNT(*) FROM follows WHERE follower_id = '{user}' OR followee_id = '{user}') AS n"
        ),
    )
    .await
}

async fn has_table(db: &DatabaseConnection, table: &str) -> bool {
    count(
        db,
        &format!("SELECT COUNT(*) AS n FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'"),
    )
    .await
        == 1
}

/// Alice and Bob, who follow each other; Alice has a post that Bob liked and commented
/// on, and Bob a post Alice liked. Alice's id and token.
async fn alice_and_bob(users: &Process, posts: &Process) -> (String, String) {
    let (alice, alice_token) = register(users, "alice").await;
    let (bob, bob_token) = register(users, "bob").await;
    follow(posts, &bob_token, &alice).await;
    follow(posts, &alice_token, &bob).await;
    let post = create_post(posts, &alice_token, "hello from alice").await;
    let bobs = create_post(posts, &bob_token, "hello from bob").await;
    for (token, post) in [(&bob_token, &post), (&alice_token, &bobs)] {
        let liked = graphql(
            posts,
            "mutation($id: ID!) { likePost(postId: $id) { likeCount } }",
            json!({ "id": post }),
            Some(token),
        )
        .await;
        assert_eq!(liked["errors"], Value::Null, "{liked}");
    }
    let commented = graphql(
        posts,
        "mutation($id: ID!) { addComment(postId: $id, body: \"nice\") { id } }",
        json!({ "id": post }),
        Some(&alice_token),
    )
    .await;
    assert_eq!(commented["errors"], Value::Null, "{commented}");
    (alice, alice_token)
}

async fn metrics(process: &Process) -> String {
    reqwest::get(format!("http://{}/metrics", process.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample of `name` whose labels include `stream="STREAM"`.
fn sample(metrics: &str, name: &str, stream: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| line.contains(&format!("stream=\"{stream}\"")))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn an_account_deletion_cleans_the_posts_database_of_its_own_through_redis_streams() {
    let split = Split::new().await;
    let users = split.users().await;
    let posts = split.posts(&users, &[]).await;
    let (alice, alice_token) = alice_and_bob(&users, &posts).await;
    let posts_db = Database::connect(split.posts_db.as_str()).await.unwrap();
    let users_db = Database::connect(split.users_db.as_str()).await.unwrap();
    assert_eq!(
        rows_of(&posts_db, &alice).await,
        5,
        "two follows, a post, a like and a comment"
    );

    delete_account(&users, &alice_token).await;

    eventually(
        "alice's rows leave the posts database",
        Duration::from_secs(20),
        || async { (rows_of(&posts_db, &alice).await == 0).then_some(()) },
    )
    .await;
    let latest = graphql(
        &posts,
        "{ latestPosts { edges { node { body } } } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(
        latest["data"]["latestPosts"]["edges"],
        json!([{ "node": { "body": "hello from bob" } }]),
        "{latest}"
    );
    assert!(has_table(&users_db, "users").await && !has_table(&users_db, "posts").await);
    assert!(has_table(&posts_db, "posts").await && !has_table(&posts_db, "users").await);
    assert!(!has_table(&posts_db, "outbox_events").await);
    let metrics = metrics(&posts).await;
    let stream = split.stream();
    assert_eq!(
        sample(&metrics, "gantry_events_lag", &stream),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "gantry_events_handled_total", &stream).is_some_and(|n| n >= 3.0),
        "two accounts created, one deleted: {metrics}"
    );
}

#[tokio::test]
async fn a_deletion_made_while_the_posts_subgraph_is_down_is_applied_when_it_starts() {
    let split = Split::new().await;
    let users = split.users().await;
    let posts = split.posts(&users, &[]).await;
    let (alice, alice_token) = alice_and_bob(&users, &posts).await;
    drop(posts);

    delete_account(&users, &alice_token).await;
    let redis = split.redis().await;
    let stream = split.stream();
    eventually(
        "the deletion is on the stream",
        Duration::from_secs(20),
        || {
            let (mut redis, stream) = (redis.clone(), &stream);
            async move {
                let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(stream)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                entries
                    .ids
                    .iter()
                    .any(|e| e.get::<String>("topic").as_deref() == Some("user.account_deleted"))
                    .then_some(())
            }
        },
    )
    .await;
    let posts_db = Database::connect(split.posts_db.as_str()).await.unwrap();
    assert_eq!(
        rows_of(&posts_db, &alice).await,
        5,
        "nothing applied while down"
    );

    let posts = split.posts(&users, &[]).await;

    eventually(
        "alice's rows leave the posts database",
        Duration::from_secs(20),
        || async { (rows_of(&posts_db, &alice).await == 0).then_some(()) },
    )
    .await;
    let latest = graphql(
        &posts,
        "{ latestPosts { edges { node { body } } } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(
        latest["data"]["latestPosts"]["edges"],
        json!([{ "node": { "body": "hello from bob" } }]),
        "{latest}"
    );
}

#[tokio::test]
async fn an_event_the_posts_subgraph_cannot_read_goes_to_the_dead_letter_stream_after_its_deliveries()
 {
    let split = Split::new().await;
    let users = split.users().await;
    let posts = split
        .posts(
            &users,
            &[
                ("GANTRY_EVENTS_MAX_DELIVERIES", "3"),
                ("GANTRY_EVENTS_CLAIM_IDLE_MS", "100"),
            ],
        )
        .await;
    let mut redis = split.redis().await;
    let stream = split.stream();

    let poison: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&[
            ("id", "0190c5a0-0000-7000-8000-000000000000"),
            ("topic", "user.account_deleted"),
            ("payload", "{\"userId\": \"not an id\"}"),
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    let (bob, _) = register(&users, "bob").await;

    let dead_stream = format!("{stream}:dead");
    let dead = eventually(
        "the poison event is dead-lettered",
        Duration::from_secs(20),
        || {
            let (mut redis, dead_stream) = (redis.clone(), &dead_stream);
            async move {
                let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(dead_stream)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                entries.ids.into_iter().next()
            }
        },
    )
    .await;
    assert_eq!(dead.get::<String>("source_entry"), Some(poison));
    assert_eq!(
        dead.get::<String>("topic").as_deref(),
        Some("user.account_deleted")
    );
    assert_eq!(
        dead.get::<String>("payload").as_deref(),
        Some("{\"userId\": \"not an id\"}")
    );
    assert_eq!(dead.get::<String>("group").as_deref(), Some("posts"));
    assert_eq!(dead.get::<String>("deliveries").as_deref(), Some("3"));
    assert!(
        dead.get::<String>("error")
            .is_some_and(|e| e.contains("user.account_deleted")),
        "{dead:?}"
    );
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("posts")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(pending.count(), 0, "acknowledged once dead-lettered");
    // The event behind it was not held up: bob is known, so he can be followed.
    let (_, carol_token) = register(&users, "carol").await;
    follow(&posts, &carol_token, &bob).await;
    let metrics = metrics(&posts).await;
    assert_eq!(
        sample(&metrics, "gantry_events_dead_lettered_total", &stream),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "gantry_events_failed_total", &stream).is_some_and(|n| n >= 3.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_subgraph_migrates_only_its_own_tables_and_a_shared_database_takes_the_rest_later() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Postgres, dir.path()).await;
    let env = [("DATABASE_URL", url.as_str())];

    let posts_only = crate::helpers::run(&["migrate", "up", "--subgraph", "posts"], &env).await;
    let status = crate::helpers::run(&["migrate", "status"], &env).await;
    let shared = crate::helpers::run(&["migrate", "up"], &env).await;
    let after = crate::helpers::run(&["migrate", "status"], &env).await;

    assert!(posts_only.status.success(), "{posts_only:?}");
    assert_eq!(
        String::from_utf8_lossy(&posts_only.stdout),
        "applied 5 migration(s)\n"
    );
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let pending: Vec<&str> = status
        .lines()
        .filter_map(|line| line.strip_prefix("Pending"))
        .map(str::trim)
        .collect();
    assert_eq!(
        pending,
        [
            "m20261127_000001_users",
            "m20261201_000003_revocations",
            "m20261210_000005_outbox_published",
            "m20261220_000008_user_live_events"
        ],
        "{status}"
    );
    assert_eq!(
        String::from_utf8_lossy(&shared.stdout),
        "applied 4 migration(s)\n"
    );
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(
        after.lines().all(|line| line.starts_with("Applied")),
        "{after}"
    );
    let db = Database::connect(url.as_str()).await.unwrap();
    assert!(has_table(&db, "posts").await && has_table(&db, "users").await);
}
