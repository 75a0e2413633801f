//! Lists of entities with nulls in them (null propagation through nullable and non-null
//! items), errors raised inside entity fetches, and a subgraph that is down.

use serde_json::json;

use super::harness::{Harness, TestSubgraph, gateway, subgraph};

/// Owns products u1..u5 and the lists that hold them.
mod products {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub upc: String,
        pub name: String,
    }

    fn product(upc: &str) -> Option<Product> {
        let name = match upc {
            "u1" => "Chair",
            "u2" => "Lamp",
            "u3" => "Desk",
            "u4" => "Ghost",
            "u5" => "Crate",
            _ => return None,
        };
        Some(Product {
            upc: upc.to_string(),
            name: name.to_string(),
        })
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// `[Product!]!`
        async fn top_products(&self) -> Vec<Product> {
            ["u1", "u2", "u3"].into_iter().filter_map(product).collect()
        }

        /// `[Product]!`: a null item of its own, then u4 which reviews does not know.
        async fn maybe_products(&self) -> Vec<Option<Product>> {
            vec![product("u1"), None, product("u4"), product("u3")]
        }

        /// `[Product!]`
        async fn strict_products(&self) -> Option<Vec<Product>> {
            Some(["u1", "u4"].into_iter().filter_map(product).collect())
        }

        async fn product(&self, upc: String) -> Option<Product> {
            product(&upc)
        }

        #[graphql(entity)]
        async fn find_product(&self, upc: String) -> Option<Product> {
            product(&upc)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Reviews of u1..u3 (u4 unknown: its entity is null), failing for u2's reviews and for the
/// whole of u5.
mod reviews {
    use async_graphql::{
        EmptyMutation, EmptySubscription, Error, ErrorExtensions, Object, Result, Schema,
        SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct Review {
        pub body: String,
    }

    pub struct Product {
        upc: String,
    }

    #[Object]
    impl Product {
        async fn upc(&self) -> &str {
            &self.upc
        }

        /// `[Review!]`: fails for u2.
        async fn reviews(&self) -> Result<Option<Vec<Review>>> {
            let bodies: &[&str] = match self.upc.as_str() {
                "u1" => &["Sturdy", "Comfy"],
                "u2" => {
                    return Err(Error::new("reviews of u2 are unavailable")
                        .extend_with(|_, e| e.set("code", "REVIEWS_UNAVAILABLE")));
                }
                _ => &[],
            };
            Ok(Some(
                bodies
                    .iter()
                    .map(|body| Review {
                        body: body.to_string(),
                    })
                    .collect(),
            ))
        }

        /// `Int!`
        async fn review_count(&self) -> i32 {
            if self.upc == "u1" { 2 } else { 0 }
        }

        /// `Int`
        async fn rating(&self) -> Option<i32> {
            (self.upc == "u1").then_some(5)
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn latest_review(&self) -> Option<Review> {
            Some(Review {
                body: "Sturdy".to_string(),
            })
        }

        #[graphql(entity)]
        async fn find_product(&self, upc: String) -> Result<Option<Product>> {
            match upc.as_str() {
                "u1" | "u2" | "u3" => Ok(Some(Product { upc })),
                "u5" => Err(Error::new("product u5 is quarantined")),
                _ => Ok(None),
            }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

async fn harness_with(reviews: TestSubgraph) -> Harness {
    gateway(vec![subgraph("products", products::schema()), reviews]).await
}

async fn harness() -> Harness {
    harness_with(subgraph("reviews", reviews::schema())).await
}

#[tokio::test]
async fn null_entities_leave_nullable_fields_null() {
    let h = harness().await;

    let response = h.run("{ maybeProducts { upc rating } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"maybeProducts": [
            {"upc": "u1", "rating": 5},
            null,
            {"upc": "u4", "rating": null},
            {"upc": "u3", "rating": null}
        ]}})
    );
    assert_eq!(h.requests("reviews"), 1);
}

#[tokio::test]
async fn a_null_entity_with_a_non_null_field_nulls_the_nearest_nullable_parent() {
    let h = harness().await;

    let response = h
        .run(
            "{ maybeProducts { upc reviewCount } strictProducts { upc reviewCount } }",
            json!({}),
        )
        .await;

    // maybeProducts is [Product]!: only the u4 item becomes null. strictProducts is
    // [Product!]: the null item nulls the whole list.
    assert_eq!(
        response,
        json!({
            "data": {
                "maybeProducts": [
                    {"upc": "u1", "reviewCount": 2},
                    null,
                    null,
                    {"upc": "u3", "reviewCount": 0}
                ],
                "strictProducts": null
            },
            "errors": [
                {
                    "message": "Cannot return null for non-nullable field Product.reviewCount.",
                    "path": ["maybeProducts", 2, "reviewCount"]
                },
                {
                    "message": "Cannot return null for non-nullable field Product.reviewCount.",
                    "path": ["strictProducts", 1, "reviewCount"]
                }
            ]
        })
    );
}

/// async-graphql 7.2.1 resolves `_entities` on the field's own context: an error inside one
/// entity comes back with the path `["_e0", "reviews"]` (no list index) and that entity null.
/// Without an index the gateway cannot tell which entity failed, so the error keeps its
/// message and extensions but has no path. With a subgraph that reports
/// `["_e0", 1, "reviews"]` the path would be `["topProducts", 1, "reviews"]` (covered with a
/// mock subgraph in gantry-gateway's `users_posts` tests).
#[tokio::test]
async fn an_error_inside_an_entity_field_keeps_the_other_data() {
    let h = harness().await;

    let response = h
        .run("{ topProducts { name reviews { body } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({
            "data": {"topProducts": [
                {"name": "Chair", "reviews": [{"body": "Sturdy"}, {"body": "Comfy"}]},
                {"name": "Lamp", "reviews": null},
                {"name": "Desk", "reviews": []}
            ]},
            "errors": [{
                "message": "reviews of u2 are unavailable",
                "extensions": {"code": "REVIEWS_UNAVAILABLE", "serviceName": "reviews"}
            }]
        })
    );
}

/// async-graphql 7.2.1 resolves the representations with `try_join_all`: one entity resolver
/// failing fails the whole `_entities` list (`"data": null`, error path `["_e0"]`), so every
/// entity of that fetch loses its reviews fields, `good` included. The data the other
/// subgraph returned survives.
#[tokio::test]
async fn an_error_resolving_one_entity_fails_that_entity_fetch_only() {
    let h = harness().await;

    let response = h
        .run(
            r#"{ good: product(upc: "u1") { name rating } bad: product(upc: "u5") { name rating } }"#,
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({
            "data": {
                "good": {"name": "Chair", "rating": null},
                "bad": {"name": "Crate", "rating": null}
            },
            "errors": [{
                "message": "product u5 is quarantined",
                "extensions": {"serviceName": "reviews"}
            }]
        })
    );
}

#[tokio::test]
async fn a_subgraph_that_is_down_fails_only_its_part_of_the_entity_fetch() {
    let h = harness_with(subgraph("reviews", reviews::schema()).down()).await;

    let response = h.run("{ topProducts { name rating } }", json!({})).await;

    assert_eq!(
        response,
        json!({
            "data": {"topProducts": [
                {"name": "Chair", "rating": null},
                {"name": "Lamp", "rating": null},
                {"name": "Desk", "rating": null}
            ]},
            "errors": [{
                "message": "Request to subgraph \"reviews\" failed.",
                "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": "reviews"}
            }]
        })
    );
}

#[tokio::test]
async fn a_subgraph_that_is_down_fails_only_its_root_fields() {
    let h = harness_with(subgraph("reviews", reviews::schema()).down()).await;

    let response = h
        .run("{ topProducts { name } latestReview { body } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({
            "data": {
                "topProducts": [{"name": "Chair"}, {"name": "Lamp"}, {"name": "Desk"}],
                "latestReview": null
            },
            "errors": [{
                "message": "Request to subgraph \"reviews\" failed.",
                "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": "reviews"}
            }]
        })
    );
}

#[tokio::test]
async fn a_subgraph_that_is_down_is_one_error_however_many_non_null_fields_it_nulls() {
    let h = harness_with(subgraph("reviews", reviews::schema()).down()).await;

    let response = h
        .run("{ maybeProducts { upc reviewCount } }", json!({}))
        .await;

    // Each product's `reviewCount: Int!` is missing, so each (nullable) item is null; the
    // one failed request explains them all.
    assert_eq!(
        response,
        json!({
            "data": {"maybeProducts": [null, null, null, null]},
            "errors": [{
                "message": "Request to subgraph \"reviews\" failed.",
                "extensions": {"code": "SUBGRAPH_ERROR", "serviceName": "reviews"}
            }]
        })
    );
}
