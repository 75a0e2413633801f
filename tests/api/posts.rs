//! The posts subgraph through HTTP: every operation and its authorization failure,
//! pagination edges, idempotency, concurrent likes, bodies, and account-deletion
//! propagation through the outbox.

use serde_json::{Value, json};

use crate::helpers::{Backend, Stack, TestApp, error_code};
use gantry::cli::SubgraphName;

crate::on_both_backends!(
    posts_are_created_edited_and_deleted_by_their_author_only,
    comments_are_deleted_by_their_author_or_the_posts_author,
    likes_are_idempotent_and_counted,
    follows_are_idempotent_and_feed_the_feed,
    pagination_covers_empty_single_last_and_stale_pages,
    concurrent_likes_are_all_counted,
    bodies_are_trimmed_and_bounded,
    a_deleted_accounts_content_goes_even_if_posts_was_down,
);

const POST: &str = "query($id: ID!) { post(id: $id) { id body editedAt author { id } likeCount commentCount viewerHasLiked } }";

async fn posts_are_created_edited_and_deleted_by_their_author_only(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (alice_id, alice) = stack.user("alice").await;
    let (_, bob) = stack.user("bob").await;

    let anonymous = stack
        .posts
        .graphql(
            "mutation { createPost(input: { body: \"hi\" }) { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));

    let id = stack.post(&alice, "first post").await;
    let read = stack.posts.graphql(POST, json!({ "id": id }), None).await;
    assert_eq!(
        read["data"]["post"],
        json!({ "id": id, "body": "first post", "editedAt": null, "author": { "id": alice_id },
                "likeCount": 0, "commentCount": 0, "viewerHasLiked": false })
    );

    let edit = "mutation($id: ID!, $b: String!) { editPost(id: $id, body: $b) { body editedAt } }";
    let by_bob = stack
        .posts
        .graphql(edit, json!({ "id": id, "b": "hijacked" }), Some(&bob))
        .await;
    assert_eq!(error_code(&by_bob), Some("FORBIDDEN"));
    let by_alice = stack
        .posts
        .graphql(edit, json!({ "id": id, "b": "edited" }), Some(&alice))
        .await;
    assert_eq!(by_alice["data"]["editPost"]["body"], "edited");
    assert!(by_alice["data"]["editPost"]["editedAt"].is_string());

    let delete = "mutation($id: ID!) { deletePost(id: $id) }";
    let by_bob = stack
        .posts
        .graphql(delete, json!({ "id": id }), Some(&bob))
        .await;
    assert_eq!(error_code(&by_bob), Some("FORBIDDEN"));
    let by_alice = stack
        .posts
        .graphql(delete, json!({ "id": id }), Some(&alice))
        .await;
    assert_eq!(by_alice["data"]["deletePost"], true);
    assert_eq!(
        stack.posts.graphql(POST, json!({ "id": id }), None).await["data"]["post"],
        Value::Null
    );

    let again = stack
        .posts
        .graphql(delete, json!({ "id": id }), Some(&alice))
        .await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"));
    let unknown = stack
        .posts
        .graphql(
            edit,
            json!({ "id": uuid::Uuid::now_v7().to_string(), "b": "x" }),
            Some(&alice),
        )
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"));
    let malformed = stack.posts.graphql(POST, json!({ "id": "42" }), None).await;
    assert_eq!(error_code(&malformed), Some("BAD_USER_INPUT"));
}

async fn comments_are_deleted_by_their_author_or_the_posts_author(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (_, alice) = stack.user("alice").await;
    let (bob_id, bob) = stack.user("bob").await;
    let (_, carol) = stack.user("carol").await;
    let post = stack.post(&alice, "a post").await;

    let add = "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id body author { id } post { id } } }";
    let first = stack
        .posts
        .graphql(add, json!({ "p": post, "b": " nice " }), Some(&bob))
        .await;
    assert_eq!(first["data"]["addComment"]["body"], "nice");
    assert_eq!(first["data"]["addComment"]["author"]["id"], bob_id.as_str());
    assert_eq!(first["data"]["addComment"]["post"]["id"], post.as_str());
    let second = stack
        .posts
        .graphql(add, json!({ "p": post, "b": "second" }), Some(&bob))
        .await;
    let (c1, c2) = (
        first["data"]["addComment"]["id"].clone(),
        second["data"]["addComment"]["id"].clone(),
    );

    let unknown = stack
        .posts
        .graphql(
            add,
            json!({ "p": uuid::Uuid::now_v7().to_string(), "b": "x" }),
            Some(&bob),
        )
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"));
    let anonymous = stack
        .posts
        .graphql(add, json!({ "p": post, "b": "x" }), None)
        .await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));

    let count = stack.posts.graphql(POST, json!({ "id": post }), None).await;
    assert_eq!(count["data"]["post"]["commentCount"], 2);

    let delete = "mutation($id: ID!) { deleteComment(id: $id) }";
    let by_carol = stack
        .posts
        .graphql(delete, json!({ "id": c1 }), Some(&carol))
        .await;
    assert_eq!(error_code(&by_carol), Some("FORBIDDEN"));
    let by_post_author = stack
        .posts
        .graphql(delete, json!({ "id": c1 }), Some(&alice))
        .await;
    assert_eq!(by_post_author["data"]["deleteComment"], true);
    let by_comment_author = stack
        .posts
        .graphql(delete, json!({ "id": c2 }), Some(&bob))
        .await;
    assert_eq!(by_comment_author["data"]["deleteComment"], true);
    let gone = stack
        .posts
        .graphql(delete, json!({ "id": c2 }), Some(&bob))
        .await;
    assert_eq!(error_code(&gone), Some("NOT_FOUND"));
    assert_eq!(
        stack.posts.graphql(POST, json!({ "id": post }), None).await["data"]["post"]["commentCount"],
        0
    );
}

