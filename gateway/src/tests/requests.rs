//! Request errors (parse, validation, variables) and introspection: answered by the gateway
//! alone, without asking any subgraph.

use serde_json::json;

use crate::GatewayConfig;
use crate::testing::*;

fn harness(config: GatewayConfig) -> Harness {
    Harness::with_config(
        vec![
            ("users", USERS_SDL, MockSubgraph::new()),
            ("posts", POSTS_SDL, MockSubgraph::new()),
        ],
        config,
    )
}

#[tokio::test]
async fn a_syntax_error_is_a_parse_failure() {
    let h = harness(GatewayConfig::default());
    let response = h.run("{ me { name ", json!({})).await;
    assert_eq!(
        response["errors"][0]["extensions"],
        json!({"code": "GRAPHQL_PARSE_FAILED"})
    );
    assert_eq!(response.get("data"), None);
}

#[tokio::test]
async fn an_unknown_field_is_a_validation_failure_with_its_location() {
    let h = harness(GatewayConfig::default());
    let response = h.run("{ me { nickname } }", json!({})).await;
    assert_eq!(
        response,
        json!({"errors": [{
            "message": "Cannot query field \"nickname\" on type \"User\".",
            "locations": [{"line": 1, "column": 8}],
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}
        }]})
    );
    assert!(h.queries("users").is_empty());
}

#[tokio::test]
async fn a_missing_required_variable_is_bad_user_input() {
    let h = harness(GatewayConfig::default());
    let response = h
        .run("query($id: ID!) { user(id: $id) { name } }", json!({}))
        .await;
    assert_eq!(
        response,
        json!({"errors": [{
            "message": "Variable \"$id\" of required type \"ID!\" was not provided.",
            "extensions": {"code": "BAD_USER_INPUT"}
        }]})
    );
}

#[tokio::test]
async fn an_unknown_operation_name_is_a_validation_failure() {
    let h = harness(GatewayConfig::default());
    let request = crate::GraphQLRequest::new("query A { me { name } } query B { me { id } }")
        .with_operation_name("C");
    let response =
        crate::execute_operation(&h.gateway, request, crate::RequestContext::default()).await;
    assert_eq!(
        response.to_json(),
        json!({"errors": [{
            "message": "Unknown operation named \"C\".",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}
        }]})
    );
}

#[tokio::test]
async fn type_introspection_is_answered_from_the_api_schema() {
    let h = harness(GatewayConfig::default());
    let response = h
        .run(
            r#"{ __typename
                 __type(name: "User") { kind name fields { name type { kind name ofType { kind name } } } }
                 __schema { queryType { name } mutationType { name } subscriptionType { name } } }"#,
            json!({}),
        )
        .await;
    let field = |name: &str, ty: serde_json::Value| json!({"name": name, "type": ty});
    let non_null = |kind: &str, name: &str| json!({"kind": "NON_NULL", "name": null, "ofType": {"kind": kind, "name": name}});
    assert_eq!(
        response,
        json!({"data": {
            "__typename": "Query",
            "__type": {"kind": "OBJECT", "name": "User", "fields": [
                field("email", json!({"kind": "SCALAR", "name": "String", "ofType": null})),
                field("id", non_null("SCALAR", "ID")),
                field("name", non_null("SCALAR", "String")),
                field("posts", json!({"kind": "NON_NULL", "name": null,
                                      "ofType": {"kind": "LIST", "name": null}})),
            ]},
            "__schema": {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"},
                         "subscriptionType": null}
        }})
    );
    assert!(h.queries("users").is_empty() && h.queries("posts").is_empty());
}

#[tokio::test]
async fn the_schema_lists_client_types_but_no_federation_internals() {
    let h = harness(GatewayConfig::default());
    let response = h.run("{ __schema { types { name } } }", json!({})).await;
    let names: Vec<&str> = response["data"]["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Query", "Mutation", "User", "Post", "Comment", "String", "__Type",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("join__") || n.starts_with("link__")),
        "{names:?}"
    );
}

#[tokio::test]
async fn introspection_can_be_disabled() {
    let h = harness(GatewayConfig {
        introspection: false,
        ..GatewayConfig::default()
    });
    let response = h
        .run("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        response,
        json!({"errors": [{
            "message": "Introspection is disabled.",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}
        }]})
    );
    let typename = h.run("{ __typename }", json!({})).await;
    assert_eq!(typename, json!({"data": {"__typename": "Query"}}));
}
