//! `@provides` with `@external`: reviews can return an author's username itself, so the
//! accounts subgraph is only asked for what reviews does not provide.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

mod accounts {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct User {
        pub id: ID,
        #[graphql(shareable)]
        pub username: String,
        pub email: String,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_user(&self, id: ID) -> Option<User> {
            let username = match id.as_str() {
                "1" => "ada",
                "2" => "bob",
                _ => return None,
            };
            Some(User {
                email: format!("{username}@example.com"),
                username: username.to_string(),
                id,
            })
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

mod reviews {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    #[graphql(unresolvable = "id")]
    pub struct User {
        pub id: ID,
        #[graphql(external)]
        pub username: String,
    }

    #[derive(SimpleObject)]
    pub struct Review {
        pub body: String,
        #[graphql(provides = "username")]
        pub author: User,
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn reviews(&self) -> Vec<Review> {
            [("Great", "1", "ada"), ("Meh", "2", "bob")]
                .into_iter()
                .map(|(body, id, username)| Review {
                    body: body.to_string(),
                    author: User {
                        id: ID::from(id),
                        username: username.to_string(),
                    },
                })
                .collect()
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
        subgraph("accounts", accounts::schema()),
        subgraph("reviews", reviews::schema()),
    ])
    .await
}

#[tokio::test]
async fn a_provided_field_is_taken_from_the_providing_subgraph() {
    let h = harness().await;

    let response = h
        .run("{ reviews { body author { id username } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"reviews": [
            {"body": "Great", "author": {"id": "1", "username": "ada"}},
            {"body": "Meh", "author": {"id": "2", "username": "bob"}}
        ]}})
    );
    assert_eq!(h.requests("reviews"), 1);
    assert_eq!(
        h.requests("accounts"),
        0,
        "accounts was asked {:?}",
        h.queries("accounts")
    );
}

#[tokio::test]
async fn fields_beyond_the_provided_ones_come_from_the_owner() {
    let h = harness().await;

    let response = h
        .run("{ reviews { author { username email } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"reviews": [
            {"author": {"username": "ada", "email": "ada@example.com"}},
            {"author": {"username": "bob", "email": "bob@example.com"}}
        ]}})
    );
    assert_eq!(h.requests("accounts"), 1);
}