async fn likes_are_idempotent_and_counted(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (_, alice) = stack.user("alice").await;
    let (_, bob) = stack.user("bob").await;
    let post = stack.post(&alice, "like me").await;
    let like = "mutation($p: ID!) { likePost(postId: $p) { likeCount viewerHasLiked } }";
    let unlike = "mutation($p: ID!) { unlikePost(postId: $p) { likeCount viewerHasLiked } }";

    for _ in 0..2 {
        let liked = stack
            .posts
            .graphql(like, json!({ "p": post }), Some(&bob))
            .await;
        assert_eq!(
            liked["data"]["likePost"],
            json!({ "likeCount": 1, "viewerHasLiked": true }),
            "{liked}"
        );
    }
    let as_alice = stack
        .posts
        .graphql(POST, json!({ "id": post }), Some(&alice))
        .await;
    assert_eq!(as_alice["data"]["post"]["viewerHasLiked"], false);
    let anonymous = stack.posts.graphql(POST, json!({ "id": post }), None).await;
    assert_eq!(anonymous["data"]["post"]["viewerHasLiked"], false);
    assert_eq!(anonymous["data"]["post"]["likeCount"], 1);

    for _ in 0..2 {
        let unliked = stack
            .posts
            .graphql(unlike, json!({ "p": post }), Some(&bob))
            .await;
        assert_eq!(
            unliked["data"]["unlikePost"],
            json!({ "likeCount": 0, "viewerHasLiked": false })
        );
    }
    let unknown = stack
        .posts
        .graphql(
            like,
            json!({ "p": uuid::Uuid::now_v7().to_string() }),
            Some(&bob),
        )
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"));
    let anonymous = stack.posts.graphql(like, json!({ "p": post }), None).await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));
}

