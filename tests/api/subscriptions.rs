//! Subscriptions served by the subgraphs over WebSocket (`graphql-transport-ws`), as the
//! gateway (or any `graphql-ws` client) speaks to them: events arrive once their write has
//! committed, only to the subscribers they concern, across replicas through Redis pub/sub;
//! a connection says who is asking in `connection_init`, is kept alive by pings past the
//! HTTP timeouts, and holds a bounded number of subscriptions that it frees when it goes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::{Backend, Process, Stack, TestDatabase, eventually, fresh_database, start};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` client of one subgraph.
struct LiveClient {
    socket: Socket,
    /// Pings the server sent (each answered with a pong).
    pings: usize,
}

impl LiveClient {
    /// Opens `ws://ADDRESS/graphql` and initialises it as `token` (none: anonymous), the
    /// token in the payload's headers as the gateway sends it.
    async fn connect(address: &str, token: Option<&str>) -> Self {
        let payload = match token {
            Some(token) => json!({ "headers": { "authorization": format!("Bearer {token}") } }),
            None => json!({}),
        };
        let mut client = Self::open(address).await;
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = client.receive().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    /// Opens the socket, without `connection_init`.
    async fn open(address: &str) -> Self {
        let mut request = format!("ws://{address}/graphql")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        Self { socket, pings: 0 }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    async fn complete(&mut self, id: &str) {
        self.send(json!({ "id": id, "type": "complete" })).await;
    }

    /// The next message other than a ping (answered with a pong), within 20 s; a close
    /// frame as `{"type": "close", "code": …}`.
    async fn receive(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("a message within 20 s")
                .expect("the socket is open")
                .expect("a readable message");
            match message {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap();
                    if message["type"] == "ping" {
                        self.pings += 1;
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return message;
                }
                Message::Close(frame) => {
                    return json!({ "type": "close", "code": frame.map(|f| u16::from(f.code)) });
                }
                _ => {}
            }
        }
    }

    /// The payload of the next message, which must be `next` for `id`.
    async fn next(&mut self, id: &str) -> Value {
        let message = self.receive().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        message["payload"].clone()
    }

    /// The error payload of subscription `id`, which then completes.
    async fn refused(&mut self, id: &str) -> Value {
        let payload = self.next(id).await;
        let ended = self.receive().await;
        assert_eq!(ended, json!({ "id": id, "type": "complete" }));
        payload
    }

    /// [`LiveClient::next`], past what [`LiveClient::until_heard`]'s writes caused.
    async fn next_after_warm_up(&mut self, id: &str) -> Value {
        loop {
            let payload = self.next(id).await;
            if !payload.to_string().contains(WARM_UP) {
                return payload;
            }
        }
    }

    /// Repeats `write` (whose event mentions [`WARM_UP`]) until subscription `id` hears of
    /// one: from then on it surely gets every event. A subscription starts some time after
    /// `subscribe` is sent, and the protocol does not say when.
    async fn until_heard<F, Fut>(&mut self, id: &str, mut write: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        for _ in 0..40 {
            let written = write().await;
            assert_eq!(written["errors"], Value::Null, "{written}");
            if tokio::time::timeout(Duration::from_millis(500), self.next(id))
                .await
                .is_ok()
            {
                return;
            }
        }
        panic!("subscription {id} never heard of a write");
    }
}

/// What the writes that only check a subscription is in place say.
const WARM_UP: &str = "warm-up";

/// POSTs an operation to `address`'s `/graphql`.
async fn graphql(address: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

const REGISTER: &str = crate::helpers::REGISTER;
const COMMENT_ADDED: &str =
    "subscription($p: ID!) { commentAdded(postId: $p) { id body author { id } post { id } } }";
const LIKES: &str = "subscription($p: ID!) { postLikeCountChanged(postId: $p) { id likeCount } }";
const POST_CREATED: &str = "subscription { postCreated { id body author { id } } }";
const PROFILE: &str = "subscription($u: ID!) { profileUpdated(userId: $u) { id displayName bio } }";
const ADD_COMMENT: &str =
    "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }";
const CREATE_POST: &str = "mutation($b: String!) { createPost(input: { body: $b }) { id } }";

/// `users` and `posts` (or more) as processes of the real binary over one database.
struct Processes {
    users: Process,
    posts: Vec<Process>,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl Processes {
    /// Both subgraphs on a fresh PostgreSQL database with `env` on top; `posts` replicas
    /// of the posts subgraph.
    async fn start(posts: usize, env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let database = fresh_database(Backend::Postgres, data_dir.path()).await;
        let data = data_dir.path().display().to_string();
        let mut all = vec![
            ("GANTRY_DATA_DIR", data.as_str()),
            ("DATABASE_URL", database.as_str()),
            ("GANTRY_OUTBOX_POLL_MS", "100"),
        ];
        all.extend_from_slice(env);
        let users = start(&["subgraph", "users"], &all).await;
        let mut replicas = Vec::new();
        for _ in 0..posts {
            replicas.push(start(&["subgraph", "posts"], &all).await);
        }
        Self {
            users,
            posts: replicas,
            _data_dir: data_dir,
            _database: database,
        }
    }

    fn posts(&self) -> &str {
        &self.posts[0].address
    }

    /// Registers `name`: `(id, access token)`.
    async fn user(&self, name: &str) -> (String, String) {
        let body = graphql(
            &self.users.address,
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
        let payload = &body["data"]["register"];
        assert_eq!(body["errors"], Value::Null, "register {name}: {body}");
        (
            payload["user"]["id"].as_str().unwrap().to_owned(),
            payload["accessToken"].as_str().unwrap().to_owned(),
        )
    }

    /// `token` follows `user_id`, once the posts subgraph has learnt of that account.
    async fn follow(&self, token: &str, user_id: &str) {
        eventually("the follow succeeds", Duration::from_secs(20), || async {
            let body = graphql(
                self.posts(),
                "mutation($u: ID!) { follow(userId: $u) { id } }",
                json!({ "u": user_id }),
                Some(token),
            )
            .await;
            (body["errors"] == Value::Null).then_some(())
        })
        .await;
    }

    async fn post(&self, token: &str, body: &str) -> String {
        let response = graphql(self.posts(), CREATE_POST, json!({ "b": body }), Some(token)).await;
        response["data"]["createPost"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createPost: {response}"))
            .to_owned()
    }
}

crate::on_both_backends!(
    a_comment_reaches_the_subscribers_of_its_post_and_no_others,
    a_profile_update_reaches_the_subscribers_of_that_account
);

async fn a_comment_reaches_the_subscribers_of_its_post_and_no_others(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (alice, token) = stack.user("alice").await;
    let first = stack.post(&token, "first").await;
    let second = stack.post(&token, "second").await;
    let posts = stack.posts.address.to_string();
    let comment = |post: &str, body: &str| {
        let (posts, token) = (posts.clone(), token.clone());
        let variables = json!({ "p": post, "b": body });
        async move { graphql(&posts, ADD_COMMENT, variables, Some(&token)).await }
    };
    let mut on_first = LiveClient::connect(&posts, Some(&token)).await;
    let mut on_second = LiveClient::connect(&posts, None).await;
    on_first
        .subscribe("1", COMMENT_ADDED, json!({ "p": first }))
        .await;
    on_second
        .subscribe("1", COMMENT_ADDED, json!({ "p": second }))
        .await;
    on_first.until_heard("1", || comment(&first, WARM_UP)).await;
    on_second
        .until_heard("1", || comment(&second, WARM_UP))
        .await;

    let added = comment(&first, "hello there").await;
    let got = on_first.next_after_warm_up("1").await;
    comment(&second, "again").await;
    let second_heard = on_second.next_after_warm_up("1").await;

    let comment_id = added["data"]["addComment"]["id"].as_str().unwrap();
    assert_eq!(
        got,
        json!({ "data": { "commentAdded": {
            "id": comment_id,
            "body": "hello there",
            "author": { "id": alice },
            "post": { "id": first },
        }}})
    );
    assert_eq!(
        second_heard["data"]["commentAdded"]["body"], "again",
        "the second post's subscriber got nothing about the first post"
    );
}

async fn a_profile_update_reaches_the_subscribers_of_that_account(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (alice, token) = stack.user("alice").await;
    let users = stack.users.address.to_string();
    let update = |input: Value| {
        let (users, token) = (users.clone(), token.clone());
        async move {
            graphql(
                &users,
                "mutation($i: UpdateProfileInput!) { updateProfile(input: $i) { id } }",
                json!({ "i": input }),
                Some(&token),
            )
            .await
        }
    };
    let mut watcher = LiveClient::connect(&users, None).await;
    watcher.subscribe("p", PROFILE, json!({ "u": alice })).await;
    watcher
        .until_heard("p", || update(json!({ "bio": WARM_UP })))
        .await;

    let updated = update(json!({ "displayName": "Alice A.", "bio": "hi" })).await;
    let got = watcher.next_after_warm_up("p").await;

    assert_eq!(updated["errors"], Value::Null, "{updated}");
    assert_eq!(
        got,
        json!({ "data": { "profileUpdated": { "id": alice, "displayName": "Alice A.", "bio": "hi" } } })
    );
}

#[tokio::test]
async fn new_posts_reach_the_authors_followers_only_on_connections_kept_alive_by_pings() {
    // HTTP timeouts far shorter than the wait for a ping: the connections outlive them.
    let stack = Processes::start(
        1,
        &[
            ("GANTRY_HEADER_READ_TIMEOUT_MS", "200"),
            ("GANTRY_IDLE_TIMEOUT_MS", "300"),
            ("GANTRY_SUBGRAPH_SUBSCRIPTION_KEEPALIVE_SECS", "1"),
        ],
    )
    .await;
    let (alice, alice_token) = stack.user("alice").await;
    let (bob, bob_token) = stack.user("bob").await;
    let (_, carol_token) = stack.user("carol").await;
    stack.follow(&bob_token, &alice).await;
    stack.follow(&carol_token, &bob).await;
    let mut bobs = LiveClient::connect(stack.posts(), Some(&bob_token)).await;
    let mut carols = LiveClient::connect(stack.posts(), Some(&carol_token)).await;
    bobs.subscribe("feed", POST_CREATED, json!({})).await;
    carols.subscribe("feed", POST_CREATED, json!({})).await;
    held(stack.posts(), "posts", 2).await;
    while bobs.pings == 0 {
        // Answers pings until one came; nothing else may arrive meanwhile.
        let message = tokio::time::timeout(Duration::from_secs(20), bobs.socket.next())
            .await
            .expect("a ping within 20 s")
            .unwrap()
            .unwrap();
        let message: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        assert_eq!(message["type"], "ping", "{message}");
        bobs.pings += 1;
        bobs.send(json!({ "type": "pong" })).await;
    }

    let alices_post = stack.post(&alice_token, "from alice").await;
    let bob_got = bobs.next("feed").await;
    let bobs_post = stack.post(&bob_token, "from bob").await;
    let carol_got = carols.next("feed").await;

    assert_eq!(
        bob_got,
        json!({ "data": { "postCreated": { "id": alices_post, "body": "from alice", "author": { "id": alice } } } })
    );
    assert_eq!(
        carol_got["data"]["postCreated"]["id"], bobs_post,
        "carol, who does not follow alice, got bob's post first: {carol_got}"
    );
}

/// `gantry_subscriptions_active{subgraph="SUBGRAPH"}` on the process at `address`.
async fn active_subscriptions(address: &str, subgraph: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| {
            line.starts_with(&format!(
                "gantry_subscriptions_active{{subgraph=\"{subgraph}\"}}"
            ))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Waits until the process at `address` holds `n` subscriptions of `subgraph`: each of
/// them then listens for events.
async fn held(address: &str, subgraph: &str, n: usize) {
    eventually(
        &format!("{n} subscriptions held"),
        Duration::from_secs(20),
        || async {
            (active_subscriptions(address, subgraph).await == Some(n as f64)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn refused_subscriptions_say_why_and_a_closed_connection_frees_its_places() {
    let stack = Processes::start(1, &[("GANTRY_SUBGRAPH_SUBSCRIPTIONS_PER_CONNECTION", "2")]).await;
    let (_, token) = stack.user("alice").await;
    let post = stack.post(&token, "a post").await;

    // No viewer, or a token that does not verify: UNAUTHENTICATED, and the subscription ends.
    let mut anonymous = LiveClient::connect(stack.posts(), None).await;
    anonymous.subscribe("a", POST_CREATED, json!({})).await;
    let refused = anonymous.refused("a").await;
    let mut forged = LiveClient::connect(stack.posts(), Some("not-a-token")).await;
    forged.subscribe("f", POST_CREATED, json!({})).await;
    let forged_refused = forged.refused("f").await;
    // A post that does not exist, and an id that is not one.
    forged
        .subscribe(
            "n",
            COMMENT_ADDED,
            json!({ "p": uuid::Uuid::now_v7().to_string() }),
        )
        .await;
    let not_found = forged.refused("n").await;
    forged.subscribe("b", LIKES, json!({ "p": "nope" })).await;
    let bad_id = forged.refused("b").await;

    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    assert_eq!(
        forged_refused["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(
        not_found["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{not_found}"
    );
    assert_eq!(
        bad_id["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{bad_id}"
    );

    // Two subscriptions per connection: the third is refused, saying which limit.
    let mut client = LiveClient::connect(stack.posts(), Some(&token)).await;
    client
        .subscribe("1", COMMENT_ADDED, json!({ "p": post }))
        .await;
    client.subscribe("2", LIKES, json!({ "p": post })).await;
    held(stack.posts(), "posts", 2).await;
    client.subscribe("3", POST_CREATED, json!({})).await;
    let third = client.refused("3").await;
    assert_eq!(
        third["errors"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{third}"
    );
    assert_eq!(
        third["errors"][0]["extensions"]["limit"],
        "subscriptionsPerConnection"
    );

    // Completing one frees its place: a new one is served.
    client.complete("2").await;
    let completed = client.receive().await;
    client.subscribe("4", LIKES, json!({ "p": post })).await;
    held(stack.posts(), "posts", 2).await;
    let liked = graphql(
        stack.posts(),
        "mutation($p: ID!) { likePost(postId: $p) { id } }",
        json!({ "p": post }),
        Some(&token),
    )
    .await;
    let count = client.next("4").await;
    assert_eq!(completed, json!({ "id": "2", "type": "complete" }));
    assert_eq!(liked["errors"], Value::Null, "{liked}");
    assert_eq!(
        count,
        json!({ "data": { "postLikeCountChanged": { "id": post, "likeCount": 1 } } })
    );

    // The process counts what the connection holds, and frees it all when it closes.
    let posts = stack.posts().to_owned();
    assert_eq!(active_subscriptions(&posts, "posts").await, Some(2.0));
    drop(client);
    held(&posts, "posts", 0).await;
}

#[tokio::test]
async fn a_connection_that_never_initialises_is_closed_with_4408() {
    let stack = Processes::start(0, &[]).await;
    let mut silent = LiveClient::open(&stack.users.address).await;

    // The default wait for `connection_init` is 10 s, within `receive`'s 20 s.
    let closed = silent.receive().await;

    assert_eq!(closed, json!({ "type": "close", "code": 4408 }));
}

#[tokio::test]
async fn an_event_written_through_one_posts_replica_reaches_a_subscriber_of_another() {
    let redis =
        std::env::var("GANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test-{}:", uuid::Uuid::now_v7().simple());
    let stack = Processes::start(
        2,
        &[
            ("REDIS_URL", redis.as_str()),
            ("GANTRY_REDIS_PREFIX", prefix.as_str()),
            ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let (a, b) = (&stack.posts[0], &stack.posts[1]);
    for process in [a, b, &stack.users] {
        process.wait_for_log("listening for live events").await;
    }
    let (alice, token) = stack.user("alice").await;
    let post = stack.post(&token, "on replica a").await;
    let mut on_b = LiveClient::connect(&b.address, Some(&token)).await;
    on_b.subscribe("c", COMMENT_ADDED, json!({ "p": post }))
        .await;
    on_b.subscribe("l", LIKES, json!({ "p": post })).await;
    let mut on_users = LiveClient::connect(&stack.users.address, None).await;
    on_users
        .subscribe("p", PROFILE, json!({ "u": alice }))
        .await;
    held(&b.address, "posts", 2).await;
    held(&stack.users.address, "users", 1).await;

    let added = graphql(
        &a.address,
        ADD_COMMENT,
        json!({ "p": post, "b": "through a" }),
        Some(&token),
    )
    .await;
    let comment = on_b.next("c").await;
    graphql(
        &a.address,
        "mutation($p: ID!) { likePost(postId: $p) { id } }",
        json!({ "p": post }),
        Some(&token),
    )
    .await;
    let likes = on_b.next("l").await;
    graphql(
        &stack.users.address,
        "mutation { updateProfile(input: { bio: \"over redis\" }) { id } }",
        json!({}),
        Some(&token),
    )
    .await;
    let profile = on_users.next("p").await;

    assert_eq!(
        comment["data"]["commentAdded"]["id"], added["data"]["addComment"]["id"],
        "{comment}"
    );
    assert_eq!(comment["data"]["commentAdded"]["body"], "through a");
    assert_eq!(
        likes,
        json!({ "data": { "postLikeCountChanged": { "id": post, "likeCount": 1 } } })
    );
    assert_eq!(profile["data"]["profileUpdated"]["bio"], "over redis");
}
