//! `@requires`: a field computed in one subgraph from an `@external` field of another,
//! including an external field that takes arguments (`weight(unit: KILOGRAM)`).

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

/// Owns products, their names and their weights in any unit.
mod products {
    use async_graphql::{EmptyMutation, EmptySubscription, Enum, Object, Schema};

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    pub enum WeightUnit {
        Kilogram,
        Gram,
    }

    pub struct Product {
        upc: &'static str,
        name: &'static str,
        kilograms: f64,
    }

    #[Object]
    impl Product {
        async fn upc(&self) -> &str {
            self.upc
        }

        async fn name(&self) -> &str {
            self.name
        }

        async fn weight(&self, unit: WeightUnit) -> f64 {
            match unit {
                WeightUnit::Kilogram => self.kilograms,
                WeightUnit::Gram => self.kilograms * 1000.0,
            }
        }
    }

    fn products() -> Vec<Product> {
        vec![
            Product {
                upc: "u1",
                name: "Chair",
                kilograms: 2.5,
            },
            Product {
                upc: "u2",
                name: "Lamp",
                kilograms: 0.8,
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn top_products(&self) -> Vec<Product> {
            products()
        }

        #[graphql(entity)]
        async fn find_product(&self, upc: String) -> Option<Product> {
            products().into_iter().find(|p| p.upc == upc)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Computes shipping from the weight in kilograms, and a label from the name.
mod shipping {
    use async_graphql::{EmptyMutation, EmptySubscription, Enum, Object, Schema};

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    pub enum WeightUnit {
        Kilogram,
        Gram,
    }

    pub struct Product {
        upc: String,
        kilograms: Option<f64>,
        name: Option<String>,
    }

    #[Object]
    impl Product {
        async fn upc(&self) -> &str {
            &self.upc
        }

        #[graphql(external)]
        async fn weight(&self, _unit: WeightUnit) -> f64 {
            self.kilograms.unwrap_or_default()
        }

        #[graphql(external)]
        async fn name(&self) -> &str {
            self.name.as_deref().unwrap_or_default()
        }

        /// 10 per kilogram plus 5: sent grams instead, it would be a thousand times off.
        #[graphql(requires = "weight(unit: KILOGRAM)")]
        async fn shipping_estimate(&self) -> Option<i32> {
            self.kilograms.map(|kg| (kg * 10.0) as i32 + 5)
        }

        #[graphql(requires = "name")]
        async fn label(&self) -> Option<String> {
            self.name.as_ref().map(|name| format!("FRAGILE: {name}"))
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product(
            &self,
            #[graphql(key)] upc: String,
            weight: Option<f64>,
            name: Option<String>,
        ) -> Product {
            Product {
                upc,
                kilograms: weight,
                name,
            }
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
        subgraph("products", products::schema()),
        subgraph("shipping", shipping::schema()),
    ])
    .await
}

#[tokio::test]
async fn requires_a_field_with_plain_selection() {
    let h = harness().await;

    let response = h.run("{ topProducts { upc label } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"topProducts": [
            {"upc": "u1", "label": "FRAGILE: Chair"},
            {"upc": "u2", "label": "FRAGILE: Lamp"}
        ]}})
    );
    assert_eq!(h.requests("shipping"), 1);
}

#[tokio::test]
async fn requires_a_field_with_arguments_sends_the_value_for_those_arguments() {
    let h = harness().await;

    let response = h
        .run("{ topProducts { name shippingEstimate } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"topProducts": [
            {"name": "Chair", "shippingEstimate": 30},
            {"name": "Lamp", "shippingEstimate": 13}
        ]}}),
        "shipping received {:?}",
        h.queries("shipping")
    );
}

#[tokio::test]
async fn the_client_asking_the_required_field_with_other_arguments_sees_its_own_arguments() {
    let h = harness().await;

    // The client's `weight(unit: GRAM)` and the required `weight(unit: KILOGRAM)` share a
    // response key: the client must get grams, shipping must be sent kilograms.
    let response = h
        .run(
            "{ topProducts { name weight(unit: GRAM) shippingEstimate kg: weight(unit: KILOGRAM) } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"topProducts": [
            {"name": "Chair", "weight": 2500.0, "shippingEstimate": 30, "kg": 2.5},
            {"name": "Lamp", "weight": 800.0, "shippingEstimate": 13, "kg": 0.8}
        ]}}),
        "shipping received {:?}",
        h.queries("shipping")
    );
}
