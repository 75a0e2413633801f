//! `reviews`: owns `Review` (`@key(fields: "id")`), and extends `User` (its reviews, and
//! the `@shareable` `username`) and `Product` (its reviews). Every level is a list: a user's
//! reviews, a product's reviews.

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject,
};

use super::catalogue::{CATALOGUE, ReviewRow};

#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct Review {
    id: ID,
    body: Option<String>,
    #[graphql(skip)]
    product_upc: String,
    #[graphql(skip)]
    author_id: String,
}

impl From<&ReviewRow> for Review {
    fn from(row: &ReviewRow) -> Self {
        Self {
            id: ID(row.id.clone()),
            body: Some(row.body.clone()),
            product_upc: row.product_upc.clone(),
            author_id: row.author_id.clone(),
        }
    }
}

#[ComplexObject]
impl Review {
    async fn product(&self) -> Option<Product> {
        Some(Product {
            upc: self.product_upc.clone(),
        })
    }

    async fn author(&self) -> Option<User> {
        CATALOGUE.user(&self.author_id).map(|u| User {
            id: ID(u.id.clone()),
            username: Some(u.username.clone()),
        })
    }
}

#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct User {
    id: ID,
    #[graphql(shareable)]
    username: Option<String>,
}

#[ComplexObject]
impl User {
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(
            CATALOGUE
                .reviews_by(&self.id)
                .map(|r| Some(r.into()))
                .collect(),
        )
    }
}

#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct Product {
    upc: String,
}

#[ComplexObject]
impl Product {
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(
            CATALOGUE
                .reviews_of_product(&self.upc)
                .map(|r| Some(r.into()))
                .collect(),
        )
    }
}

#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_review_by_id(&self, id: ID) -> Option<Review> {
        CATALOGUE.review(&id).map(Review::from)
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> Option<User> {
        CATALOGUE.user(&id).map(|u| User {
            id: ID(u.id.clone()),
            username: Some(u.username.clone()),
        })
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
        CATALOGUE
            .product(&upc)
            .map(|p| Product { upc: p.upc.clone() })
    }
}

pub type ReviewsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> ReviewsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
