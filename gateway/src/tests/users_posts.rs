//! The users/posts pair: root fetches, entity batches, aliases, fragments, conditions,
//! null propagation and subgraph failures.

use serde_json::json;

use crate::testing::*;

const FEED_QUERY: &str = "{feed{id title author{...a} comments{body author{...a}}}}\n\nfragment a on User {__typename id}\n";
const FEED_USERS_BATCH: &str = "query($__batch_reps_0:[_Any!]!, $__batch_reps_1:[_Any!]!){_e0: _entities(representations: $__batch_reps_0){...on User{name}} _e1: _entities(representations: $__batch_reps_1){...on User{name email}}}";

fn feed_posts() -> MockSubgraph {
    MockSubgraph::new().on(
        FEED_QUERY,
        json!({"data": {"feed": [
            {"id": "p1", "title": "Hello", "author": {"__typename": "User", "id": "u1"},
             "comments": [{"body": "Nice", "author": {"__typename": "User", "id": "u2"}},
                          {"body": "Thanks", "author": {"__typename": "User", "id": "u1"}}]},
            {"id": "p2", "title": "Again", "author": {"__typename": "User", "id": "u1"}, "comments": []}
        ]}}),
    )
}

#[tokio::test]
async fn a_feed_is_joined_with_its_authors_in_one_batched_users_request() {
    let users = MockSubgraph::new().on(
        FEED_USERS_BATCH,
        json!({"data": {
            "_e0": [{"name": "Bea"}, {"name": "Ann"}],
            "_e1": [{"name": "Ann", "email": "ann@example.com"}]
        }}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, feed_posts()),
    ]);

    let response = h
        .run(
            "{ feed { id title author { name email } comments { body author { name } } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"feed": [
            {"id": "p1", "title": "Hello", "author": {"name": "Ann", "email": "ann@example.com"},
             "comments": [{"body": "Nice", "author": {"name": "Bea"}},
                          {"body": "Thanks", "author": {"name": "Ann"}}]},
            {"id": "p2", "title": "Again", "author": {"name": "Ann", "email": "ann@example.com"},
             "comments": []}
        ]}})
    );
    assert_eq!(
        h.variables("users"),
        vec![json!({
            "__batch_reps_0": [{"__typename": "User", "id": "u2"}, {"__typename": "User", "id": "u1"}],
            "__batch_reps_1": [{"__typename": "User", "id": "u1"}]
        })],
        "equal representations are sent once"
    );
}

#[tokio::test]
async fn aliases_fragments_and_typename_are_shaped_as_the_client_asked() {
    let posts = MockSubgraph::new().on(
        "{latest: feed(first: 2){heading: title author{__typename id} __typename}}",
        json!({"data": {"latest": [
            {"heading": "Hello", "author": {"__typename": "User", "id": "u1"}, "__typename": "Post"}
        ]}}),
    );
    let users = MockSubgraph::new().on(
        "query($representations:[_Any!]!){_entities(representations: $representations){...on User{n: name}}}",
        json!({"data": {"_entities": [{"n": "Ann"}]}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, posts),
    ]);

    let response = h
        .run(
            "{ latest: feed(first: 2) { ... on Post { heading: title } ...PostAuthor __typename } }
             fragment PostAuthor on Post { author { n: name } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"latest": [{"heading": "Hello", "author": {"n": "Ann"}, "__typename": "Post"}]}})
    );
}

#[tokio::test]
async fn a_false_include_condition_skips_the_entity_fetch_and_the_field() {
    let posts = MockSubgraph::new().on(
        "query($withAuthor:Boolean!){feed{title author @include(if: $withAuthor){__typename id}}}",
        json!({"data": {"feed": [{"title": "Hello"}]}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, MockSubgraph::new()),
        ("posts", POSTS_SDL, posts),
    ]);

    let response = h
        .run(
            "query($withAuthor: Boolean!) { feed { title author @include(if: $withAuthor) { name } } }",
            json!({"withAuthor": false}),
        )
        .await;

    assert_eq!(response, json!({"data": {"feed": [{"title": "Hello"}]}}));
    assert!(h.queries("users").is_empty());
    assert_eq!(h.variables("posts"), vec![json!({"withAuthor": false})]);
}

