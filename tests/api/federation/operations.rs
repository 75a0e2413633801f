//! Operation features over entity fields: variables with defaults, `@skip` / `@include`
//! (a skipped entity field costs no subgraph request) and aliases.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};
use super::keys::{catalog, inventory, pricing};

async fn harness() -> Harness {
    gateway(vec![
        subgraph("catalog", catalog::schema()),
        subgraph("inventory", inventory::schema()),
        subgraph("pricing", pricing::schema()),
    ])
    .await
}

const SKIP_INCLUDE: &str = "query Products($withStock: Boolean = true, $skipPrice: Boolean!) {
    products { name stock @include(if: $withStock) price @skip(if: $skipPrice) }
}";

#[tokio::test]
async fn skip_and_include_on_entity_fields_with_a_defaulted_variable() {
    let h = harness().await;

    let response = h.run(SKIP_INCLUDE, json!({"skipPrice": true})).await;

    assert_eq!(
        response,
        json!({"data": {"products": [
            {"name": "Chair", "stock": 3},
            {"name": "Lamp", "stock": 0}
        ]}})
    );
    assert_eq!(h.requests("inventory"), 1);
    assert_eq!(h.requests("pricing"), 0, "{:?}", h.queries("pricing"));
}

#[tokio::test]
async fn skip_and_include_with_the_default_overridden() {
    let h = harness().await;

    let response = h
        .run(
            SKIP_INCLUDE,
            json!({"withStock": false, "skipPrice": false}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"products": [
            {"name": "Chair", "price": 40},
            {"name": "Lamp", "price": 15}
        ]}})
    );
    assert_eq!(h.requests("inventory"), 0, "{:?}", h.queries("inventory"));
    assert_eq!(h.requests("pricing"), 1);
}

#[tokio::test]
async fn include_on_an_inline_fragment_of_entity_fields() {
    let h = harness().await;
    let query =
        "query($detail: Boolean!) { products { name ... @include(if: $detail) { stock price } } }";

    let without = h.run(query, json!({"detail": false})).await;
    assert_eq!(
        without,
        json!({"data": {"products": [{"name": "Chair"}, {"name": "Lamp"}]}})
    );
    assert_eq!(h.requests("inventory") + h.requests("pricing"), 0);

    let with = h.run(query, json!({"detail": true})).await;
    assert_eq!(
        with,
        json!({"data": {"products": [
            {"name": "Chair", "stock": 3, "price": 40},
            {"name": "Lamp", "stock": 0, "price": 15}
        ]}})
    );
}

#[tokio::test]
async fn a_variable_default_is_used_as_a_root_argument() {
    let h = harness().await;
    let query = r#"query($sku: String = "s2") { product(sku: $sku) { name stock } }"#;

    let defaulted = h.run(query, json!({})).await;
    assert_eq!(
        defaulted,
        json!({"data": {"product": {"name": "Lamp", "stock": 0}}})
    );

    let given = h.run(query, json!({"sku": "s1"})).await;
    assert_eq!(
        given,
        json!({"data": {"product": {"name": "Chair", "stock": 3}}})
    );
}

#[tokio::test]
async fn aliases_on_entity_fields_and_on_root_fields() {
    let h = harness().await;

    let response = h
        .run(
            r#"{
                products { label: name inStock: stock cost: price again: stock }
                first: product(sku: "s1") { n: name s: stock }
                second: product(sku: "s2") { n: name s: stock p: price }
            }"#,
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {
            "products": [
                {"label": "Chair", "inStock": 3, "cost": 40, "again": 3},
                {"label": "Lamp", "inStock": 0, "cost": 15, "again": 0}
            ],
            "first": {"n": "Chair", "s": 3},
            "second": {"n": "Lamp", "s": 0, "p": 15}
        }})
    );
}
