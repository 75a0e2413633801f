//! A database per subgraph: `gantry subgraph users` and `gantry subgraph posts` on two
//! PostgreSQL databases, each with only its own tables, and account events carried
//! between them by Redis Streams (`GANTRY_EVENTS=redis`). An account deletion cleans the
//! posts database, also when the posts subgraph was down as it happened; an event the
//! posts subgraph cannot read lands in the dead-letter stream after its deliveries; the
//! consumer's lag and counters are on `/metrics`; and a profile changed at the users
//! subgraph, where no gateway sees it, is dropped from the gateways' shared caches by its
//! event, also when the event comes again.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Process, REGISTER, TestDatabase, eventually, free_port, fresh_database, start,
    start_listening,
};

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

    /// The posts subgraph on `address`, so a gateway finds it again after a restart.
    async fn posts_at(&self, users: &Process, address: &str) -> Process {
        let users_url = format!("http://{}/graphql", users.address);
        let mut env = self.env(&self.posts_db, &[]);
        env.push(("GANTRY_USERS_URL", users_url.as_str()));
        start_listening(&["subgraph", "posts"], &env, address).await
    }

    /// A gateway over both subgraphs, its response and entity caches in their Redis.
    async fn gateway(&self, users: &Process, posts_address: &str) -> Process {
        let users = format!("users=http://{}/graphql", users.address);
        let posts = format!("posts=http://{posts_address}/graphql");
        start(
            &["gateway", "--subgraph", &users, "--subgraph", &posts],
            &[
                ("GANTRY_DATA_DIR", self.data.as_str()),
                ("REDIS_URL", self.redis.as_str()),
                ("GANTRY_REDIS_PREFIX", self.prefix.as_str()),
                ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
                ("GANTRY_RESPONSE_CACHE", "true"),
                ("GANTRY_ENTITY_CACHE", "true"),
            ],
        )
        .await
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

/// POSTs a query; the `x-cache` header and the body.
async fn cached(process: &Process, query: &str, variables: Value) -> (Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", process.address))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (cache, response.json().await.unwrap())
}

const PROFILE: &str = "query($id: ID!) { user(id: $id) { id displayName bio } }";
const POST_PAGE: &str = "query($id: ID!) { post(id: $id) { id body author { id displayName } } }";
const UPDATE_PROFILE: &str = "mutation($name: String!) { updateProfile(input: { displayName: $name, bio: \"new here\" }) { id displayName } }";

/// Whether an invalidation of `id` is recorded in Redis (`<prefix>inv:<id>`, written by
/// every invalidation of that id and by nothing else).
async fn invalidated(split: &Split, id: &str) -> bool {
    let mut redis = split.redis().await;
    redis::cmd("EXISTS")
        .arg(format!("{}inv:{id}", split.prefix))
        .query_async::<i64>(&mut redis)
        .await
        .unwrap()
        == 1
}

/// Alice with a post, read through the gateway until both her profile and the post page
/// come from its caches: the gateway, Alice's id and token, and the post's id.
async fn alice_cached(
    split: &Split,
    users: &Process,
    posts: &Process,
    gateway: &Process,
) -> (String, String, String) {
    let (alice, token) = register(users, "alice").await;
    let post = create_post(posts, &token, "hello from alice").await;
    for (query, variables) in [
        (PROFILE, json!({ "id": alice })),
        (POST_PAGE, json!({ "id": post })),
    ] {
        let (first, body) = cached(gateway, query, variables.clone()).await;
        assert_eq!(first.as_deref(), Some("MISS"), "{body}");
        let (second, again) = cached(gateway, query, variables).await;
        assert_eq!(second.as_deref(), Some("HIT"), "{again}");
        assert_eq!(body, again);
    }
    let (_, profile) = cached(gateway, PROFILE, json!({ "id": alice })).await;
    assert_eq!(profile["data"]["user"]["displayName"], "alice", "{profile}");
    assert!(!invalidated(split, &alice).await);
    (alice, token, post)
}

#[tokio::test]
async fn a_profile_changed_where_no_gateway_sees_it_is_fresh_in_the_gateways_cache_through_its_event()
 {
    let split = Split::new().await;
    let users = split.users().await;
    let posts_address = format!("127.0.0.1:{}", free_port());
    let mut posts = split.posts_at(&users, &posts_address).await;
    let gateway = split.gateway(&users, &posts_address).await;
    let (alice, token, post) = alice_cached(&split, &users, &posts, &gateway).await;

    // The consumer is down: the change, made at the users subgraph itself, reaches no
    // gateway, which answers from its cache.
    posts.child.kill().await.unwrap();
    let changed = graphql(
        &users,
        UPDATE_PROFILE,
        json!({ "name": "Alice Liddell" }),
        Some(&token),
    )
    .await;
    assert_eq!(
        changed["data"]["updateProfile"]["displayName"], "Alice Liddell",
        "{changed}"
    );
    let (cache, stale) = cached(&gateway, PROFILE, json!({ "id": alice })).await;
    assert_eq!(cache.as_deref(), Some("HIT"));
    assert_eq!(stale["data"]["user"]["displayName"], "alice", "{stale}");
    assert!(
        !invalidated(&split, &alice).await,
        "nothing invalidated alice yet"
    );

    // The event waited in the stream; once the posts subgraph reads it, what every
    // gateway caches about Alice is dropped.
    let _posts = split.posts_at(&users, &posts_address).await;
    let fresh = eventually(
        "the profile read afresh",
        Duration::from_secs(20),
        || async {
            let (_, body) = cached(&gateway, PROFILE, json!({ "id": alice })).await;
            (body["data"]["user"]["displayName"] == "Alice Liddell").then_some(body)
        },
    )
    .await;
    assert_eq!(fresh["data"]["user"]["bio"], "new here");
    assert!(invalidated(&split, &alice).await, "by the profile event");
    // The post page's response and the entity cache's copy of Alice went with it.
    let (cache, page) = cached(&gateway, POST_PAGE, json!({ "id": post })).await;
    assert_eq!(cache.as_deref(), Some("MISS"));
    assert_eq!(
        page["data"]["post"]["author"]["displayName"], "Alice Liddell",
        "{page}"
    );
    let (cache, _) = cached(&gateway, POST_PAGE, json!({ "id": post })).await;
    assert_eq!(cache.as_deref(), Some("HIT"), "cached again, fresh");
}

/// Every row of the posts database, as text: what an event changed there.
async fn posts_rows(db: &DatabaseConnection) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "known_accounts",
        "posts",
        "comments",
        "likes",
        "follows",
        "timelines",
        "timeline_heads",
        "feed_pulled_authors",
    ] {
        let found = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT row_to_json(t)::text AS row FROM {table} t ORDER BY 1"),
            ))
            .await
            .unwrap();
        rows.extend(
            found
                .iter()
                .map(|row| format!("{table} {}", row.try_get::<String>("", "row").unwrap())),
        );
    }
    rows
}