async fn follows_are_idempotent_and_feed_the_feed(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (alice_id, alice) = stack.user("alice").await;
    let (bob_id, bob) = stack.user("bob").await;
    let (_, carol) = stack.user("carol").await;
    let follow = "mutation($u: ID!) { follow(userId: $u) { id followerCount viewerFollows } }";

    for _ in 0..2 {
        let followed = stack
            .posts
            .graphql(follow, json!({ "u": bob_id }), Some(&alice))
            .await;
        assert_eq!(
            followed["data"]["follow"],
            json!({ "id": bob_id, "followerCount": 1, "viewerFollows": true })
        );
    }
    let itself = stack
        .posts
        .graphql(follow, json!({ "u": alice_id }), Some(&alice))
        .await;
    assert_eq!(error_code(&itself), Some("BAD_USER_INPUT"));
    assert_eq!(itself["errors"][0]["extensions"]["field"], "userId");

    let lists = stack
        .posts
        .graphql(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id followerCount followingCount viewerFollows
                followers { edges { node { id } } } following { edges { node { id } } } } } }",
            json!({ "r": [{ "__typename": "User", "id": alice_id }, { "__typename": "User", "id": bob_id }] }),
            Some(&carol),
        )
        .await;
    assert_eq!(
        lists["data"]["_entities"],
        json!([
            { "id": alice_id, "followerCount": 0, "followingCount": 1, "viewerFollows": false,
              "followers": { "edges": [] }, "following": { "edges": [{ "node": { "id": bob_id } }] } },
            { "id": bob_id, "followerCount": 1, "followingCount": 0, "viewerFollows": false,
              "followers": { "edges": [{ "node": { "id": alice_id } }] }, "following": { "edges": [] } },
        ]),
        "{lists}"
    );

    let own = stack.post(&alice, "alice's").await;
    let bobs = stack.post(&bob, "bob's").await;
    let _carols = stack.post(&carol, "carol's").await;
    let feed = "{ feed(first: 10) { edges { node { id body } } pageInfo { hasNextPage } } }";
    let alice_feed = stack.posts.graphql(feed, json!({}), Some(&alice)).await;
    assert_eq!(
        alice_feed["data"]["feed"]["edges"],
        json!([{ "node": { "id": bobs, "body": "bob's" } }, { "node": { "id": own, "body": "alice's" } }]),
        "newest first, own and followed only"
    );
    assert_eq!(
        error_code(&stack.posts.graphql(feed, json!({}), None).await),
        Some("UNAUTHENTICATED")
    );

    let unfollow = "mutation($u: ID!) { unfollow(userId: $u) { followerCount viewerFollows } }";
    for _ in 0..2 {
        let r = stack
            .posts
            .graphql(unfollow, json!({ "u": bob_id }), Some(&alice))
            .await;
        assert_eq!(
            r["data"]["unfollow"],
            json!({ "followerCount": 0, "viewerFollows": false })
        );
    }
    let alice_feed = stack.posts.graphql(feed, json!({}), Some(&alice)).await;
    assert_eq!(
        alice_feed["data"]["feed"]["edges"],
        json!([{ "node": { "id": own, "body": "alice's" } }])
    );
}

