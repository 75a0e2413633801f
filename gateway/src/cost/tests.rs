use serde_json::{Map, Value, json};

use super::*;

const SDL: &str = r#"
schema { query: Query mutation: Mutation }
type Query {
  latestPosts(first: Int = 20, after: String): PostConnection!
    @listSize(slicingArguments: ["first"], sizedFields: ["edges"])
  tags: [String!]!
  trending: [Post!]! @listSize(assumedSize: 5)
  recent: [Post!]!
  search(first: Int, last: Int): [Post!]! @listSize(slicingArguments: ["first", "last"])
  window(first: Int, last: Int): [Post!]!
    @listSize(slicingArguments: ["first", "last"], requireOneSlicingArgument: false)
  expensive: Int! @cost(weight: 50)
  audited(reason: String @cost(weight: 3)): Post
}
type PostConnection { edges: [PostEdge!]! pageInfo: PageInfo! }
type PostEdge { cursor: String! node: Post! }
type PageInfo { hasNextPage: Boolean! }
type Post { id: ID! body: String! author: User! heavy: Heavy }
type Heavy @cost(weight: 7) { id: ID! }
type User {
  id: ID!
  posts(first: Int = 20): PostConnection!
    @listSize(slicingArguments: ["first"], sizedFields: ["edges"])
}
type Mutation { createPost(body: String!): Post! like(id: ID!): Boolean! }
"#;

fn model() -> CostModel {
    let schema = graphql_tools::parser::parse_schema::<String>(SDL)
        .expect("the test SDL parses")
        .into_static();
    CostModel::from_schema(&schema)
}

fn cost_with(query: &str, variables: Value) -> Result<u64, CostError> {
    let document = crate::validate::parse(query).expect("the test operation parses");
    let variables: Map<String, Value> = variables.as_object().cloned().unwrap_or_default();
    estimate(&model(), &document, None, &variables, 10)
}

fn cost(query: &str) -> u64 {
    cost_with(query, json!({})).expect("an estimate")
}

#[test]
fn a_scalar_costs_nothing_and_an_object_costs_one() {
    assert_eq!(cost("{ audited { id body } }"), 1);
    assert_eq!(cost("{ __typename }"), 0);
}

#[test]
fn a_list_multiplies_its_items_cost_by_the_literal_slicing_argument() {
    // latestPosts 1 + edges 3 × (edge 1 + node 1)
    assert_eq!(
        cost("{ latestPosts(first: 3) { edges { node { id } } } }"),
        7
    );
}

#[test]
fn a_slicing_argument_from_a_variable_sizes_the_list() {
    let query = "query($n: Int) { latestPosts(first: $n) { edges { node { id } } } }";
    assert_eq!(cost_with(query, json!({ "n": 4 })), Ok(9));
}

#[test]
fn an_absent_slicing_argument_falls_back_to_its_default() {
    assert_eq!(cost("{ latestPosts { edges { node { id } } } }"), 41);
    let query = "query($n: Int) { latestPosts(first: $n) { edges { node { id } } } }";
    assert_eq!(cost_with(query, json!({})), Ok(41), "an absent variable");
}

#[test]
fn assumed_size_sizes_a_list_without_slicing_arguments() {
    assert_eq!(cost("{ trending { id } }"), 5);
}

#[test]
fn a_list_nothing_sizes_gets_the_default_list_size() {
    assert_eq!(cost("{ recent { id } }"), 10);
    assert_eq!(cost("{ tags }"), 0, "a list of scalars");
    assert_eq!(
        cost("{ window { id } }"),
        10,
        "no slicing argument has a value"
    );
}

#[test]
fn the_largest_slicing_argument_sizes_the_list() {
    assert_eq!(cost("{ window(first: 2, last: 3) { id } }"), 3);
}

#[test]
fn require_one_slicing_argument_refuses_none_or_two() {
    assert_eq!(cost("{ search(last: 2) { id } }"), 2);
    for query in ["{ search { id } }", "{ search(first: 2, last: 3) { id } }"] {
        let refused = cost_with(query, json!({}));
        assert!(
            matches!(refused, Err(CostError::SlicingArguments { .. })),
            "{query}: {refused:?}"
        );
    }
}

#[test]
fn cost_on_a_type_or_a_field_replaces_the_default_weight_and_arguments_add_theirs() {
    // latestPosts 1 + edges 2 × (edge 1 + node 1 + heavy 7)
    assert_eq!(
        cost("{ latestPosts(first: 2) { edges { node { heavy { id } } } } }"),
        19
    );
    assert_eq!(cost("{ expensive }"), 50);
    assert_eq!(cost("{ audited(reason: \"x\") { id } }"), 4);
}

#[test]
fn fragments_and_inline_fragments_cost_what_their_selections_cost() {
    let spread = "{ latestPosts(first: 3) { ...Conn } }
        fragment Conn on PostConnection { edges { node { ...P } } }
        fragment P on Post { id author { id } }";
    let inline = "{ latestPosts(first: 3) { edges { node { ... on Post { author { id } } } } } }";
    // latestPosts 1 + edges 3 × (edge 1 + node 1 + author 1)
    assert_eq!(cost(spread), 10);
    assert_eq!(cost(inline), 10);
}

#[test]
fn a_fragment_is_sized_by_each_context_it_is_spread_in() {
    let query = "{ a: latestPosts(first: 2) { ...Conn } b: latestPosts(first: 5) { ...Conn } }
        fragment Conn on PostConnection { edges { node { id } } }";
    assert_eq!(cost(query), (1 + 2 * 2) + (1 + 5 * 2));
}

#[test]
fn a_spread_explosion_is_computed_not_expanded() {
    // 2^30 copies of `trending { id }`: expanding them would never finish.
    let mut query = String::from("{ ...F0 }\n");
    for level in 0..30 {
        let next = level + 1;
        query.push_str(&format!(
            "fragment F{level} on Query {{ ...F{next} ...F{next} }}\n"
        ));
    }
    query.push_str("fragment F30 on Query { trending { id } }\n");
    assert_eq!(cost(&query), (1u64 << 30) * 5);
}

#[test]
fn nested_lists_multiply_and_the_product_saturates() {
    let attack = "{ latestPosts(first: 100) { edges { node { author { posts(first: 100) {
        edges { node { author { posts(first: 100) { edges { node { id } } } } } } } } } } } }";
    // Each level: edges 100 × (edge 1 + node 1 + author 1 + posts 1 + next level).
    let inner = 1 + 100 * 2;
    let middle = 1 + 100 * (3 + inner);
    assert_eq!(cost(attack), 1 + 100 * (3 + middle));
    let huge = "{ latestPosts(first: 2147483647) { edges { node { author { posts(first: 2147483647) {
        edges { node { author { posts(first: 2147483647) { edges { node { id } } } } } } } } } } } }";
    assert_eq!(cost(huge), u64::MAX);
}

#[test]
fn each_mutation_root_field_costs_ten_more() {
    let query = "mutation { createPost(body: \"x\") { id author { id } } like(id: \"1\") }";
    // createPost 10 + post 1 + author 1; like 10 + a scalar
    assert_eq!(cost(query), 22);
}

#[test]
fn the_named_operation_is_the_one_estimated() {
    let document = crate::validate::parse("query A { trending { id } } query B { recent { id } }")
        .expect("parses");
    let estimate_of = |name| estimate(&model(), &document, Some(name), &Map::new(), 10);
    assert_eq!(estimate_of("A"), Ok(5));
    assert_eq!(estimate_of("B"), Ok(10));
    assert_eq!(estimate_of("C"), Err(CostError::UnknownOperation));
}
