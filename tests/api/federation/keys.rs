//! Entity keys: a composite key with a nested selection, and a type with two keys where each
//! subgraph knows the entity by a different one.

use serde_json::json;

use super::harness::{gateway, subgraph};

/// Owns `Account @key(fields: "id organization { id }")`. Account ids repeat across
/// organizations, so only the whole key identifies an account.
mod accounts {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, InputObject, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Organization {
        pub id: ID,
    }

    #[derive(InputObject)]
    pub struct OrganizationKey {
        pub id: ID,
    }

    #[derive(SimpleObject, Clone)]
    pub struct Account {
        pub id: ID,
        pub organization: Organization,
        pub name: String,
    }

    fn accounts() -> Vec<Account> {
        [("1", "a", "Ada"), ("1", "b", "Bob"), ("2", "a", "Cy")]
            .into_iter()
            .map(|(id, org, name)| Account {
                id: ID::from(id),
                organization: Organization { id: ID::from(org) },
                name: name.to_string(),
            })
            .collect()
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn accounts(&self) -> Vec<Account> {
            accounts()
        }

        #[graphql(entity)]
        async fn find_account(&self, id: ID, organization: OrganizationKey) -> Option<Account> {
            accounts()
                .into_iter()
                .find(|a| a.id == id && a.organization.id == organization.id)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Adds `Account.balance`, found by the composite key only.
mod billing {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, InputObject, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Organization {
        pub id: ID,
    }

    #[derive(InputObject)]
    pub struct OrganizationKey {
        pub id: ID,
    }

    #[derive(SimpleObject)]
    pub struct Account {
        pub id: ID,
        pub organization: Organization,
        pub balance: i32,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_account(&self, id: ID, organization: OrganizationKey) -> Option<Account> {
            let balance = match (id.as_str(), organization.id.as_str()) {
                ("1", "a") => 100,
                ("1", "b") => -5,
                ("2", "a") => 0,
                _ => return None,
            };
            Some(Account {
                id,
                organization: Organization {
                    id: organization.id,
                },
                balance,
            })
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Owns `Product @key(fields: "id") @key(fields: "sku")` and resolves it by either key.
pub mod catalog {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub id: ID,
        pub sku: String,
        pub name: String,
    }

    fn products() -> Vec<Product> {
        [("p1", "s1", "Chair"), ("p2", "s2", "Lamp")]
            .into_iter()
            .map(|(id, sku, name)| Product {
                id: ID::from(id),
                sku: sku.to_string(),
                name: name.to_string(),
            })
            .collect()
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn products(&self) -> Vec<Product> {
            products()
        }

        async fn product(&self, sku: String) -> Option<Product> {
            products().into_iter().find(|p| p.sku == sku)
        }

        #[graphql(entity)]
        async fn find_product_by_id(&self, id: ID) -> Option<Product> {
            products().into_iter().find(|p| p.id == id)
        }

        #[graphql(entity)]
        async fn find_product_by_sku(&self, sku: String) -> Option<Product> {
            products().into_iter().find(|p| p.sku == sku)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Knows products by `sku` only: `Product @key(fields: "sku") { sku stock }`.
pub mod inventory {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub sku: String,
        pub stock: i32,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_sku(&self, sku: String) -> Product {
            let stock = if sku == "s1" { 3 } else { 0 };
            Product { sku, stock }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Knows products by `id` only: `Product @key(fields: "id") { id price }`, and has a root
/// field returning a product it only knows the id of.
pub mod pricing {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct Product {
        pub id: ID,
        pub price: i32,
    }

    fn price(id: &str) -> i32 {
        if id == "p1" { 40 } else { 15 }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn cheapest(&self) -> Product {
            Product {
                id: ID::from("p2"),
                price: price("p2"),
            }
        }

        #[graphql(entity)]
        async fn find_product_by_id(&self, id: ID) -> Product {
            let price = price(&id);
            Product { id, price }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

#[tokio::test]
async fn composite_key_with_a_nested_field_identifies_the_entity() {
    let h = gateway(vec![
        subgraph("accounts", accounts::schema()),
        subgraph("billing", billing::schema()),
    ])
    .await;

    let response = h
        .run(
            "{ accounts { id organization { id } name balance } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"accounts": [
            {"id": "1", "organization": {"id": "a"}, "name": "Ada", "balance": 100},
            {"id": "1", "organization": {"id": "b"}, "name": "Bob", "balance": -5},
            {"id": "2", "organization": {"id": "a"}, "name": "Cy", "balance": 0}
        ]}})
    );
    assert_eq!(h.requests("billing"), 1, "{:?}", h.queries("billing"));
}

#[tokio::test]
async fn each_subgraph_is_sent_the_key_it_declared() {
    let h = gateway(vec![
        subgraph("catalog", catalog::schema()),
        subgraph("inventory", inventory::schema()),
        subgraph("pricing", pricing::schema()),
    ])
    .await;

    let response = h.run("{ products { name stock price } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"products": [
            {"name": "Chair", "stock": 3, "price": 40},
            {"name": "Lamp", "stock": 0, "price": 15}
        ]}})
    );
    assert_eq!(h.requests("inventory"), 1);
    assert_eq!(h.requests("pricing"), 1);
}

#[tokio::test]
async fn an_entity_known_by_one_key_is_translated_to_the_other_through_its_owner() {
    let h = gateway(vec![
        subgraph("catalog", catalog::schema()),
        subgraph("inventory", inventory::schema()),
        subgraph("pricing", pricing::schema()),
    ])
    .await;

    // pricing knows the product by id, inventory only by sku: catalog translates.
    let response = h
        .run("{ cheapest { id sku name stock price } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"cheapest": {
            "id": "p2", "sku": "s2", "name": "Lamp", "stock": 0, "price": 15
        }}})
    );
    assert_eq!(h.requests("pricing"), 1);
    assert_eq!(h.requests("catalog"), 1);
    assert_eq!(h.requests("inventory"), 1);
}
