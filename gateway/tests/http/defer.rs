//! `@defer` through the gateway over real sockets: two federation subgraphs this test
//! serves (posts, and users owning the authors' fields), the gateway composed from them,
//! and responses read part by part as a client reads `multipart/mixed`.

use std::sync::Arc;

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use axum::routing::post;
use axum::{Json, Router};
use gantry_gateway::app::{GatewayApp, GatewaySettings, SubgraphUrl, SupergraphSource, TokenKeys};
use gantry_identity::keys::{KeySettings, SigningKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

/// The posts subgraph: posts, and their authors as `User` references.
struct PostsQuery;

struct Post {
    id: &'static str,
    title: &'static str,
    author: &'static str,
}

const POSTS: [Post; 2] = [
    Post {
        id: "p1",
        title: "Hello",
        author: "ann",
    },
    Post {
        id: "p2",
        title: "Again",
        author: "broken",
    },
];

#[Object]
impl Post {
    async fn id(&self) -> ID {
        ID(self.id.to_owned())
    }
    async fn title(&self) -> &str {
        self.title
    }
    async fn author(&self) -> UserReference {
        UserReference {
            id: ID(self.author.to_owned()),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "User", unresolvable = "id")]
struct UserReference {
    id: ID,
}

#[Object(name = "Query")]
impl PostsQuery {
    async fn post(&self, id: ID) -> Option<&'static Post> {
        POSTS.iter().find(|post| post.id == id.as_str())
    }
    async fn posts(&self) -> &'static [Post] {
        &POSTS
    }
}

/// The users subgraph. Its answers wait for a permit from the test's gate, so a test can
/// read the primary part while the deferred one is still being worked on. The user
/// `broken` fails: its non-null `username` with an error, its nullable `bio` too.
struct UsersQuery;

struct User {
    id: String,
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    async fn username(&self) -> async_graphql::Result<String> {
        match self.id.as_str() {
            "broken" => Err("the username could not be read".into()),
            id => Ok(format!("{id}-name")),
        }
    }
    async fn bio(&self) -> async_graphql::Result<Option<String>> {
        match self.id.as_str() {
            "broken" => Err("the bio could not be read".into()),
            id => Ok(Some(format!("{id} writes"))),
        }
    }
}

#[Object(name = "Query")]
impl UsersQuery {
    #[graphql(entity)]
    async fn find_user_by_id(&self, context: &Context<'_>, id: ID) -> async_graphql::Result<User> {
        let gate = context.data::<Arc<Semaphore>>()?;
        gate.acquire().await?.forget();
        Ok(User { id: id.0 })
    }
    /// Composition needs a root field per subgraph.
    async fn user_count(&self) -> i32 {
        2
    }
}