async fn pagination_covers_empty_single_last_and_stale_pages(backend: Backend) {
    let stack = Stack::new(backend).await;
    let latest = "query($f: Int!, $a: String) { latestPosts(first: $f, after: $a) { edges { cursor node { body } } pageInfo { hasNextPage endCursor } } }";
    let empty = stack.posts.graphql(latest, json!({ "f": 5 }), None).await;
    assert_eq!(
        empty["data"]["latestPosts"],
        json!({ "edges": [], "pageInfo": { "hasNextPage": false, "endCursor": null } })
    );

    let (_, alice) = stack.user("alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(stack.post(&alice, &format!("post {i}")).await);
    }
    let bodies = |r: &Value| -> Vec<String> {
        r["data"]["latestPosts"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["body"].as_str().unwrap().to_owned())
            .collect()
    };

    let exactly = stack.posts.graphql(latest, json!({ "f": 5 }), None).await;
    assert_eq!(
        bodies(&exactly),
        ["post 4", "post 3", "post 2", "post 1", "post 0"]
    );
    assert_eq!(
        exactly["data"]["latestPosts"]["pageInfo"]["hasNextPage"],
        false
    );

    let page1 = stack.posts.graphql(latest, json!({ "f": 2 }), None).await;
    assert_eq!(bodies(&page1), ["post 4", "post 3"]);
    assert_eq!(
        page1["data"]["latestPosts"]["pageInfo"]["hasNextPage"],
        true
    );
    let cursor = page1["data"]["latestPosts"]["pageInfo"]["endCursor"].clone();
    assert_eq!(cursor, page1["data"]["latestPosts"]["edges"][1]["cursor"]);

    // The post the cursor points at is deleted: the cursor still continues after it.
    let deleted = stack
        .posts
        .graphql(
            "mutation($id: ID!) { deletePost(id: $id) }",
            json!({ "id": ids[3] }),
            Some(&alice),
        )
        .await;
    assert_eq!(deleted["data"]["deletePost"], true);
    let page2 = stack
        .posts
        .graphql(latest, json!({ "f": 2, "a": cursor }), None)
        .await;
    assert_eq!(bodies(&page2), ["post 2", "post 1"]);
    assert_eq!(
        page2["data"]["latestPosts"]["pageInfo"]["hasNextPage"],
        true
    );
    let last = stack
        .posts
        .graphql(
            latest,
            json!({ "f": 2, "a": page2["data"]["latestPosts"]["pageInfo"]["endCursor"] }),
            None,
        )
        .await;
    assert_eq!(bodies(&last), ["post 0"]);
    assert_eq!(
        last["data"]["latestPosts"]["pageInfo"]["hasNextPage"],
        false
    );

    for (first, after, field) in [
        (0, Value::Null, "first"),
        (101, Value::Null, "first"),
        (5, json!("garbage"), "after"),
    ] {
        let bad = stack
            .posts
            .graphql(latest, json!({ "f": first, "a": after }), None)
            .await;
        assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"), "{bad}");
        assert_eq!(bad["errors"][0]["extensions"]["field"], field);
    }
    let hundred = stack.posts.graphql(latest, json!({ "f": 100 }), None).await;
    assert_eq!(bodies(&hundred).len(), 4);
}

async fn concurrent_likes_are_all_counted(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (_, author) = stack.user("author").await;
    let post = stack.post(&author, "popular").await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(stack.user(&format!("fan_{i}")).await.1);
    }
    let like = "mutation($p: ID!) { likePost(postId: $p) { id } }";
    let results = futures::future::join_all(tokens.iter().flat_map(|t| {
        // Each fan likes twice at once: the second must not count.
        [
            stack.posts.graphql(like, json!({ "p": post }), Some(t)),
            stack.posts.graphql(like, json!({ "p": post }), Some(t)),
        ]
    }))
    .await;
    for result in &results {
        assert_eq!(result["errors"], Value::Null, "{result}");
    }
    let read = stack.posts.graphql(POST, json!({ "id": post }), None).await;
    assert_eq!(read["data"]["post"]["likeCount"], 12);
}

