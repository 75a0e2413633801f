//! Preparing once: concurrent requests for a new document share one preparation, a refusal
//! is remembered like a success, and a preparation stops when its token says so.

use std::time::Duration;

use hive_router_query_planner::utils::cancellation::CancellationToken;
use serde_json::json;

use crate::prepare::{PrepareError, Preparer};
use crate::testing::*;
use crate::{GatewayConfig, OperationLimits};

fn harness() -> Harness {
    Harness::new(vec![
        ("users", USERS_SDL, MockSubgraph::new()),
        ("posts", POSTS_SDL, MockSubgraph::new()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_new_document_share_one_preparation() {
    let h = harness();
    let runtime = h.gateway.runtime();
    let query = "query Shared { feed { title author { name } } }";

    let waiting: Vec<_> = (0..16)
        .map(|_| {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.prepare(query, None).await })
        })
        .collect();
    for prepared in futures::future::join_all(waiting).await {
        let prepared = prepared.expect("runs").expect("prepares");
        assert_eq!(prepared.operation_name.as_deref(), Some("Shared"));
    }

    assert_eq!(runtime.preparations(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_spelling_one_operation_differently_plan_it_once() {
    let h = harness();
    let runtime = h.gateway.runtime();
    // Sixteen texts, each its own preparation, all normalizing to one operation.
    let texts: Vec<String> = (0..16)
        .map(|n| {
            format!(
                "query Shared {{ feed {{ title{} author {{ name }} }} }}",
                " ".repeat(n)
            )
        })
        .collect();

    let waiting: Vec<_> = texts
        .into_iter()
        .map(|text| {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.prepare(&text, None).await.map(|p| p.plan.clone()) })
        })
        .collect();
    let plans: Vec<_> = futures::future::join_all(waiting)
        .await
        .into_iter()
        .map(|plan| plan.expect("runs").expect("prepares"))
        .collect();

    assert_eq!(runtime.preparations(), 16);
    assert_eq!(runtime.plan_cache().misses(), 1, "planned once");
    assert_eq!(runtime.plan_cache().hits(), 15);
    assert!(
        plans
            .iter()
            .all(|plan| std::sync::Arc::ptr_eq(plan, &plans[0]))
    );
}

#[tokio::test]
async fn a_refused_document_sent_again_is_refused_from_the_cache() {
    let h = harness();
    let runtime = h.gateway.runtime();
    let deep = format!("{}{}", "{ me ".repeat(40), "}".repeat(40));

    let first = runtime.prepare(&deep, None).await;
    let second = runtime.prepare(&deep, None).await;

    for refusal in [first, second] {
        assert!(
            matches!(&refusal, Err(PrepareError::Limit(limit)) if limit.name == "nesting"),
            "{refusal:?}"
        );
    }
    assert_eq!(runtime.preparations(), 1);
}

#[tokio::test]
async fn the_same_text_with_another_operation_name_is_another_preparation() {
    let h = harness();
    let runtime = h.gateway.runtime();
    let query = "query A { me { name } } mutation B { createPost(body: \"x\") { id } }";

    let a = runtime.prepare(query, Some("A")).await.expect("prepares");
    let b = runtime.prepare(query, Some("B")).await.expect("prepares");

    assert_eq!(a.kind, crate::OperationKind::Query);
    assert_eq!(b.kind, crate::OperationKind::Mutation);
    assert_eq!(runtime.preparations(), 2);
}

#[test]
fn a_cancelled_preparation_stops_and_says_why() {
    let h = harness();
    let supergraph = h.gateway.supergraph();
    let preparer = Preparer::new(OperationLimits::default(), true);
    let plans = crate::plan::PlanCache::new(10);
    let query = "{ feed { title author { name } } }";

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let out_of_time = CancellationToken::with_timeout(Duration::ZERO);

    assert!(matches!(
        preparer.prepare(&supergraph, &plans, query, None, &cancelled),
        Err(PrepareError::Cancelled)
    ));
    assert!(matches!(
        preparer.prepare(&supergraph, &plans, query, None, &out_of_time),
        Err(PrepareError::TimedOut { budget_ms: 2000 })
    ));
    assert!(
        preparer
            .prepare(&supergraph, &plans, query, None, &CancellationToken::new())
            .is_ok()
    );
}

#[tokio::test]
async fn a_preparation_out_of_time_is_refused_with_the_budget_and_not_remembered() {
    let limits = OperationLimits {
        // No time at all: the first check of the budget stops the preparation.
        preparation_budget_ms: 0,
        ..OperationLimits::default()
    };
    let h = Harness::with_config(
        vec![
            ("users", USERS_SDL, MockSubgraph::new()),
            ("posts", POSTS_SDL, MockSubgraph::new()),
        ],
        GatewayConfig {
            limits,
            ..GatewayConfig::default()
        },
    );
    let query = "{ feed { title author { name } } }";

    let response = h.run(query, json!({})).await;

    let error = &response["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    assert_eq!(
        error["extensions"]["limit"],
        json!({"name": "preparationMs", "max": 0})
    );
    let runtime = h.gateway.runtime();
    let again = runtime.prepare(query, None).await;
    assert!(
        matches!(again, Err(PrepareError::TimedOut { .. })),
        "{again:?}"
    );
    assert_eq!(
        runtime.preparations(),
        2,
        "a timed-out preparation is tried again"
    );
}

#[tokio::test]
async fn a_request_gone_before_its_turn_on_the_pool_prepares_nothing() {
    let supergraph = crate::Supergraph::compose(
        &[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)],
        crate::SupergraphOptions::default(),
    )
    .expect("composes");
    let pool = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let preparer = std::sync::Arc::new(Preparer::new(OperationLimits::default(), true));
    let runtime = std::sync::Arc::new(crate::runtime::SupergraphRuntime::new(
        supergraph,
        preparer,
        pool.clone(),
    ));
    let query = "{ feed { title } }";
    let busy = pool.clone().acquire_owned().await.expect("a turn");

    let gone = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.prepare(query, None).await.is_ok() }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    gone.abort();
    assert!(gone.await.is_err(), "the request went away while it waited");
    drop(busy);

    assert_eq!(runtime.preparations(), 0);
    assert!(runtime.prepare(query, None).await.is_ok());
    assert_eq!(runtime.preparations(), 1);
}

#[tokio::test]
async fn the_cost_of_an_operation_without_variables_is_estimated_once() {
    let h = harness();
    let runtime = h.gateway.runtime();
    let costs = runtime.supergraph().costs();
    let fixed = runtime
        .prepare("{ feed { title author { name } } }", None)
        .await
        .expect("prepared");
    let variable = runtime
        .prepare(
            "query($all: Boolean!) { feed { title @include(if: $all) } }",
            None,
        )
        .await
        .expect("prepared");

    let estimate = h
        .gateway
        .cost()
        .estimate(costs, fixed.for_cost(), &serde_json::Map::new());

    let kept = fixed.for_cost().estimate.and_then(|known| known.get());
    assert_eq!(kept, Some(&estimate), "the first estimate is kept");
    assert!(estimate.is_ok_and(|cost| cost > 0));
    assert!(
        variable.for_cost().estimate.is_none(),
        "an operation with variables is estimated per request"
    );
}
