//! `inventory`: stock and shipping. Extends `Product` with `inStock` and `shippingEstimate`,
//! which `@requires(fields: "price weight")`: the gateway fetches price and weight from
//! `products` first and hands them in the representation (`@external` here).

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject,
};

use super::catalogue::CATALOGUE;

#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct Product {
    upc: String,
    #[graphql(external)]
    price: Option<i64>,
    #[graphql(external)]
    weight: Option<i64>,
    in_stock: Option<bool>,
}

#[ComplexObject]
impl Product {
    /// Free above 1,000; otherwise half the weight; unknown without both.
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> Option<i64> {
        let price = self.price?;
        if price > 1_000 {
            return Some(0);
        }
        Some(self.weight? / 2)
    }
}

#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_product_by_upc(
        &self,
        #[graphql(key)] upc: String,
        price: Option<i64>,
        weight: Option<i64>,
    ) -> Option<Product> {
        let row = CATALOGUE.product(&upc)?;
        Some(Product {
            upc,
            price,
            weight,
            in_stock: Some(row.in_stock),
        })
    }
}

pub type InventorySchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> InventorySchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