async fn bodies_are_trimmed_and_bounded(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (_, alice) = stack.user("alice").await;
    let create = "mutation($b: String!) { createPost(input: { body: $b }) { body } }";
    let trimmed = stack
        .posts
        .graphql(create, json!({ "b": "  hello \n" }), Some(&alice))
        .await;
    assert_eq!(trimmed["data"]["createPost"]["body"], "hello");
    for body in ["", "   ", &"x".repeat(2001)] {
        let bad = stack
            .posts
            .graphql(create, json!({ "b": body }), Some(&alice))
            .await;
        assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
        assert_eq!(bad["errors"][0]["extensions"]["field"], "body");
    }
    let max = stack
        .posts
        .graphql(create, json!({ "b": "x".repeat(2000) }), Some(&alice))
        .await;
    assert_eq!(max["errors"], Value::Null);

    let post = stack.post(&alice, "p").await;
    let comment = "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { body } }";
    for body in ["  ", &"y".repeat(1001)] {
        let bad = stack
            .posts
            .graphql(comment, json!({ "p": post, "b": body }), Some(&alice))
            .await;
        assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
    }
    let edit = "mutation($id: ID!) { editPost(id: $id, body: \"\") { body } }";
    assert_eq!(
        error_code(
            &stack
                .posts
                .graphql(edit, json!({ "id": post }), Some(&alice))
                .await
        ),
        Some("BAD_USER_INPUT")
    );
}

async fn a_deleted_accounts_content_goes_even_if_posts_was_down(backend: Backend) {
    let stack = Stack::new(backend).await;
    let (doomed_id, doomed) = stack.user("doomed").await;
    let (other_id, other) = stack.user("other").await;
    let theirs = stack.post(&doomed, "soon gone").await;
    let mine = stack.post(&other, "stays").await;
    stack
        .posts
        .graphql(
            "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }",
            json!({ "p": mine, "b": "by doomed" }),
            Some(&doomed),
        )
        .await;
    stack
        .posts
        .graphql(
            "mutation($p: ID!) { likePost(postId: $p) { id } }",
            json!({ "p": mine }),
            Some(&doomed),
        )
        .await;
    stack
        .posts
        .graphql(
            "mutation($u: ID!) { follow(userId: $u) { id } }",
            json!({ "u": other_id }),
            Some(&doomed),
        )
        .await;
    stack
        .posts
        .graphql(
            "mutation($u: ID!) { follow(userId: $u) { id } }",
            json!({ "u": doomed_id }),
            Some(&other),
        )
        .await;

    let Stack { users, posts } = stack;
    let (data_dir, database_url) = posts.stop().await;
    let deleted = users
        .graphql(
            "mutation { deleteAccount(password: \"correct horse battery\") }",
            json!({}),
            Some(&doomed),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true);

    let posts = TestApp::start(SubgraphName::Posts, data_dir, database_url, &[]).await;
    let check = "query($a: ID!, $m: ID!, $r: [_Any!]!) { a: post(id: $a) { id } m: post(id: $m) { likeCount commentCount }
        _entities(representations: $r) { ... on User { followerCount followingCount } } }";
    let vars = json!({ "a": theirs, "m": mine, "r": [{ "__typename": "User", "id": other_id }] });
    let expected = json!({ "a": null, "m": { "likeCount": 0, "commentCount": 0 }, "_entities": [{ "followerCount": 0, "followingCount": 0 }] });
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = posts.graphql(check, vars.clone(), None).await["data"].clone();
        if seen == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the deleted account's content was not removed: {seen}");
}

#[tokio::test]
async fn the_posts_and_users_sdls_compose() {
    let stack = Stack::new(Backend::Sqlite).await;
    let mut subgraphs = graphql_composition::Subgraphs::default();
    for (name, app) in [("users", &stack.users), ("posts", &stack.posts)] {
        let sdl = app.graphql("{ _service { sdl } }", json!({}), None).await;
        let sdl = sdl["data"]["_service"]["sdl"].as_str().unwrap().to_owned();
        subgraphs
            .ingest_str(&sdl, name, Some(&app.url("/graphql")))
            .unwrap();
    }
    let composed = graphql_composition::compose(&mut subgraphs)
        .into_result()
        .map_err(|d| format!("{d:?}"))
        .unwrap();
    let supergraph = graphql_composition::render_federated_sdl(&composed).unwrap();
    for expected in ["type Post", "feed(", "followerCount", "register("] {
        assert!(
            supergraph.contains(expected),
            "{expected} missing from {supergraph}"
        );
    }
}
