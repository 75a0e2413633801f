use graphql_tools::static_graphql::schema::{Definition, TypeDefinition};

use super::*;
use crate::testing::{POSTS_SDL, USERS_SDL, subgraph};

fn root_joins(sdl: &str, type_name: &str) -> Vec<String> {
    let document = parse_sdl(sdl).unwrap();
    document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            Definition::TypeDefinition(TypeDefinition::Object(o)) if o.name == type_name => Some(
                o.directives
                    .iter()
                    .filter(|d| d.name == "join__type")
                    .map(|d| d.to_string())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap()
}

#[test]
fn root_types_get_a_join_type_for_every_subgraph_defining_root_fields() {
    let sdl = compose_supergraph_sdl(&[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)])
        .unwrap();
    assert_eq!(
        root_joins(&sdl, "Query"),
        vec!["@join__type(graph: USERS)", "@join__type(graph: POSTS)"]
    );
    assert_eq!(
        root_joins(&sdl, "Mutation"),
        vec!["@join__type(graph: POSTS)"]
    );
}

#[test]
fn root_types_that_already_have_join_types_are_left_alone() {
    let sdl = r#"
        enum join__Graph { A @join__graph(name: "a", url: "http://a") B @join__graph(name: "b", url: "http://b") }
        type Query @join__type(graph: A) { x: Int @join__field(graph: A) y: Int @join__field(graph: B) }
    "#;
    let mut document = parse_sdl(sdl).unwrap();
    add_root_type_joins(&mut document);
    assert_eq!(
        root_joins(&document.to_string(), "Query"),
        vec!["@join__type(graph: A)"]
    );
}

#[test]
fn a_root_field_without_join_field_is_joined_to_every_subgraph() {
    let sdl = r#"
        enum join__Graph { A @join__graph(name: "a", url: "http://a") B @join__graph(name: "b", url: "http://b") }
        type Query { x: Int }
    "#;
    let mut document = parse_sdl(sdl).unwrap();
    add_root_type_joins(&mut document);
    assert_eq!(
        root_joins(&document.to_string(), "Query"),
        vec!["@join__type(graph: A)", "@join__type(graph: B)"]
    );
}

#[test]
fn a_composed_supergraph_exposes_urls_and_an_api_schema_without_federation_internals() {
    let supergraph = Supergraph::compose(
        &[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)],
        SupergraphOptions::default(),
    )
    .unwrap();
    assert_eq!(
        supergraph.subgraph_urls().iter().collect::<Vec<_>>(),
        vec![
            (
                &"posts".to_string(),
                &"http://posts.test/graphql".to_string()
            ),
            (
                &"users".to_string(),
                &"http://users.test/graphql".to_string()
            ),
        ]
    );
    let api = supergraph.api_sdl();
    assert!(!api.contains("join__"), "{api}");
    assert!(!api.contains("__Schema"), "{api}");
    assert!(api.contains("feed(first: Int = 20): [Post!]!"), "{api}");
}

#[test]
fn a_supergraph_sdl_from_another_tool_loads_and_plans() {
    let rover_style =
        compose_supergraph_sdl(&[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)])
            .unwrap();
    let supergraph = Supergraph::from_sdl(&rover_style, SupergraphOptions::default()).unwrap();
    let document = crate::validate::parse("{ feed { title author { name } } }").unwrap();
    let plan = crate::plan::plan_operation(
        supergraph.planner(),
        &crate::plan::PlanCache::new(1),
        &document,
        None,
        &crate::override_labels::ActiveLabels::default(),
        &hive_router_query_planner::utils::cancellation::CancellationToken::new(),
    )
    .unwrap();
    assert!(plan.query_plan.node.is_some());
}

#[test]
fn an_invalid_subgraph_sdl_names_the_subgraph() {
    let error = compose_supergraph_sdl(&[subgraph("users", "type Query {")]).unwrap_err();
    assert!(
        matches!(&error, SupergraphError::InvalidSubgraphSdl { name, .. } if name == "users"),
        "{error}"
    );
}
