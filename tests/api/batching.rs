//! The batching proof: a page costs the same number of SQL statements however long it is.
//! The posts subgraph runs over a connection that counts every statement it sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gantry::cli::SubgraphName;
use gantry_kit::db::DatabaseSettings;
use gantry_kit::jwt::TokenVerifier;
use gantry_kit::keys::{KeySettings, SigningKey};
use gantry_posts::{PostsConfig, PostsSubgraph};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fresh_database};

crate::on_both_backends!(a_feed_page_and_an_entity_batch_cost_the_same_statements_at_any_size);

const FEED: &str = "query($n: Int!) { feed(first: $n) { edges { node { id body author { id }
    likeCount commentCount viewerHasLiked comments(first: 3) { edges { node { id body author { id } } } } } } } }";
const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Post { id
    author { id } likeCount commentCount viewerHasLiked comments(first: 3) { edges { node { id } } } } } }";

async fn a_feed_page_and_an_entity_batch_cost_the_same_statements_at_any_size(backend: Backend) {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(backend, data_dir.path()).await;
    let users = TestApp::start(SubgraphName::Users, data_dir.clone(), url.clone(), &[]).await;

    let statements = Arc::new(AtomicUsize::new(0));
    let mut db = gantry_kit::db::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: None,
    })
    .await
    .unwrap();
    // The users subgraph made its own tables only; the posts subgraph built here by hand
    // needs its own too.
    gantry_migrations::apply_pending_in(&db, gantry_migrations::Scope::Posts)
        .await
        .unwrap();
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let key = SigningKey::load(&KeySettings {
        data_dir: data_dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    let verifier = Arc::new(
        TokenVerifier::new(std::slice::from_ref(&key.public), &Default::default()).unwrap(),
    );
    // A generous gathering window: a debug build on a busy CI machine can take longer than
    // the 1 ms default to ask for a hundred entities' fields, and this test is about which
    // statements run, not how fast.
    let config = PostsConfig {
        batch_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    let subgraph = PostsSubgraph::new(db, verifier, config);
    let posts = TestApp::serve(
        gantry_kit::server::with_common_layers(subgraph.router()),
        None,
        data_dir,
        url,
    )
    .await;

    let viewer = users.register("viewer").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let author = users.register("author").await;
    let (author_id, author_token) = (
        author["user"]["id"].clone(),
        author["accessToken"].as_str().unwrap().to_owned(),
    );
    posts
        .graphql(
            "mutation($u: ID!) { follow(userId: $u) { id } }",
            json!({ "u": author_id }),
            Some(&viewer),
        )
        .await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let created = posts
            .graphql(
                "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
                json!({ "b": format!("post {i}") }),
                Some(&author_token),
            )
            .await;
        let id = created["data"]["createPost"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for c in 0..4 {
            let token = if c % 2 == 0 { &viewer } else { &author_token };
            posts
                .graphql(
                    "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }",
                    json!({ "p": id, "b": format!("comment {c}") }),
                    Some(token),
                )
                .await;
        }
        if i % 2 == 0 {
            posts
                .graphql(
                    "mutation($p: ID!) { likePost(postId: $p) { id } }",
                    json!({ "p": id }),
                    Some(&viewer),
                )
                .await;
        }
        ids.push(id);
    }

    let measure = async |query: &str, vars: Value| -> (usize, Value) {
        statements.store(0, Ordering::SeqCst);
        let response = posts.graphql(query, vars, Some(&viewer)).await;
        assert_eq!(response["errors"], Value::Null, "{response}");
        (statements.load(Ordering::SeqCst), response)
    };

    let (small, small_page) = measure(FEED, json!({ "n": 5 })).await;
    let (large, large_page) = measure(FEED, json!({ "n": 50 })).await;
    let edges = large_page["data"]["feed"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 50);
    assert_eq!(
        small_page["data"]["feed"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let newest = &edges[0]["node"];
    assert_eq!(newest["body"], "post 59");
    assert_eq!(newest["commentCount"], 4);
    assert_eq!(newest["likeCount"], 0);
    assert_eq!(edges[1]["node"]["likeCount"], 1);
    assert_eq!(edges[1]["node"]["viewerHasLiked"], true);
    assert_eq!(newest["comments"]["edges"].as_array().unwrap().len(), 3);
    println!("feed(first: 5): {small} statements; feed(first: 50): {large} statements");
    assert_eq!(small, large, "a longer page must not cost more statements");

    let reps = |n: usize| json!({ "r": ids.iter().cycle().take(n).map(|id| json!({ "__typename": "Post", "id": id })).collect::<Vec<_>>() });
    let (ten, _) = measure(ENTITIES, reps(10)).await;
    let (hundred, response) = measure(ENTITIES, reps(100)).await;
    assert_eq!(response["data"]["_entities"].as_array().unwrap().len(), 100);
    assert_eq!(response["data"]["_entities"][99]["commentCount"], 4);
    println!("_entities x10: {ten} statements; _entities x100: {hundred} statements");
    assert_eq!(
        ten, hundred,
        "100 representations must not cost more statements than 10"
    );
}
