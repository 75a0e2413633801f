//! `@inaccessible`: a field in the supergraph (usable by the planner, e.g. for `@requires`)
//! that is not part of the client-facing API.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

mod users {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    pub struct User {
        pub id: ID,
        #[graphql(inaccessible)]
        pub internal_score: i32,
        pub name: String,
    }

    fn user(id: &str) -> Option<User> {
        let (score, name) = match id {
            "1" => (87, "Ada"),
            "2" => (12, "Bob"),
            _ => return None,
        };
        Some(User {
            id: ID::from(id),
            internal_score: score,
            name: name.to_string(),
        })
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn user(&self, id: ID) -> Option<User> {
            user(&id)
        }

        #[graphql(entity)]
        async fn find_user(&self, id: ID) -> Option<User> {
            user(&id)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Derives a public tier from the inaccessible score.
mod tiers {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema};

    pub struct User {
        id: ID,
        score: Option<i32>,
    }

    #[Object]
    impl User {
        async fn id(&self) -> &ID {
            &self.id
        }

        #[graphql(external)]
        async fn internal_score(&self) -> i32 {
            self.score.unwrap_or_default()
        }

        #[graphql(requires = "internalScore")]
        async fn tier(&self) -> Option<&str> {
            self.score
                .map(|score| if score >= 50 { "gold" } else { "basic" })
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_user(&self, #[graphql(key)] id: ID, internal_score: Option<i32>) -> User {
            User {
                id,
                score: internal_score,
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
        subgraph("users", users::schema()),
        subgraph("tiers", tiers::schema()),
    ])
    .await
}

#[tokio::test]
async fn querying_an_inaccessible_field_fails_validation() {
    let h = harness().await;

    let response = h
        .run(r#"{ user(id: "1") { name internalScore } }"#, json!({}))
        .await;

    assert_eq!(
        response,
        json!({"errors": [{
            "message": "Cannot query field \"internalScore\" on type \"User\".",
            "locations": [{"line": 1, "column": 24}],
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}
        }]})
    );
    assert_eq!(h.requests("users"), 0);
}

#[tokio::test]
async fn introspection_does_not_list_an_inaccessible_field() {
    let h = harness().await;

    let response = h
        .run(r#"{ __type(name: "User") { fields { name } } }"#, json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"__type": {"fields": [
            {"name": "id"},
            {"name": "name"},
            {"name": "tier"}
        ]}}})
    );
}

#[tokio::test]
async fn an_inaccessible_field_still_feeds_requires() {
    let h = harness().await;

    let response = h
        .run(
            r#"{ ada: user(id: "1") { name tier } bob: user(id: "2") { tier } }"#,
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {
            "ada": {"name": "Ada", "tier": "gold"},
            "bob": {"tier": "basic"}
        }})
    );
}
