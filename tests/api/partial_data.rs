//! Partial data in the three-process shape: with one subgraph down, or one row pointing at
//! an account that is gone, a client still gets everything else. Every field that joins
//! the two subgraphs is nullable (`Post.author`, `Comment.author`, `UserEdge.node`, the
//! `User` fields the posts subgraph adds, and the posts subgraph's root query fields), so
//! only that field is `null`, with an error.

use serde_json::{Value, json};

use crate::helpers::{Backend, Process, REGISTER, fresh_database, start};

/// A client of one `gantry gateway`.
struct Client {
    url: String,
    http: reqwest::Client,
}

impl Client {
    fn of(gateway: &Process) -> Self {
        Self {
            url: format!("http://{}/graphql", gateway.address),
            http: reqwest::Client::new(),
        }
    }

    async fn query(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Runs a mutation that must succeed; its `data`.
    async fn change(&self, mutation: &str, variables: Value, token: Option<&str>) -> Value {
        let body = self.query(mutation, variables, token).await;
        assert_eq!(body["errors"], Value::Null, "{mutation}: {body}");
        body["data"].clone()
    }

    /// Registers `name`; its id and access token.
    async fn register(&self, name: &str) -> (String, String) {
        let input = json!({ "input": {
            "username": name,
            "email": format!("{name}@example.com"),
            "password": "correct horse battery",
            "displayName": name.to_uppercase(),
        }});
        let data = self.change(REGISTER, input, None).await;
        let payload = &data["register"];
        (
            payload["user"]["id"].as_str().unwrap().to_owned(),
            payload["accessToken"].as_str().unwrap().to_owned(),
        )
    }
}

/// `gantry subgraph users`, `gantry subgraph posts` and a `gantry gateway` in front of them.
struct Stack {
    users: Process,
    posts: Process,
    gateway: Process,
}

async fn stack(env: &[(&str, &str)]) -> Stack {
    let users = start(&["subgraph", "users"], env).await;
    let posts = start(&["subgraph", "posts"], env).await;
    let users_url = format!("users=http://{}/graphql", users.address);
    let posts_url = format!("posts=http://{}/graphql", posts.address);
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &users_url,
            "--subgraph",
            &posts_url,
        ],
        env,
    )
    .await;
    Stack {
        users,
        posts,
        gateway,
    }
}

/// Alice's profile with everything the posts subgraph adds to it, and the latest posts
/// with their authors and commenters from the users subgraph: one request, both subgraphs.
const HOME: &str = "query {
  userByUsername(username: \"alice\") {
    username displayName followerCount followingCount viewerFollows
    posts(first: 5) { edges { node { body } } }
    followers(first: 5) { edges { node { username } } }
  }
  latestPosts(first: 5) {
    edges { node {
      body likeCount author { username }
      comments(first: 5) { edges { node { body author { username } } } }
    } }
  }
}";

fn subgraph_down(name: &str) -> Value {
    json!({
        "message": format!("Request to subgraph \"{name}\" failed."),
        "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": name}
    })
}

#[tokio::test]
async fn with_either_subgraph_down_or_an_account_gone_the_rest_of_the_data_comes_back() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let data = data_dir.path().display().to_string();
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    // Two stacks over one database: the first will lose its users subgraph, the second
    // its posts subgraph.
    let mut first = stack(&env).await;
    let mut second = stack(&env).await;
    let client = Client::of(&first.gateway);
    let (alice, alice_token) = client.register("alice").await;
    let (_, bob_token) = client.register("bob").await;
    let created = client
        .change(
            "mutation { createPost(input: { body: \"hello\" }) { id } }",
            json!({}),
            Some(&alice_token),
        )
        .await;
    let post = created["createPost"]["id"].as_str().unwrap().to_owned();
    for mutation in [
        "mutation($id: ID!) { likePost(postId: $id) { id } }",
        "mutation($id: ID!) { addComment(postId: $id, body: \"nice\") { id } }",
    ] {
        client
            .change(mutation, json!({ "id": post }), Some(&bob_token))
            .await;
    }
    client
        .change(
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            json!({ "id": alice }),
            Some(&bob_token),
        )
        .await;
    // Rows an account left behind when it was deleted: its newest post, and a follow.
    let gone = uuid::Uuid::now_v7();
    let db = sea_orm::Database::connect(database.as_str()).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!(
            "INSERT INTO posts (id, author_id, body, created_at) VALUES ('{}', '{gone}', 'left behind', now());
             INSERT INTO follows (id, follower_id, followee_id, created_at) VALUES ('{}', '{gone}', '{alice}', now());",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        ),
    )
    .await
    .unwrap();
    db.close().await.unwrap();

    let everything_up = client.query(HOME, json!({}), None).await;
    first.users.child.kill().await.unwrap();
    let users_down = client.query(HOME, json!({}), None).await;
    second.posts.child.kill().await.unwrap();
    let posts_down = Client::of(&second.gateway)
        .query(HOME, json!({}), None)
        .await;

    let missing_username = |path: Value| {
        json!({
            "message": "Cannot return null for non-nullable field User.username.",
            "path": path
        })
    };
    assert_eq!(
        everything_up,
        json!({
            "data": {
                "userByUsername": {
                    "username": "alice", "displayName": "ALICE",
                    "followerCount": 2, "followingCount": 0, "viewerFollows": false,
                    "posts": {"edges": [{"node": {"body": "hello"}}]},
                    "followers": {"edges": [
                        {"node": null},
                        {"node": {"username": "bob"}}
                    ]}
                },
                "latestPosts": {"edges": [
                    {"node": {
                        "body": "left behind", "likeCount": 0, "author": null,
                        "comments": {"edges": []}
                    }},
                    {"node": {
                        "body": "hello", "likeCount": 1, "author": {"username": "alice"},
                        "comments": {"edges": [{"node": {"body": "nice", "author": {"username": "bob"}}}]}
                    }}
                ]}
            },
            "errors": [
                missing_username(json!(["latestPosts", "edges", 0, "node", "author", "username"])),
                missing_username(json!(["userByUsername", "followers", "edges", 0, "node", "username"]))
            ]
        }),
        "one reference to a deleted account nulls that reference only"
    );
    assert_eq!(
        users_down,
        json!({
            "data": {
                "userByUsername": null,
                "latestPosts": {"edges": [
                    {"node": {
                        "body": "left behind", "likeCount": 0, "author": null,
                        "comments": {"edges": []}
                    }},
                    {"node": {
                        "body": "hello", "likeCount": 1, "author": null,
                        "comments": {"edges": [{"node": {"body": "nice", "author": null}}]}
                    }}
                ]}
            },
            "errors": [subgraph_down("users"), subgraph_down("users")]
        }),
        "the users subgraph down"
    );
    assert_eq!(
        posts_down,
        json!({
            "data": {
                "userByUsername": {
                    "username": "alice", "displayName": "ALICE",
                    "followerCount": null, "followingCount": null, "viewerFollows": null,
                    "posts": null, "followers": null
                },
                "latestPosts": null
            },
            "errors": [subgraph_down("posts"), subgraph_down("posts")]
        }),
        "the posts subgraph down"
    );
    drop((first, second));
}