#[tokio::test]
async fn a_null_in_a_non_null_field_nulls_the_nearest_nullable_parent() {
    let posts = MockSubgraph::new().on(
        "{post(id: \"1\"){title author{__typename id}}}",
        json!({"data": {"post": {"title": "Hello", "author": {"__typename": "User", "id": "u1"}}}}),
    );
    let users = MockSubgraph::new().on(
        "query($representations:[_Any!]!){_entities(representations: $representations){...on User{name}}}",
        json!({"data": {"_entities": [{"name": null}]}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, posts),
    ]);

    let response = h
        .run("{ post(id: \"1\") { title author { name } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({
            "data": {"post": null},
            "errors": [{
                "message": "Cannot return null for non-nullable field User.name.",
                "path": ["post", "author", "name"]
            }]
        })
    );
}

#[tokio::test]
async fn entity_errors_are_reported_at_the_client_path_of_their_entity() {
    let users = MockSubgraph::new().on(
        FEED_USERS_BATCH,
        json!({
            "data": {"_e0": [{"name": "Bea"}, {"name": "Ann"}], "_e1": [null]},
            "errors": [{"message": "user u1 is hidden", "path": ["_e1", 0],
                        "extensions": {"code": "FORBIDDEN"}}]
        }),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, feed_posts()),
    ]);

    let response = h
        .run(
            "{ feed { id title author { name email } comments { body author { name } } } }",
            json!({}),
        )
        .await;

    // u1 authors both posts (one representation, sent once), so the error is reported at both.
    // `author`, the feed items and `feed` are all non-null: the whole data is null.
    let hidden = |post: usize| {
        json!({
            "message": "user u1 is hidden",
            "path": ["feed", post, "author"],
            "extensions": {"code": "FORBIDDEN", "serviceName": "users"}
        })
    };
    assert_eq!(
        response,
        json!({"data": null, "errors": [hidden(0), hidden(1)]})
    );
}

#[tokio::test]
async fn an_unreachable_subgraph_leaves_the_rest_of_the_data_intact() {
    let posts = MockSubgraph::new().on(
        "{post(id: \"1\"){title}}",
        json!({"data": {"post": {"title": "Hello"}}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, MockSubgraph::unavailable()),
        ("posts", POSTS_SDL, posts),
    ]);

    let response = h
        .run("{ me { name } post(id: \"1\") { title } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({
            "data": {"me": null, "post": {"title": "Hello"}},
            "errors": [{
                "message": "Request to subgraph \"users\" failed.",
                "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": "users"}
            }]
        })
    );
}

#[tokio::test]
async fn a_mutation_result_is_joined_with_entities_from_another_subgraph() {
    let posts = MockSubgraph::new().on(
        "mutation{createPost(body: \"x\"){id author{__typename id}}}",
        json!({"data": {"createPost": {"id": "p9", "author": {"__typename": "User", "id": "u1"}}}}),
    );
    let users = MockSubgraph::new().on(
        "query($representations:[_Any!]!){_entities(representations: $representations){...on User{name}}}",
        json!({"data": {"_entities": [{"name": "Ann"}]}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, posts),
    ]);

    let response = h
        .run(
            "mutation { createPost(body: \"x\") { id author { name } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"createPost": {"id": "p9", "author": {"name": "Ann"}}}})
    );
    let kinds = |name: &str| -> Vec<_> {
        h.mocks[name]
            .requests()
            .into_iter()
            .map(|r| (r.kind, r.entity_calls.len()))
            .collect()
    };
    assert_eq!(
        kinds("posts"),
        vec![(crate::OperationKind::Mutation, 0)],
        "the plan says it is a mutation"
    );
    assert_eq!(kinds("users"), vec![(crate::OperationKind::Query, 1)]);
}

#[tokio::test]
async fn subgraph_errors_on_root_fields_keep_their_path() {
    let users = MockSubgraph::new().on(
        "{me{name}}",
        json!({"data": {"me": null}, "errors": [{"message": "Not signed in", "path": ["me"],
               "extensions": {"code": "UNAUTHENTICATED"}, "locations": [{"line": 1, "column": 2}]}]}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, MockSubgraph::new()),
    ]);

    let response = h.run("{ me { name } }", json!({})).await;

    assert_eq!(
        response,
        json!({
            "data": {"me": null},
            "errors": [{"message": "Not signed in", "path": ["me"],
                        "extensions": {"code": "UNAUTHENTICATED", "serviceName": "users"}}]
        })
    );
}

#[tokio::test]
async fn a_repeated_operation_is_planned_once() {
    let users = MockSubgraph::new().on("{me{name}}", json!({"data": {"me": {"name": "Ann"}}}));
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, MockSubgraph::new()),
    ]);

    let first = h.run("{ me { name } }", json!({})).await;
    let second = h.run("query { me { name } }", json!({})).await;

    assert_eq!(first, json!({"data": {"me": {"name": "Ann"}}}));
    assert_eq!(second, first);
    let runtime = h.gateway.runtime();
    assert_eq!(
        (runtime.plan_cache().misses(), runtime.plan_cache().hits()),
        (1, 1)
    );
}