#[tokio::test]
async fn a_profile_event_delivered_again_changes_nothing_and_brings_no_old_name_back() {
    let split = Split::new().await;
    let users = split.users().await;
    let posts_address = format!("127.0.0.1:{}", free_port());
    let posts = split.posts_at(&users, &posts_address).await;
    let gateway = split.gateway(&users, &posts_address).await;
    let (alice, token, post) = alice_cached(&split, &users, &posts, &gateway).await;
    let stream = split.stream();
    let mut redis = split.redis().await;
    let profile_events = async |redis: &mut redis::aio::MultiplexedConnection| {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(redis)
            .await
            .unwrap();
        entries
            .ids
            .into_iter()
            .filter(|e| e.get::<String>("topic").as_deref() == Some("user.profile_updated"))
            .collect::<Vec<_>>()
    };

    for name in ["Alice Liddell", "Alice L."] {
        let changed = graphql(
            &users,
            UPDATE_PROFILE,
            json!({ "name": name }),
            Some(&token),
        )
        .await;
        assert_eq!(changed["errors"], Value::Null, "{changed}");
    }
    let events = eventually(
        "both profile events on the stream",
        Duration::from_secs(20),
        || {
            let mut redis = redis.clone();
            async move {
                let events = profile_events(&mut redis).await;
                (events.len() == 2).then_some(events)
            }
        },
    )
    .await;
    let first = &events[0];
    assert_eq!(
        serde_json::from_str::<Value>(&first.get::<String>("payload").unwrap()).unwrap()["userId"],
        alice.as_str()
    );
    let handled = || async {
        let text = metrics(&posts).await;
        sample(&text, "gantry_events_handled_total", &stream).unwrap_or(0.0)
    };
    // Alice's account-created event and her two profile events.
    eventually("every event handled", Duration::from_secs(20), || async {
        (handled().await == 3.0).then_some(())
    })
    .await;
    let fresh = eventually(
        "the latest name through the gateway",
        Duration::from_secs(20),
        || async {
            let (cache, body) = cached(&gateway, POST_PAGE, json!({ "id": post })).await;
            (body["data"]["post"]["author"]["displayName"] == "Alice L."
                && cache.as_deref() == Some("HIT"))
            .then_some(body)
        },
    )
    .await;
    let posts_db = Database::connect(split.posts_db.as_str()).await.unwrap();
    let before = posts_rows(&posts_db).await;

    // The relay sends the first, older event again, as after a stop between its append
    // and its commit.
    let fields: Vec<(String, String)> = ["id", "topic", "payload"]
        .iter()
        .map(|field| ((*field).to_owned(), first.get::<String>(field).unwrap()))
        .collect();
    redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&fields)
        .query_async::<String>(&mut redis)
        .await
        .unwrap();
    eventually("the repeat handled", Duration::from_secs(20), || async {
        (handled().await == 4.0).then_some(())
    })
    .await;

    assert_eq!(
        posts_rows(&posts_db).await,
        before,
        "no row of the posts database changed"
    );
    let (_, page) = cached(&gateway, POST_PAGE, json!({ "id": post })).await;
    assert_eq!(
        page, fresh,
        "the latest name, never the one the old event followed"
    );
    let (_, profile) = cached(&gateway, PROFILE, json!({ "id": alice })).await;
    assert_eq!(profile["data"]["user"]["displayName"], "Alice L.");
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("posts")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(pending.count(), 0, "acknowledged");
    let dead: i64 = redis::cmd("XLEN")
        .arg(format!("{stream}:dead"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}

/// Records the ids each invalidation names.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<Vec<uuid::Uuid>>>);

impl gantry_kit::invalidation::InvalidationSink for Recorded {
    fn invalidate(
        &self,
        ids: Vec<uuid::Uuid>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.0.lock().unwrap().push(ids) })
    }
}