async fn serve<Q: async_graphql::ObjectType + 'static>(
    schema: Schema<Q, EmptyMutation, EmptySubscription>,
) -> String {
    let router = Router::new().route(
        "/graphql",
        post(move |Json(request): Json<async_graphql::Request>| {
            let schema = schema.clone();
            async move { Json(schema.execute(request).await) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

struct Stack {
    base: String,
    /// Each permit lets the users subgraph answer one entity.
    gate: Arc<Semaphore>,
    _keys: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn stack() -> Stack {
    let gate = Arc::new(Semaphore::new(0));
    let posts = serve(
        Schema::build(PostsQuery, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
    )
    .await;
    let users = serve(
        Schema::build(UsersQuery, EmptyMutation, EmptySubscription)
            .enable_federation()
            .data(gate.clone())
            .finish(),
    )
    .await;
    let keys = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::load(&KeySettings {
        data_dir: keys.path().to_path_buf(),
        ..KeySettings::default()
    })
    .expect("a generated key");
    let gateway = GatewayApp::builder(GatewaySettings::default())
        .supergraph(SupergraphSource::Subgraphs(vec![
            SubgraphUrl::new("posts", posts),
            SubgraphUrl::new("users", users),
        ]))
        .token_keys(TokenKeys::Keys(vec![key.public.clone()]))
        .build()
        .await
        .expect("the gateway builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway.run(listener, async {
        let _ = stopped.await;
    }));
    Stack {
        base,
        gate,
        _keys: keys,
        _stop: stop,
    }
}

/// A `multipart/mixed` body read part by part, as it arrives.
struct Parts {
    response: reqwest::Response,
    buffer: String,
}

impl Parts {
    /// The next part's JSON payload; `None` at the closing boundary.
    async fn next(&mut self) -> Option<Value> {
        const DELIMITER: &str = "\r\n--graphql";
        loop {
            // The body opens with a delimiter; each part ends with one.
            if let Some(start) = self.buffer.find(DELIMITER) {
                let after = start + DELIMITER.len();
                if self.buffer[after..].starts_with("--") {
                    return None;
                }
                if let Some(end) = self.buffer[after..].find(DELIMITER) {
                    let part = self.buffer[after..after + end].to_owned();
                    self.buffer.drain(..after + end);
                    let (headers, body) = part.split_once("\r\n\r\n").expect("part headers");
                    assert!(
                        headers.contains("content-type: application/json"),
                        "{headers}"
                    );
                    return Some(serde_json::from_str(body).expect("a JSON part"));
                }
            }
            let chunk = self.response.chunk().await.expect("the body streams")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

impl Stack {
    async fn post(&self, accept: &str, query: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .header("accept", accept)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("the gateway answers")
    }

    async fn parts(&self, accept: &str, query: &str) -> Parts {
        let response = self.post(accept, query).await;
        assert_eq!(response.status(), 200);
        Parts {
            response,
            buffer: String::new(),
        }
    }
}

const APOLLO_ACCEPT: &str = "multipart/mixed;deferSpec=20220824,application/json";

#[tokio::test]
async fn a_deferred_field_of_another_subgraph_arrives_in_a_later_part_with_its_path_and_label() {
    let stack = stack().await;
    let mut parts = stack
        .parts(
            APOLLO_ACCEPT,
            r#"{ post(id: "p1") { id title author { id ... @defer(label: "who") { username } } } }"#,
        )
        .await;
    assert_eq!(
        parts.response.headers()["content-type"],
        "multipart/mixed; boundary=\"graphql\"; deferSpec=20220824"
    );

    // The users subgraph has not answered (it may not yet): the primary part is here.
    let primary = parts.next().await.expect("the primary part");
    assert_eq!(
        primary,
        json!({"data": {"post": {"id": "p1", "title": "Hello", "author": {"id": "ann"}}}, "hasNext": true})
    );
    stack.gate.add_permits(1);
    let deferred = parts.next().await.expect("the deferred part");
    assert_eq!(
        deferred,
        json!({"incremental": [{"data": {"username": "ann-name"}, "path": ["post", "author"], "label": "who"}], "hasNext": false})
    );
    assert_eq!(parts.next().await, None);
}

#[tokio::test]
async fn a_deferred_fragment_in_a_list_is_delivered_to_every_item_and_its_errors_with_it() {
    let stack = stack().await;
    stack.gate.add_permits(10);
    let mut parts = stack
        .parts(
            APOLLO_ACCEPT,
            "{ posts { title author { ... @defer { bio } } } }",
        )
        .await;
    assert_eq!(
        parts.next().await,
        Some(json!({"data": {"posts": [
            {"title": "Hello", "author": {}},
            {"title": "Again", "author": {}}
        ]}, "hasNext": true}))
    );
    let deferred = parts.next().await.expect("the deferred part");
    assert_eq!(deferred["hasNext"], false);
    let incremental = &deferred["incremental"];
    assert_eq!(incremental[0]["path"], json!(["posts", 0, "author"]));
    assert_eq!(incremental[0]["data"], json!({"bio": "ann writes"}));
    assert_eq!(incremental[1]["path"], json!(["posts", 1, "author"]));
    assert_eq!(incremental[1]["data"], json!({"bio": null}));
    let errors: Vec<&Value> = incremental
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["errors"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(errors.len(), 1, "{deferred}");
    assert_eq!(errors[0]["message"], "the bio could not be read");
    assert_eq!(parts.next().await, None);
}

#[tokio::test]
async fn a_null_in_a_non_null_deferred_field_nulls_only_the_deferred_part() {
    let stack = stack().await;
    stack.gate.add_permits(10);
    let mut parts = stack
        .parts(
            APOLLO_ACCEPT,
            r#"{ post(id: "p2") { title author { id ... @defer(label: "name") { username } } } }"#,
        )
        .await;
    assert_eq!(
        parts.next().await,
        Some(
            json!({"data": {"post": {"title": "Again", "author": {"id": "broken"}}}, "hasNext": true})
        )
    );
    let deferred = parts.next().await.expect("the deferred part");
    let entry = &deferred["incremental"][0];
    assert_eq!(entry["path"], json!(["post", "author"]));
    assert_eq!(entry["label"], "name");
    assert_eq!(entry["data"], Value::Null, "{deferred}");
    assert!(
        entry["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty()),
        "{deferred}"
    );
}

#[tokio::test]
async fn the_current_format_announces_pending_parts_and_completes_them_by_id_for_a_multipart_only_client()
 {
    let stack = stack().await;
    stack.gate.add_permits(10);
    let mut parts = stack
        .parts(
            "multipart/mixed; incrementalSpec=v0.2",
            r#"{ post(id: "p1") { title ... @defer(label: "who") { author { username } } } }"#,
        )
        .await;
    assert_eq!(
        parts.response.headers()["content-type"],
        "multipart/mixed; boundary=\"graphql\"; incrementalSpec=v0.2"
    );
    assert_eq!(
        parts.next().await,
        Some(json!({
            "data": {"post": {"title": "Hello"}},
            "pending": [{"id": "0", "path": ["post"], "label": "who"}],
            "hasNext": true
        }))
    );
    assert_eq!(
        parts.next().await,
        Some(json!({
            "incremental": [{"id": "0", "data": {"author": {"username": "ann-name"}}}],
            "completed": [{"id": "0"}],
            "hasNext": false
        }))
    );
}

#[tokio::test]
async fn a_client_that_accepts_no_incremental_format_gets_the_whole_answer() {
    let stack = stack().await;
    stack.gate.add_permits(10);
    let query = r#"{ post(id: "p1") { title ... @defer { author { username } } } }"#;
    let response = stack.post("application/json", query).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"data": {"post": {"title": "Hello", "author": {"username": "ann-name"}}}})
    );

    // `if: false` inlines, whatever the client accepts.
    let response = stack
        .post(
            APOLLO_ACCEPT,
            r#"{ post(id: "p1") { title ... @defer(if: false) { author { username } } } }"#,
        )
        .await;
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"data": {"post": {"title": "Hello", "author": {"username": "ann-name"}}}})
    );
}