#[tokio::test]
async fn the_same_text_is_validated_and_planned_once_whatever_its_variables() {
    let users = MockSubgraph::new().on(
        "query($all:Boolean!){me{name @include(if: $all)}}",
        json!({"data": {"me": {"name": "Ann"}}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, MockSubgraph::new()),
    ]);
    let query = "query($all: Boolean!) { me { name @include(if: $all) } }";

    let with = h.run(query, json!({ "all": true })).await;
    let without = h.run(query, json!({ "all": false })).await;
    let invalid = h.run(query, json!({ "all": "yes" })).await;

    assert_eq!(with, json!({"data": {"me": {"name": "Ann"}}}));
    assert_eq!(without, json!({"data": {"me": {}}}));
    assert_eq!(
        invalid["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "variables are still checked per request: {invalid}"
    );
    assert_eq!(h.gateway.runtime().plan_cache().misses(), 1, "planned once");
    let prepared = h.gateway.runtime().prepare(query, None).await;
    assert_eq!(
        prepared.map(|p| p.kind).ok(),
        Some(crate::OperationKind::Query)
    );
}

#[tokio::test]
async fn response_fields_follow_the_order_of_the_query() {
    let users = MockSubgraph::new().on(
        "{me{name id email}}",
        json!({"data": {"me": {"id": "u1", "email": "a@b.c", "name": "Ann"}}}),
    );
    let h = Harness::new(vec![
        ("users", USERS_SDL, users),
        ("posts", POSTS_SDL, MockSubgraph::new()),
    ]);

    let response = h.run("{ me { name id email } }", json!({})).await;

    assert_eq!(
        response.to_string(),
        r#"{"data":{"me":{"name":"Ann","id":"u1","email":"a@b.c"}}}"#
    );
}

/// Answers as its mock does, with a public `Cache-Control` hint, so results are cacheable.
struct Hinted(std::sync::Arc<MockSubgraph>);

#[async_trait::async_trait]
impl crate::SubgraphTransport for Hinted {
    async fn execute(
        &self,
        request: crate::SubgraphRequest,
    ) -> Result<crate::SubgraphResponse, crate::TransportError> {
        let mut response = self.0.execute(request).await?;
        response.cache_control = Some("public, max-age=60".into());
        Ok(response)
    }
}

#[tokio::test]
async fn a_batch_fetchs_entities_come_from_the_entity_cache_the_second_time() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::cache::backend::CacheBackend;
    use crate::cache::entities::EntityCacheTransport;
    use crate::cache::metrics::CacheMetrics;

    let users = Arc::new(MockSubgraph::new().on(
        FEED_USERS_BATCH,
        json!({"data": {
            "_e0": [{"name": "Bea"}, {"name": "Ann"}],
            "_e1": [{"name": "Ann", "email": "ann@example.com"}]
        }}),
    ));
    let metrics = Arc::new(CacheMetrics::default());
    let backend = CacheBackend::new(None, 100, Duration::from_secs(60));
    let transports = crate::Transports::new()
        .with("users", Arc::new(Hinted(users.clone())))
        .with("posts", Arc::new(feed_posts()))
        .wrapped(|inner| {
            Arc::new(EntityCacheTransport::new(
                inner,
                backend.clone(),
                metrics.clone(),
                Duration::from_secs(60),
            ))
        });
    let supergraph = crate::Supergraph::compose(
        &[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)],
        crate::SupergraphOptions::default(),
    )
    .expect("composes");
    let gateway = crate::Gateway::new(supergraph, transports, crate::GatewayConfig::default());
    let query = "{ feed { id title author { name email } comments { body author { name } } } }";
    let run = || {
        crate::execute_operation(
            &gateway,
            crate::GraphQLRequest::new(query),
            crate::RequestContext::default(),
        )
    };

    let first = run().await.to_json();
    let second = run().await.to_json();

    assert_eq!(first["errors"], json!(null), "{first}");
    assert_eq!(second, first);
    assert_eq!(
        second["data"]["feed"][0]["comments"][0]["author"],
        json!({"name": "Bea"})
    );
    assert_eq!(
        users.requests().len(),
        1,
        "the second feed's authors came from the entity cache"
    );
    assert_eq!(
        metrics.hits.load(Ordering::Relaxed),
        3,
        "u2 and u1 of `_e0`, u1 of `_e1`"
    );
}