#[tokio::test]
async fn the_posts_subgraph_takes_a_profile_event_twice_alike_and_refuses_one_it_cannot_read() {
    use gantry_kit::events::{Event, EventHandler, HandleError};

    let split = Split::new().await;
    let users = split.users().await;
    let posts = split.posts(&users, &[]).await;
    let (alice, token) = register(&users, "alice").await;
    create_post(&posts, &token, "hello from alice").await;
    let db = Database::connect(split.posts_db.as_str()).await.unwrap();
    let sink = std::sync::Arc::new(Recorded::default());
    let handler = gantry_posts::events::AccountEvents::new(
        db.clone(),
        gantry_kit::invalidation::Invalidations::new(sink.clone()),
    );
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        topic: "user.profile_updated".into(),
        payload: json!({ "userId": alice, "updatedAt": "2026-12-01T00:00:00Z" }).to_string(),
    };
    let before = posts_rows(&db).await;

    handler.handle(&event).await.unwrap();
    handler.handle(&event).await.unwrap();

    assert_eq!(posts_rows(&db).await, before);
    let alice: uuid::Uuid = alice.parse().unwrap();
    assert_eq!(*sink.0.lock().unwrap(), vec![vec![alice], vec![alice]]);
    let unreadable = Event {
        payload: json!({ "userId": "not an id" }).to_string(),
        ..event
    };
    match handler.handle(&unreadable).await {
        Err(HandleError::Poison(cause)) => {
            assert!(cause.contains("user.profile_updated"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
}
