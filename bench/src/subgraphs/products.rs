//! `products`: the catalogue. Owns `Product` (`@key(fields: "upc")`) with its name, price
//! and weight, and `topProducts`.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

use super::catalogue::{CATALOGUE, ProductRow};

#[derive(SimpleObject, Debug, Clone)]
pub struct Product {
    upc: String,
    name: Option<String>,
    price: Option<i64>,
    weight: Option<i64>,
}

impl From<&ProductRow> for Product {
    fn from(row: &ProductRow) -> Self {
        Self {
            upc: row.upc.clone(),
            name: Some(row.name.clone()),
            price: Some(row.price),
            weight: Some(row.weight),
        }
    }
}

#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    async fn top_products(
        &self,
        #[graphql(default = 5)] first: i32,
    ) -> Option<Vec<Option<Product>>> {
        let first = usize::try_from(first).unwrap_or(0);
        Some(
            CATALOGUE
                .products
                .iter()
                .take(first)
                .map(|p| Some(p.into()))
                .collect(),
        )
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
        CATALOGUE.product(&upc).map(Product::from)
    }
}

pub type ProductsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> ProductsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
