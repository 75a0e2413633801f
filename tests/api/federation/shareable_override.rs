//! `@shareable` (a field two subgraphs can both resolve: the gateway uses whichever it is
//! already fetching from) and `@override(from:)` (a field moved from one subgraph to another:
//! the old one is never asked).

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

/// Owns `Query.product`, `Product.name` (shared) and `Product.description`.
mod catalog {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub id: ID,
        #[graphql(shareable)]
        pub name: String,
        pub description: String,
    }

    fn product(id: &str) -> Option<Product> {
        let (name, description) = match id {
            "1" => ("Chair", "Oak, four legs"),
            "2" => ("Lamp", "Brass, one bulb"),
            _ => return None,
        };
        Some(Product {
            id: ID::from(id),
            name: name.to_string(),
            description: description.to_string(),
        })
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn product(&self, id: ID) -> Option<Product> {
            product(&id)
        }

        #[graphql(entity)]
        async fn find_product(&self, id: ID) -> Option<Product> {
            product(&id)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// `Query.search`, and `Product.name` (shared) from its own index.
mod search {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub id: ID,
        #[graphql(shareable)]
        pub name: String,
    }

    fn product(id: &str) -> Product {
        let name = if id == "1" { "Chair" } else { "Lamp" };
        Product {
            id: ID::from(id),
            name: name.to_string(),
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn search(&self) -> Vec<Product> {
            vec![product("1"), product("2")]
        }

        #[graphql(entity)]
        async fn find_product(&self, id: ID) -> Product {
            product(&id)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Used to own `Product.price`; answers a wrong price so using it would show.
mod legacy {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub id: ID,
        pub price: i32,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product(&self, id: ID) -> Product {
            Product { id, price: 999 }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Owns `Product.price` now: `@override(from: "legacy")`.
mod pricing {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub id: ID,
        #[graphql(override_from = "legacy")]
        pub price: i32,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product(&self, id: ID) -> Product {
            let price = if id.as_str() == "1" { 40 } else { 15 };
            Product { id, price }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

async fn harness() -> Harness {
    gateway(vec![
        subgraph("catalog", catalog::schema()),
        subgraph("search", search::schema()),
        subgraph("legacy", legacy::schema()),
        subgraph("pricing", pricing::schema()),
    ])
    .await
}

#[tokio::test]
async fn a_shareable_field_is_resolved_by_the_subgraph_already_being_asked() {
    let h = harness().await;

    let from_search = h.run("{ search { id name } }", json!({})).await;
    assert_eq!(
        from_search,
        json!({"data": {"search": [{"id": "1", "name": "Chair"}, {"id": "2", "name": "Lamp"}]}})
    );
    assert_eq!(h.requests("search"), 1);
    assert_eq!(h.requests("catalog"), 0, "{:?}", h.queries("catalog"));

    let from_catalog = h.run(r#"{ product(id: "2") { name } }"#, json!({})).await;
    assert_eq!(from_catalog, json!({"data": {"product": {"name": "Lamp"}}}));
    assert_eq!(h.requests("catalog"), 1);
    assert_eq!(h.requests("search"), 1, "{:?}", h.queries("search"));
}

#[tokio::test]
async fn a_shareable_field_next_to_a_field_only_another_subgraph_has() {
    let h = harness().await;

    let response = h.run("{ search { name description } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"name": "Chair", "description": "Oak, four legs"},
            {"name": "Lamp", "description": "Brass, one bulb"}
        ]}})
    );
    assert_eq!(h.requests("catalog"), 1);
}

#[tokio::test]
async fn an_overridden_field_comes_from_the_subgraph_it_moved_to() {
    let h = harness().await;

    let response = h.run("{ search { name price } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"name": "Chair", "price": 40},
            {"name": "Lamp", "price": 15}
        ]}})
    );
    assert_eq!(h.requests("pricing"), 1);
    assert_eq!(h.requests("legacy"), 0, "{:?}", h.queries("legacy"));
}
