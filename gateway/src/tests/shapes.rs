//! Federation shapes beyond a single key: composite keys, `@requires` with nested selections,
//! `@provides`, interfaces, unions, and lists of entities with nulls.

use serde_json::{Value, json};

use super::shapes_sdl::*;
use crate::testing::*;

const TOP_PRODUCTS: &str =
    "{topProducts{__typename name upc sku region{code} price weight dims{height width}}}";
const SHIPPING_ESTIMATE: &str = "query($representations:[_Any!]!){_entities(representations: $representations){...on Product{shippingEstimate}}}";
const IN_STOCK: &str = "query($representations:[_Any!]!){_entities(representations: $representations){...on Product{inStock}}}";
const EMAIL: &str = "query($representations:[_Any!]!){_entities(representations: $representations){...on User{email}}}";

fn harness(products: MockSubgraph, shipping: MockSubgraph, inventory: MockSubgraph) -> Harness {
    harness_with(
        products,
        shipping,
        inventory,
        MockSubgraph::new(),
        MockSubgraph::new(),
    )
}

fn harness_with(
    products: MockSubgraph,
    shipping: MockSubgraph,
    inventory: MockSubgraph,
    reviews: MockSubgraph,
    accounts: MockSubgraph,
) -> Harness {
    let (p, s, i, r, a) = (
        sdl(PRODUCTS),
        sdl(SHIPPING),
        sdl(INVENTORY),
        sdl(REVIEWS),
        sdl(ACCOUNTS),
    );
    Harness::new(vec![
        ("products", &p, products),
        ("shipping", &s, shipping),
        ("inventory", &i, inventory),
        ("reviews", &r, reviews),
        ("accounts", &a, accounts),
    ])
}

fn top_products() -> MockSubgraph {
    MockSubgraph::new().on(
        TOP_PRODUCTS,
        json!({"data": {"topProducts": [
            {"__typename": "Product", "name": "Chair", "upc": "u1", "sku": "s1", "region": {"code": "EU"},
             "price": 10, "weight": 2, "dims": {"height": 3, "width": 4}},
            null,
            {"__typename": "Product", "name": "Lamp", "upc": "u2", "sku": "s2", "region": {"code": "US"},
             "price": 20, "weight": 5, "dims": null}
        ]}}),
    )
}

fn representations(h: &Harness, subgraph: &str) -> Value {
    h.variables(subgraph)[0]["representations"].clone()
}

#[tokio::test]
async fn requires_and_composite_keys_build_representations_from_nested_selections() {
    let shipping = MockSubgraph::new().on(
        SHIPPING_ESTIMATE,
        json!({"data": {"_entities": [{"shippingEstimate": 12}, {"shippingEstimate": 25}]}}),
    );
    let inventory = MockSubgraph::new().on(
        IN_STOCK,
        json!({"data": {"_entities": [{"inStock": true}, {"inStock": false}]}}),
    );
    let h = harness(top_products(), shipping, inventory);

    let response = h
        .run(
            "{ topProducts { name shippingEstimate inStock } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"topProducts": [
            {"name": "Chair", "shippingEstimate": 12, "inStock": true},
            null,
            {"name": "Lamp", "shippingEstimate": 25, "inStock": false}
        ]}})
    );
    assert_eq!(
        representations(&h, "shipping"),
        json!([
            {"__typename": "Product", "price": 10, "weight": 2, "dims": {"width": 4, "height": 3}, "upc": "u1"},
            {"__typename": "Product", "price": 20, "weight": 5, "dims": null, "upc": "u2"}
        ])
    );
    assert_eq!(
        representations(&h, "inventory"),
        json!([
            {"__typename": "Product", "sku": "s1", "region": {"code": "EU"}},
            {"__typename": "Product", "sku": "s2", "region": {"code": "US"}}
        ])
    );
}

