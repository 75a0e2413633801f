//! `@inaccessible`: a field in the supergraph (usable by the planner, e.g. for `@requires`)
//! that is not part of the client-facing API, and enum values a subgraph returns that the
//! API does not have.

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

/// `enum UserType { REGULAR ADMIN ANONYMOUS @inaccessible }`, returned in every position.
mod people {
    use async_graphql::{EmptyMutation, EmptySubscription, Enum, ID, Object, Schema, SimpleObject};

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    pub enum UserType {
        Regular,
        Admin,
        #[graphql(inaccessible)]
        Anonymous,
    }

    #[derive(SimpleObject)]
    pub struct Badge {
        /// `UserType!`
        pub kind: UserType,
    }

    #[derive(SimpleObject)]
    pub struct Person {
        pub id: ID,
        /// `UserType`
        pub kind: Option<UserType>,
        /// `[UserType]!`
        pub roles: Vec<Option<UserType>>,
        /// `[UserType!]`
        pub strict_roles: Option<Vec<UserType>>,
        /// `Badge`
        pub badge: Option<Badge>,
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn people(&self) -> Vec<Person> {
            use UserType::{Admin, Anonymous, Regular};
            vec![
                Person {
                    id: ID::from("1"),
                    kind: Some(Regular),
                    roles: vec![Some(Admin), Some(Anonymous)],
                    strict_roles: Some(vec![Admin, Anonymous]),
                    badge: Some(Badge { kind: Anonymous }),
                },
                Person {
                    id: ID::from("2"),
                    kind: Some(Anonymous),
                    roles: Vec::new(),
                    strict_roles: Some(vec![Regular]),
                    badge: Some(Badge { kind: Admin }),
                },
            ]
        }

        async fn count_of(&self, kind: UserType) -> i32 {
            i32::from(kind == UserType::Admin)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

fn invalid_enum(field: &str, path: serde_json::Value) -> serde_json::Value {
    json!({
        "message": format!("Enum \"UserType\" cannot represent the value returned for {field}."),
        "path": path,
        "extensions": {"code": "SUBGRAPH_ERROR"}
    })
}

#[tokio::test]
async fn inaccessible_enum_values_from_a_subgraph_become_null_with_an_error() {
    let h = gateway(vec![subgraph("people", people::schema())]).await;

    let response = h
        .run(
            "{ people { id kind roles strictRoles badge { kind } } }",
            json!({}),
        )
        .await;

    // `roles` is [UserType]: only the item is null; `strictRoles` is [UserType!]: the whole
    // list is; `Badge.kind` is non-null: the badge is.
    assert_eq!(
        response,
        json!({
            "data": {"people": [
                {"id": "1", "kind": "REGULAR", "roles": ["ADMIN", null], "strictRoles": null, "badge": null},
                {"id": "2", "kind": null, "roles": [], "strictRoles": ["REGULAR"], "badge": {"kind": "ADMIN"}}
            ]},
            "errors": [
                invalid_enum("Badge.kind", json!(["people", 0, "badge", "kind"])),
                invalid_enum("Person.roles", json!(["people", 0, "roles", 1])),
                invalid_enum("Person.strictRoles", json!(["people", 0, "strictRoles", 1])),
                invalid_enum("Person.kind", json!(["people", 1, "kind"]))
            ]
        })
    );
}

#[tokio::test]
async fn introspection_and_arguments_know_only_the_accessible_enum_values() {
    let h = gateway(vec![subgraph("people", people::schema())]).await;

    let values = h
        .run(
            r#"{ __type(name: "UserType") { enumValues { name } } }"#,
            json!({}),
        )
        .await;
    let argument = h.run("{ countOf(kind: ANONYMOUS) }", json!({})).await;

    assert_eq!(
        values,
        json!({"data": {"__type": {"enumValues": [{"name": "REGULAR"}, {"name": "ADMIN"}]}}})
    );
    assert_eq!(
        argument["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{argument}"
    );
    assert_eq!(h.requests("people"), 0);
}