#[tokio::test]
async fn a_failed_entity_subgraph_nulls_only_the_entities_it_should_have_completed() {
    let shipping = MockSubgraph::new().on(
        SHIPPING_ESTIMATE,
        json!({"data": {"_entities": [{"shippingEstimate": 12}, {"shippingEstimate": 25}]}}),
    );
    let h = harness(top_products(), shipping, MockSubgraph::unavailable());

    let response = h
        .run(
            "{ topProducts { name shippingEstimate inStock } }",
            json!({}),
        )
        .await;

    // Each product's `inStock: Boolean!` is missing: the one failed request explains the
    // nulls, with no "Cannot return null" error per product.
    assert_eq!(
        response,
        json!({
            "data": {"topProducts": [null, null, null]},
            "errors": [
                {"message": "Request to subgraph \"inventory\" failed.",
                 "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": "inventory"}}
            ]
        })
    );
}

#[tokio::test]
async fn provided_fields_are_read_from_the_providing_subgraph_alone() {
    let reviews = MockSubgraph::new().on(
        "{latestReviews{body author{username}}}",
        json!({"data": {"latestReviews": [
            {"body": "Great", "author": {"username": "ann"}},
            {"body": "Meh", "author": null}
        ]}}),
    );
    let h = harness_with(
        MockSubgraph::new(),
        MockSubgraph::new(),
        MockSubgraph::new(),
        reviews,
        MockSubgraph::new(),
    );

    let response = h
        .run("{ latestReviews { body author { username } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"latestReviews": [
            {"body": "Great", "author": {"username": "ann"}},
            {"body": "Meh", "author": null}
        ]}})
    );
    assert!(h.queries("accounts").is_empty());
}

#[tokio::test]
async fn null_entities_are_not_sent_and_unresolved_entities_complete_as_null() {
    let reviews = MockSubgraph::new().on(
        "{latestReviews{author{__typename id}}}",
        json!({"data": {"latestReviews": [
            {"author": {"__typename": "User", "id": "1"}},
            {"author": null},
            {"author": {"__typename": "User", "id": "2"}}
        ]}}),
    );
    let accounts = MockSubgraph::new().on(
        EMAIL,
        json!({"data": {"_entities": [{"email": "ann@example.com"}, null]}}),
    );
    let h = harness_with(
        MockSubgraph::new(),
        MockSubgraph::new(),
        MockSubgraph::new(),
        reviews,
        accounts,
    );

    let response = h
        .run("{ latestReviews { author { email } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"latestReviews": [
            {"author": {"email": "ann@example.com"}},
            {"author": null},
            {"author": {"email": null}}
        ]}})
    );
    assert_eq!(
        representations(&h, "accounts"),
        json!([{"__typename": "User", "id": "1"}, {"__typename": "User", "id": "2"}])
    );
}

#[tokio::test]
async fn union_members_are_shaped_by_typename_and_only_matching_entities_are_fetched() {
    let products = MockSubgraph::new().on(
        "{search{__typename ...on Product{__typename name sku region{code}} ...on Book{title}}}",
        json!({"data": {"search": [
            {"__typename": "Book", "title": "Dune"},
            {"__typename": "Product", "name": "Chair", "sku": "s1", "region": {"code": "EU"}}
        ]}}),
    );
    let inventory = MockSubgraph::new().on(
        IN_STOCK,
        json!({"data": {"_entities": [{"inStock": true}]}}),
    );
    let h = harness(products, MockSubgraph::new(), inventory);

    let response = h
        .run(
            "{ search { __typename ... on Product { name inStock } ... on Book { title } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"__typename": "Book", "title": "Dune"},
            {"__typename": "Product", "name": "Chair", "inStock": true}
        ]}})
    );
    assert_eq!(
        representations(&h, "inventory"),
        json!([{"__typename": "Product", "sku": "s1", "region": {"code": "EU"}}])
    );
}

#[tokio::test]
async fn an_interface_field_resolves_fragments_on_its_runtime_type() {
    let products = MockSubgraph::new().on(
        "{node(id: \"b1\"){id __typename ...on Book{title} ...on Product{__typename sku region{code}}}}",
        json!({"data": {"node": {"id": "b1", "__typename": "Book", "title": "Dune"}}}),
    );
    let h = harness(products, MockSubgraph::new(), MockSubgraph::new());

    let response = h
        .run(
            "{ node(id: \"b1\") { id ... on Book { title } ... on Product { inStock } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"node": {"id": "b1", "title": "Dune"}}})
    );
    assert!(h.queries("inventory").is_empty());
}
